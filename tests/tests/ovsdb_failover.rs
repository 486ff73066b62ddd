//! A transaction in flight when the RAFT leader dies (issue 12, item 4): the error says the
//! outcome is unknown (never "Broken pipe" or a plain failure), the session comes back on the
//! new leader by itself, and its re-synced replica tells whether the transaction committed —
//! in agreement with `ovsdb-client dump` of the new leader.
//!
//! How a caller uses this (what `apply` does): on `e.is_outcome_unknown()`, call
//! `session.client(timeout)` again, which returns once the session is connected to a leader
//! with its replica re-synced, then re-read the replica (re-diff) to see whether the desired
//! state is there.

use std::process::Command;
use std::time::{Duration, Instant};

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::ovsdb_client_dump;
use ovsdb::{Atom, Datum, MonitorRequest, MonitorRequests, Operation, Session, SessionOptions};

const NB: &str = "OVN_Northbound";
const T: Duration = Duration::from_secs(60);

fn session(remote: &str) -> Session {
    Session::start(
        remote,
        SessionOptions::new(NB).monitor(MonitorRequests::new().table(
            "Logical_Switch",
            MonitorRequest::new().columns(["name", "external_ids"]),
        )),
    )
    .unwrap()
}

/// `rows` switches tagged `batch=<tag>`, each with ~`pad` bytes of external_ids.
fn batch(tag: &str, rows: usize, pad: usize) -> Vec<Operation> {
    let filler = "p".repeat(pad);
    (0..rows)
        .map(|i| Operation::Insert {
            table: "Logical_Switch".into(),
            row: [
                (
                    "name".to_string(),
                    Datum::atom(format!("{tag}-{i}").as_str()),
                ),
                (
                    "external_ids".to_string(),
                    Datum::Map(vec![
                        (Atom::string("batch"), Atom::string(tag)),
                        (Atom::string("pad"), Atom::string(&filler)),
                    ]),
                ),
            ]
            .into_iter()
            .collect(),
            uuid_name: None,
        })
        .collect()
}

fn tagged(row_ids: Option<&Datum>, tag: &str) -> bool {
    matches!(row_ids, Some(Datum::Map(m)) if m.iter().any(|(k, v)| k.as_str() == Some("batch") && v.as_str() == Some(tag)))
}

/// Rows of batch `tag` in the session's replica.
fn in_replica(session: &Session, tag: &str) -> usize {
    let guard = session.replica();
    guard
        .as_ref()
        .and_then(|r| r.table("Logical_Switch"))
        .map(|t| {
            t.iter()
                .filter(|r| tagged(r.get("external_ids"), tag))
                .count()
        })
        .unwrap_or(0)
}

/// Rows of batch `tag` on a server, read by `ovsdb-client` (the independent witness).
fn on_server(remote: &str, tag: &str) -> usize {
    ovsdb_client_dump(remote, NB, &["Logical_Switch"])
        .remove("Logical_Switch")
        .unwrap_or_default()
        .values()
        .filter(|r| tagged(r.get("external_ids"), tag))
        .count()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Kills the leader once `client` has written at least `bytes` (the whole request), then
/// waits for the transaction's outcome.
async fn kill_leader_under(
    sandbox: &mut Sandbox,
    session: &Session,
    ops: &[Operation],
    stop_first: bool,
) -> (ovsdb::Error, usize) {
    let leader = sandbox.wait_nb_leader(None).unwrap();
    let client = session.client(T).await.unwrap();
    assert_eq!(
        Some(client.remote().to_string()),
        sandbox.nb_servers()[leader].tcp_remote(),
        "the session is on the leader"
    );
    if stop_first {
        // Frozen: it will read nothing of the transaction before it dies.
        signal(sandbox.nb_servers()[leader].pid().unwrap(), "-STOP");
    }
    let sent_before = client
        .stats()
        .bytes_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    let size = serde_json::to_string(&(NB, ops)).unwrap().len() as u64;
    let pending = client.start_transact(NB, ops).unwrap();
    let started = Instant::now();
    // Stopped, the server cannot take the whole request into its socket buffers: kill it once
    // some of it is written. Running, kill it as soon as all of it is.
    let want = if stop_first { 1 } else { size };
    while client
        .stats()
        .bytes_sent
        .load(std::sync::atomic::Ordering::Relaxed)
        - sent_before
        < want
    {
        assert!(started.elapsed() < T, "the request was never written");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sandbox.kill_nb(leader).unwrap();
    let e = tokio::time::timeout(T, pending.finish(ops))
        .await
        .expect("no outcome after the leader died")
        .expect_err("the reply came before the leader was killed: make the transaction larger");
    (e, leader)
}

async fn back_on_new_leader(sandbox: &Sandbox, session: &Session, old: usize) -> String {
    let client = session.client(T).await.unwrap();
    let new_leader = sandbox.wait_nb_leader(Some(old)).unwrap();
    assert_ne!(new_leader, old);
    assert_eq!(
        Some(client.remote().to_string()),
        sandbox.nb_servers()[new_leader].tcp_remote(),
        "the session came back on the new leader"
    );
    sandbox.nb_servers()[new_leader].unix_remote()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_the_dead_leader_never_read_is_outcome_unknown_and_shown_absent() {
    let mut sandbox = Sandbox::builder().nb_cluster(3).start().unwrap();
    let session = session(&sandbox.nb_tcp_remote().unwrap());
    let ops = batch("frozen", 2000, 500);
    let (e, leader) = kill_leader_under(&mut sandbox, &session, &ops, true).await;
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert!(e.is_connection_lost(), "{e:?}");
    assert!(e.to_string().contains("outcome of transact unknown"), "{e}");

    let witness = back_on_new_leader(&sandbox, &session, leader).await;
    assert_eq!(in_replica(&session, "frozen"), 0);
    assert_eq!(on_server(&witness, "frozen"), 0);
    // And the session writes on the new leader.
    session
        .transact(&batch("after", 3, 10), T)
        .await
        .expect("a write after the failover");
    assert_eq!(on_server(&witness, "after"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_flight_when_the_leader_dies_is_outcome_unknown_and_the_replica_tells() {
    let mut sandbox = Sandbox::builder().nb_cluster(3).start().unwrap();
    let session = session(&sandbox.nb_tcp_remote().unwrap());
    // ~10 MB: the leader parses, executes and replicates it for a good while.
    let ops = batch("inflight", 20_000, 500);
    let (e, leader) = kill_leader_under(&mut sandbox, &session, &ops, false).await;
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert!(e.is_connection_lost(), "{e:?}");

    let witness = back_on_new_leader(&sandbox, &session, leader).await;
    // Whatever happened, it happened whole, and the replica says the same as the server.
    let seen = in_replica(&session, "inflight");
    assert!(
        seen == 0 || seen == ops.len(),
        "{seen} of {} rows",
        ops.len()
    );
    assert_eq!(seen, on_server(&witness, "inflight"));
    eprintln!(
        "leader {leader} killed with the transaction in flight: {}",
        if seen == 0 {
            "it had not committed"
        } else {
            "it had committed"
        }
    );
}
