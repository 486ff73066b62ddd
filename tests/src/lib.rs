//! The one helper library of the integration tests in `tests/tests/` (every integration test
//! of the workspace lives there):
//! - independent witnesses (the distribution's `ovn-nbctl`, `ovn-sbctl`, `ovs-vsctl`,
//!   `ovsdb-client`) to check what the product did, so a test never trusts the code under
//!   test to report on itself;
//! - the product's binaries, built fresh ([`ovn_vpc_bin`], [`cni_bin`], [`workspace_bin`]);
//! - bounded polling instead of fixed sleeps ([`eventually`], [`eventually_async`]);
//! - the answering side of kube-rs' mock API service ([`kube`]) and the node shim's network
//!   namespaces ([`node`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub mod kube;
pub mod node;

/// Runs a command and returns its stdout; panics with its stderr when it fails (tests only).
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stdout whether or not it succeeded: for polling a state that may not be there
/// yet (`ovn-sbctl lflow-list DATAPATH` before northd made the datapath).
pub fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stdout of a command that must have succeeded; otherwise fails the test with its exit
/// code, stdout and stderr.
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ovn-nbctl --db=REMOTE ARGS...`.
pub fn nbctl(db: &str, args: &[&str]) -> String {
    let db = format!("--db={db}");
    let mut all = vec![db.as_str(), "--timeout=30"];
    all.extend_from_slice(args);
    run("ovn-nbctl", &all)
}

/// `ovn-sbctl --db=REMOTE ARGS...`.
pub fn sbctl(db: &str, args: &[&str]) -> String {
    let db = format!("--db={db}");
    let mut all = vec![db.as_str(), "--timeout=30"];
    all.extend_from_slice(args);
    run("ovn-sbctl", &all)
}

/// `ovs-vsctl --db=REMOTE ARGS...`.
pub fn vsctl(db: &str, args: &[&str]) -> String {
    let db = format!("--db={db}");
    let mut all = vec![db.as_str(), "--timeout=30"];
    all.extend_from_slice(args);
    run("ovs-vsctl", &all)
}

/// Whether a process with this pid exists (zombies included: the sandbox reaps its children,
/// so a zombie would still be a leak).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Names from `ip netns list`.
pub fn netns_list() -> Vec<String> {
    run("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Polls `f` every 50 ms for up to `secs` seconds until it returns true.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`eventually`] for async tests: awaits `f` every 20 ms (sleeping without blocking the
/// runtime) for up to `limit`, until it returns `Some`; returns that, or `None` when time ran
/// out. The bound turns a hang into a failure report: keep it generous, it is no timing claim.
pub async fn eventually_async<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scripted fake OVSDB server on 127.0.0.1 for the client's tests of what a real
/// ovsdb-server never does: runs `script` on the first connection and connects a client with
/// `opts` to it. The caller spawns (or awaits) the connection.
pub async fn with_fake_server<F, Fut>(
    opts: ovsdb::ConnectOptions,
    script: F,
) -> (ovsdb::Client, ovsdb::Connection)
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("bound").port();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("the client connects");
        script(sock).await;
    });
    ovsdb::connect_with(&format!("tcp:127.0.0.1:{port}"), &opts)
        .await
        .expect("connect to the fake server")
}

/// Table → uuid → column → value, as `ovsdb-client -f json dump` shows a database (`_version`
/// left out; values canonical, so they compare with ours whatever order the server used).
pub type DumpRows = std::collections::BTreeMap<
    String,
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, ovsdb::Datum>>,
>;

/// `ovsdb-client -f json dump REMOTE DB [TABLE...]`, parsed: the independent witness of what a
/// server holds (it prints one JSON document per table).
pub fn ovsdb_client_dump(remote: &str, db: &str, tables: &[&str]) -> DumpRows {
    let mut args = vec!["-f", "json", "dump", remote, db];
    args.extend_from_slice(tables);
    let out = run("ovsdb-client", &args);
    let mut result = DumpRows::new();
    for doc in serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>() {
        let doc = doc.expect("ovsdb-client printed JSON");
        let table = doc["caption"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches(" table")
            .to_string();
        let headings: Vec<String> = serde_json::from_value(doc["headings"].clone()).unwrap();
        let mut rows = std::collections::BTreeMap::new();
        for r in doc["data"].as_array().into_iter().flatten() {
            let mut row = std::collections::BTreeMap::new();
            let mut uuid = String::new();
            for (h, v) in headings.iter().zip(r.as_array().into_iter().flatten()) {
                match h.as_str() {
                    "_uuid" => uuid = v[1].as_str().unwrap_or("").to_string(),
                    "_version" => {}
                    _ => {
                        row.insert(h.clone(), serde_json::from_value(v.clone()).unwrap());
                    }
                }
            }
            rows.insert(uuid, row);
        }
        result.insert(table, rows);
    }
    result
}

/// The `ovn-vpc` binary of this workspace, built once per test process (a no-op when fresh),
/// so a test never runs a stale binary: see [`workspace_bin`].
pub fn ovn_vpc_bin() -> PathBuf {
    workspace_bin("ovn-vpc", "ovn-vpc")
}

/// The `ovn-vpc-cni` plugin binary of this workspace: see [`workspace_bin`].
pub fn cni_bin() -> PathBuf {
    workspace_bin("ovn-vpc", "ovn-vpc-cni")
}

/// `ovn-vpc ARGS...` run to its end: its status and output, for the caller to check.
pub fn ovn_vpc(args: &[&str]) -> Output {
    Command::new(ovn_vpc_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ovn-vpc {args:?}: {e}"))
}

/// Writes `text` to `dir/name`; returns the path as a command line argument.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p.display().to_string()
}

/// The path of binary `name` of workspace package `package` (`ovn-vpc-cni` of `ovn-vpc`),
/// built first, with every other binary of the workspace, once per test process.
///
/// Why a nested `cargo build`: cargo hands a test `CARGO_BIN_EXE_<name>` only for binaries of
/// the test's own package, and has no stable way for one package to depend on another's
/// binaries (artifact dependencies, `-Z bindeps`, are nightly-only). So nothing builds
/// `ovn-vpc`'s binaries for `cargo test -p ovn-vpc-tests`, and a test that only used a path
/// under `target/` would run whatever binary an earlier build left there — a stale one.
///
/// Why it stays cheap: the build is `cargo build --workspace --bins --examples`, which
/// resolves features exactly as `cargo test --workspace` (what `scripts/test` runs) does —
/// `--examples` (there are none) only makes cargo count dev-dependencies in, as tests do.
/// `cargo build -p ovn-vpc --bins` would resolve without them (tower-test turns on tokio's
/// `test-util`, proptest getrandom's `std`), so it would compile a second copy of tokio,
/// kube and the whole `ovn-vpc` library for the binaries alone, again after every edit. This
/// way the library the test harness linked is reused and only the binaries are linked; when
/// nothing changed it is a no-op of well under a second. Under `cargo test -p
/// ovn-vpc-tests` the features differ, which costs one more build of the library, not a
/// wrong binary.
///
/// `OVN_VPC_BIN_DIR` overrides the directory (and skips the build).
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    if let Some(dir) = std::env::var_os("OVN_VPC_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    // <target dir>/<profile dir>/deps/<test>-<hash>: build into the same target directory
    // and profile as the running test, whatever `--target-dir` or `--release` it was given.
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = dir.parent().expect("<target>/<profile>").to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--bins", "--examples"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // The profile directory names the profile, except `debug`, which is `dev`'s.
        match dir.file_name().and_then(|p| p.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        // Cargo gives the running test its package's variables (CARGO_MANIFEST_DIR, …). Passed
        // on, they change the fingerprint of build scripts that track them (ring's does), so
        // the nested build and the next `cargo test` would rebuild ring and everything above it
        // in turn, every run.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*k)
            {
                cmd.env_remove(&*k);
            }
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
        assert!(
            status.success(),
            "cargo build of the workspace's binaries failed"
        );
        *built = true;
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} was not built: is {name} a binary of {package}?",
        bin.display()
    );
    bin
}

/// A stand-in Kubernetes API server: `tcp-peer http ADDR FILE` run inside network namespace
/// `netns` (answers every request with FILE); killed by pid on drop.
pub struct StandInApi(std::process::Child);

impl StandInApi {
    /// Starts `tcp_peer` (the test's `CARGO_BIN_EXE_tcp-peer`) serving `body` on `addr` in
    /// `netns`; returns once it listens.
    pub fn start(tcp_peer: &str, netns: &str, addr: &str, body: &Path) -> StandInApi {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, tcp_peer, "http", addr])
            .arg(body)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the stand-in API server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read");
        let api = StandInApi(child);
        assert_eq!(
            line.trim(),
            "listening",
            "the stand-in API server did not start"
        );
        api
    }
}

impl Drop for StandInApi {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a kubeconfig for `server` (`http://127.0.0.1:PORT`, a token user) into `dir`.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    p
}
