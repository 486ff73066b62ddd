//! Large transactions from two clients at once, each client with a live monitor on the tables
//! it writes, plus a session's monitor: never a hang (issue 12, item 2).
//!
//! Why this used to hang: ovsdb-server stops reading a client while it has output queued for
//! it. Client A's commit queues a multi-megabyte update for client B's monitor while B is
//! writing its own multi-megabyte request; a B that does not read while it writes fills the
//! server's output queue, the server stops reading B, B's write blocks: both receive queues
//! full, forever.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::ovsdb_client_dump;
use ovsdb::{
    Atom, Client, Condition, Datum, MonitorRequest, MonitorRequests, Operation, OperationResult,
    Session, SessionOptions,
};
use serde_json::json;

const NB: &str = "OVN_Northbound";
const ROUNDS: usize = 20;
/// Rows per transaction, each with ~1 KiB of external_ids: ~3.5 MB per request, and as much
/// again in every monitor's update.
const ROWS: usize = 3000;
/// One round (two inserts and two deletes at once) takes a few seconds; a hang never ends.
const ROUND_LIMIT: Duration = Duration::from_secs(90);

/// A client whose connection also monitors Logical_Switch (all columns), its notifications
/// read by a task as a real consumer would.
async fn monitored_client(remote: &str, name: &str) -> Client {
    let (client, mut conn) = ovsdb::connect(remote).await.unwrap();
    let mut notes = conn.take_notifications().unwrap();
    tokio::spawn(conn);
    tokio::spawn(async move { while notes.recv().await.is_some() {} });
    client
        .monitor_cond(
            NB,
            &json!(name),
            &json!({"Logical_Switch": [{"columns": ["name", "external_ids"]}]}),
        )
        .await
        .unwrap();
    client
}

fn owner(who: &str) -> Datum {
    Datum::Map(vec![(Atom::string("owner"), Atom::string(who))])
}

fn inserts(who: &str, round: usize) -> Vec<Operation> {
    let filler = "f".repeat(1000);
    (0..ROWS)
        .map(|i| Operation::Insert {
            table: "Logical_Switch".into(),
            row: [
                (
                    "name".to_string(),
                    Datum::atom(format!("{who}-{round}-{i}").as_str()),
                ),
                (
                    "external_ids".to_string(),
                    Datum::Map(vec![
                        (Atom::string("owner"), Atom::string(who)),
                        (Atom::string("filler"), Atom::string(&filler)),
                    ]),
                ),
            ]
            .into_iter()
            .collect(),
            uuid_name: None,
        })
        .collect()
}

fn delete_all(who: &str) -> Vec<Operation> {
    vec![Operation::Delete {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::includes("external_ids", owner(who))],
    }]
}

/// Rows of the session's replica per owner.
fn replica_counts(session: &Session) -> BTreeMap<String, usize> {
    let guard = session.replica();
    let mut counts = BTreeMap::new();
    let Some(t) = guard.as_ref().and_then(|r| r.table("Logical_Switch")) else {
        return counts;
    };
    for row in t.iter() {
        if let Some(Datum::Map(m)) = row.get("external_ids") {
            for (k, v) in m {
                if k.as_str() == Some("owner") {
                    *counts
                        .entry(v.as_str().unwrap_or("").to_string())
                        .or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

async fn wait_replica(session: &Session, want: &BTreeMap<String, usize>) {
    let deadline = Instant::now() + ROUND_LIMIT;
    while &replica_counts(session) != want {
        assert!(
            Instant::now() < deadline,
            "the session's replica never showed {want:?}: {:?}",
            replica_counts(session)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rounds_of_two_large_transactions_beside_live_monitors_never_hang() {
    let sandbox = Sandbox::builder().start().unwrap();
    let remote = sandbox.nb_remote();
    let a = monitored_client(&remote, "mon-a").await;
    let b = monitored_client(&remote, "mon-b").await;
    let session = Session::start(
        &remote,
        SessionOptions::new(NB).monitor(MonitorRequests::new().table(
            "Logical_Switch",
            MonitorRequest::new().columns(["name", "external_ids"]),
        )),
    )
    .unwrap();
    session.client(Duration::from_secs(30)).await.unwrap();

    let started = Instant::now();
    for round in 0..ROUNDS {
        let (ops_a, ops_b) = (inserts("a", round), inserts("b", round));
        let (ra, rb) = tokio::time::timeout(ROUND_LIMIT, async {
            tokio::join!(a.transact(NB, &ops_a), b.transact(NB, &ops_b))
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: the concurrent inserts hung"));
        for (who, r) in [("a", ra), ("b", rb)] {
            let results = r.unwrap_or_else(|e| panic!("round {round}: {who}'s insert: {e}"));
            assert_eq!(results.len(), ROWS);
            assert!(results
                .iter()
                .all(|r| matches!(r, OperationResult::Insert(_))));
        }
        wait_replica(
            &session,
            &[("a".to_string(), ROWS), ("b".to_string(), ROWS)].into(),
        )
        .await;

        let (del_a, del_b) = (delete_all("a"), delete_all("b"));
        let (ra, rb) = tokio::time::timeout(ROUND_LIMIT, async {
            tokio::join!(a.transact(NB, &del_a), b.transact(NB, &del_b))
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: the concurrent deletes hung"));
        for r in [ra, rb] {
            assert!(matches!(
                r.unwrap().as_slice(),
                [OperationResult::Count(n)] if *n == ROWS as u64
            ));
        }
        wait_replica(&session, &BTreeMap::new()).await;
    }
    eprintln!(
        "{ROUNDS} rounds of 2 × {ROWS}-row inserts and deletes in {:?}",
        started.elapsed()
    );
    // The witness: the server holds none of them, and both connections are still fine.
    assert!(ovsdb_client_dump(&remote, NB, &["Logical_Switch"])["Logical_Switch"].is_empty());
    a.echo().await.unwrap();
    b.echo().await.unwrap();
}
