//! Errors that name what failed, fast (issue 12, item 5): a RAFT follower, a unix socket that
//! does not exist and a refused TCP port are reported within 2 s, naming each remote and why —
//! by the library's `Session::client` and by the CLI — unless a wait is asked for
//! (`SessionOptions::wait`, `--wait SECONDS`).

use std::process::Command;
use std::time::{Duration, Instant};

use libc::{ECONNREFUSED, ENOENT};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{eventually_async, ovn_vpc_bin, run};
use ovsdb::{Error, Session, SessionOptions};

const NB: &str = "OVN_Northbound";
const FAST: Duration = Duration::from_secs(2);

/// A TCP port on 127.0.0.1 that refuses connections (bound once, then released).
fn refused_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("tcp:127.0.0.1:{port}")
}

/// The cluster id of the NB database as the server reports it in `_Server.Database`.
fn cluster_id(remote: &str) -> String {
    let out = run(
        "ovsdb-client",
        &[
            "transact",
            remote,
            r#"["_Server",{"op":"select","table":"Database","where":[["name","==","OVN_Northbound"]],"columns":["cid"]}]"#,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["rows"][0]["cid"][1].as_str().unwrap().to_string()
}

/// The fields of an [`Error::Unavailable`]: database, how long was waited, each remote tried
/// and why it could not be used.
fn unavailable(e: &Error) -> (Option<&str>, Duration, Vec<(String, String)>) {
    match e {
        Error::Unavailable { db, waited, tried } => (db.as_deref(), *waited, tried.clone()),
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

/// How an OS error is reported for a remote that failed with it.
fn os_error(code: i32) -> String {
    std::io::Error::from_raw_os_error(code).to_string()
}

/// `Session::client` on `remotes` with `opts`: its error and how long it took.
async fn session_error(remotes: &str, opts: SessionOptions) -> (Error, Duration) {
    let session = Session::start(remotes, opts).unwrap();
    let started = Instant::now();
    let e = session
        .client(Duration::from_secs(30))
        .await
        .expect_err("no usable server, yet a client");
    (e, started.elapsed())
}

/// `ovn-vpc ARGS…`: exit success, stderr and how long it took.
fn cli(args: &[&str]) -> (bool, String, Duration) {
    let bin = ovn_vpc_bin(); // built first: not part of the time measured
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env_remove("OVN_NB_DB")
        .env_remove("OVN_VPC_TIMEOUT")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

fn examples() -> String {
    format!("{}/../examples/vpcs.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_follower_is_named_with_its_cluster_at_once() {
    let sandbox = Sandbox::builder().nb_cluster(3).start().unwrap();
    let leader = sandbox.wait_nb_leader(None).unwrap();
    let follower = &sandbox.nb_servers()[(leader + 1) % 3];
    let remote = follower.tcp_remote().unwrap();
    let cid = cluster_id(&follower.unix_remote());

    let (e, took) = session_error(&remote, SessionOptions::new(NB)).await;
    assert!(took < FAST, "took {took:?}");
    assert!(e.is_unavailable() && !e.is_outcome_unknown(), "{e:?}");
    let (_, _, tried) = unavailable(&e);
    assert_eq!(tried.len(), 1, "{tried:?}");
    assert_eq!(tried[0].0, remote);
    let why = &tried[0].1;
    assert!(
        why.starts_with(&format!("follower of cluster {cid}")) && why.contains("list every member"),
        "{why}"
    );

    // Listed with a dead member, it may be an election (the leader just died): waited for,
    // for the whole timeout (a test about a wait: it takes the 3 s), then each remote is named
    // with its own reason.
    let dead = refused_port();
    let session = Session::start(&format!("{dead},{remote}"), SessionOptions::new(NB)).unwrap();
    let started = Instant::now();
    let e = session.client(Duration::from_secs(3)).await.unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "did not wait for an election"
    );
    let (db, waited, tried) = unavailable(&e);
    assert_eq!((db, waited), (Some(NB), Duration::from_secs(3)));
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert_eq!(tried[0], (dead.clone(), os_error(ECONNREFUSED)));
    assert_eq!(tried[1].0, remote);
    assert!(
        tried[1]
            .1
            .starts_with(&format!("follower of cluster {cid}, no leader seen")),
        "{tried:?}"
    );

    // The CLI: `plan` against the follower says so, fast.
    let (ok, stderr, took) = cli(&["plan", "-f", &examples(), "--db", &remote]);
    assert!(!ok && took < FAST, "took {took:?}: {stderr}");
    assert!(
        stderr.contains(&format!("{remote}: follower of cluster {cid}")),
        "{stderr}"
    );
    // With every member listed, the leader is found and plan works.
    let all = sandbox.nb_tcp_remote().unwrap();
    let (_, stderr, _) = cli(&["plan", "-f", &examples(), "--db", &all]);
    assert!(!stderr.contains("no usable server"), "{stderr}");
}

#[tokio::test]
async fn a_missing_socket_and_a_refused_port_fail_at_once_naming_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}/nb.sock", dir.path().display());
    let refused = refused_port();

    // How the message renders these fields is the unit tests' business (ovsdb/src/error.rs).
    let (e, took) = session_error(&missing, SessionOptions::new(NB)).await;
    assert!(took < FAST, "took {took:?}");
    assert_eq!(
        unavailable(&e),
        (
            Some(NB),
            Duration::ZERO,
            vec![(missing.clone(), os_error(ENOENT))]
        )
    );
    let (e, took) = session_error(&refused, SessionOptions::new(NB)).await;
    assert!(took < FAST, "took {took:?}");
    assert_eq!(
        unavailable(&e),
        (
            Some(NB),
            Duration::ZERO,
            vec![(refused.clone(), os_error(ECONNREFUSED))]
        )
    );

    // A plain connection says the same for each remote; nothing was sent.
    let e = ovsdb::connect(&format!("{missing},{refused}"))
        .await
        .unwrap_err();
    assert!(e.is_unavailable() && !e.is_outcome_unknown());
    assert_eq!(
        unavailable(&e),
        (
            None,
            Duration::ZERO,
            vec![
                (missing.clone(), os_error(ENOENT)),
                (refused.clone(), os_error(ECONNREFUSED))
            ]
        )
    );

    // The CLI, for a Session-based command and for plain connections.
    for args in [
        vec!["plan", "-f", &examples(), "--db", &missing],
        vec!["dump", "--db", &missing],
        vec!["show", "--db", &refused],
        vec!["uninstall", "--dry-run", "--db", &refused],
    ] {
        let (ok, stderr, took) = cli(&args);
        assert!(!ok && took < FAST, "{args:?} took {took:?}: {stderr}");
        let named = args.last().unwrap();
        assert!(stderr.contains(&format!("{named}: ")), "{args:?}: {stderr}");
        assert!(
            stderr.contains("No such file or directory") || stderr.contains("Connection refused"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn asked_to_wait_it_waits_and_then_says_how_long() {
    let refused = refused_port();
    let mut opts = SessionOptions::new(NB);
    opts.wait = Duration::from_millis(1500);
    let (e, took) = session_error(&refused, opts).await;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(
        unavailable(&e),
        (
            Some(NB),
            Duration::from_millis(1500),
            vec![(refused.clone(), os_error(ECONNREFUSED))]
        )
    );

    let (ok, stderr, took) = cli(&["--wait", "1.5", "dump", "--db", &refused]);
    assert!(!ok, "{stderr}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(
        stderr.contains(&format!("within 1.5s: {refused}: Connection refused")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_up_during_the_wait_is_used() {
    let mut sandbox = Sandbox::builder().start().unwrap();
    let remote = sandbox.nb_remote();
    sandbox.kill_nb(0).unwrap();
    let mut opts = SessionOptions::new(NB);
    opts.wait = Duration::from_secs(30);
    let session = Session::start(&remote, opts).unwrap();
    // The server comes up once the session has found it missing (not before its first try):
    // the socket file of the killed server refuses, or is gone.
    let failed = [os_error(ECONNREFUSED), os_error(ENOENT)];
    let tried = eventually_async(Duration::from_secs(10), || async {
        let e = session.client(Duration::ZERO).await.unwrap_err();
        let (_, _, tried) = unavailable(&e);
        (tried.len() == 1 && tried[0].0 == remote && failed.contains(&tried[0].1)).then_some(())
    })
    .await;
    assert!(
        tried.is_some(),
        "the session never tried the dead server's socket"
    );
    sandbox.start_nb(0).unwrap();
    let client = session
        .client(Duration::from_secs(30))
        .await
        .expect("the server came up within the wait");
    assert!(client.list_dbs().await.unwrap().contains(&NB.to_string()));
}
