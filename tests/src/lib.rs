//! Helpers shared by the integration tests in `tests/tests/`: independent witnesses (the
//! distribution's `ovn-nbctl`, `ovn-sbctl`, `ovs-vsctl`, `ovsdb-client`) to check what the
//! product did, so a test never trusts the code under test to report on itself.

use std::process::Command;

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
    std::path::Path::new(&format!("/proc/{pid}")).exists()
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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

/// The path of a binary of another workspace package (e.g. `ovn-vpc-cni` of `ovn-vpc`), built
/// first with `cargo build -p PACKAGE --bins` (once per package and test process, a no-op when
/// fresh):
/// Cargo only hands a test `CARGO_BIN_EXE_*` for binaries of its own package, and `cargo test
/// -p ovn-vpc-tests` alone would not build them. `OVN_VPC_BIN_DIR` overrides the directory (and
/// skips the build).
pub fn workspace_bin(package: &str, name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if let Some(dir) = std::env::var_os("OVN_VPC_BIN_DIR") {
        return std::path::Path::new(&dir).join(name);
    }
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == package) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
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
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
        assert!(status.success(), "cargo build -p {package} --bins failed");
        built.push(package.to_string());
    }
    dir.join(name)
}

/// A stand-in Kubernetes API server: `tcp-peer http ADDR FILE` run inside network namespace
/// `netns` (answers every request with FILE); killed by pid on drop.
pub struct StandInApi(std::process::Child);

impl StandInApi {
    /// Starts `tcp_peer` (the test's `CARGO_BIN_EXE_tcp-peer`) serving `body` on `addr` in
    /// `netns`; returns once it listens.
    pub fn start(tcp_peer: &str, netns: &str, addr: &str, body: &std::path::Path) -> StandInApi {
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
pub fn write_kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
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
