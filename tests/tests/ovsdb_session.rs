//! The session layer against real servers: a RAFT leader killed under a stream of writes and a
//! live monitor, and a standalone server restarted under a live monitor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{eventually_async, nbctl, ovsdb_client_dump};
use ovsdb::{Datum, MonitorRequest, MonitorRequests, Operation, Session, SessionOptions};

const NB: &str = "OVN_Northbound";
const T: Duration = Duration::from_secs(30);

/// `ovsdb-client -f json dump` of one table as uuid → column → canonical datum.
fn dump(remote: &str, table: &str) -> BTreeMap<String, BTreeMap<String, Datum>> {
    ovsdb_client_dump(remote, NB, &[table])
        .remove(table)
        .unwrap_or_default()
}

/// The replica's copy of one table in the same shape.
fn replica_table(session: &Session, table: &str) -> BTreeMap<String, BTreeMap<String, Datum>> {
    let guard = session.replica();
    let Some(replica) = guard.as_ref() else {
        return BTreeMap::new();
    };
    let Some(t) = replica.table(table) else {
        return BTreeMap::new();
    };
    t.iter()
        .map(|r| {
            let row = r
                .iter()
                .filter(|(c, _)| *c != "_version")
                .map(|(c, d)| (c.to_string(), d.clone()))
                .collect();
            (r.uuid().to_string(), row)
        })
        .collect()
}

fn switches() -> MonitorRequests {
    MonitorRequests::new().table("Logical_Switch", MonitorRequest::new())
}

fn add_switch(name: &str) -> Operation {
    Operation::Insert {
        table: "Logical_Switch".into(),
        row: [("name".to_string(), Datum::atom(name))]
            .into_iter()
            .collect(),
        uuid_name: None,
    }
}

async fn converge(session: &Session, remote: &str) -> BTreeMap<String, BTreeMap<String, Datum>> {
    eventually_async(T, || async {
        let want = dump(remote, "Logical_Switch");
        (replica_table(session, "Logical_Switch") == want).then_some(want)
    })
    .await
    .expect("replica never converged to the server's dump")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_raft_leader_loses_no_acknowledged_write_and_resumes_without_refetch() {
    let mut sandbox = Sandbox::builder().nb_cluster(3).start().unwrap();
    let remote = sandbox.nb_tcp_remote().unwrap();
    // Some history first, so a refetch would be visible in the numbers.
    for chunk in 0..10 {
        let names: Vec<String> = (0..50).map(|i| format!("pre-{chunk}-{i}")).collect();
        let mut args = Vec::new();
        for n in &names {
            args.extend(["--", "ls-add", n.as_str()]);
        }
        nbctl(&remote, &args[1..]);
    }
    let session = Session::start(&remote, SessionOptions::new(NB).monitor(switches())).unwrap();
    session.client(T).await.unwrap();
    assert_eq!(session.stats().connects.load(Ordering::Relaxed), 1);
    assert_eq!(replica_table(&session, "Logical_Switch").len(), 500);
    let first_sync_bytes = session.stats().last_sync_bytes.load(Ordering::Relaxed);

    // A stream of writes; the leader dies in the middle of it: once some writes got through,
    // and the stream goes on until as many more got through after the kill (on the new
    // leader) — counted, not timed.
    let session = std::sync::Arc::new(session);
    let acks = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (session, acks, stop) = (session.clone(), acks.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = 0;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w{i}");
                i += 1;
                match session
                    .transact(&[add_switch(&name)], Duration::from_secs(10))
                    .await
                {
                    Ok(_) => {
                        acked.push(name);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => failed += 1,
                }
            }
            (acked, failed)
        })
    };
    let acked_at_least = |n: usize| {
        let acks = acks.clone();
        async move {
            eventually_async(T, || async {
                (acks.load(Ordering::Relaxed) >= n).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("fewer than {n} writes acknowledged"))
        }
    };
    acked_at_least(20).await;
    let leader = sandbox.wait_nb_leader(None).unwrap();
    sandbox.kill_nb(leader).unwrap();
    let at_kill = acks.load(Ordering::Relaxed);
    let new_leader = sandbox.wait_nb_leader(Some(leader)).unwrap();
    assert_ne!(leader, new_leader);
    acked_at_least(at_kill + 20).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();
    let leader_remote = sandbox.nb_servers()[new_leader].unix_remote();
    let final_rows = converge(&session, &leader_remote).await;
    let names: BTreeSet<&str> = final_rows
        .values()
        .filter_map(|r| {
            r.get("name")
                .and_then(|d| d.as_atom())
                .and_then(|a| a.as_str())
        })
        .collect();
    for name in &acked {
        assert!(
            names.contains(name.as_str()),
            "acknowledged write {name} was lost"
        );
    }

    let stats = session.stats();
    let connects = stats.connects.load(Ordering::Relaxed);
    let resumed = stats.last_sync_resumed.load(Ordering::Relaxed);
    let rows = stats.last_sync_rows.load(Ordering::Relaxed);
    let bytes = stats.last_sync_bytes.load(Ordering::Relaxed);
    eprintln!(
        "leader {leader} killed: {} writes acked, {failed} failed; reconnects {}; resume: found={resumed}, {rows} rows / {bytes} bytes (initial sync {first_sync_bytes} bytes, table now {} rows)",
        acked.len(),
        connects - 1,
        final_rows.len()
    );
    assert!(connects >= 2, "the session never reconnected");
    assert!(
        resumed,
        "monitor_cond_since did not find the last transaction: the database was refetched"
    );
    assert!(
        (rows as usize) < final_rows.len() / 4 && bytes < first_sync_bytes / 4,
        "the resume fetched {rows} rows / {bytes} bytes: not a delta"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_standalone_server_under_a_live_monitor_converges() {
    let mut sandbox = Sandbox::builder().start().unwrap();
    let remote = sandbox.nb_tcp_remote().unwrap();
    nbctl(&remote, &["ls-add", "a", "--", "ls-add", "b"]);
    let mut opts = SessionOptions::new(NB).monitor(switches());
    opts.backoff_max = Duration::from_millis(500);
    let session = Session::start(&remote, opts).unwrap();
    session.client(T).await.unwrap();
    converge(&session, &remote).await;

    sandbox.kill_nb(0).unwrap();
    // No server, no client: as soon as the session has seen the connection end.
    let e = eventually_async(T, || async { session.client(Duration::ZERO).await.err() })
        .await
        .expect("the session still hands out a client of a dead server");
    assert!(e.is_unavailable(), "{e:?}");
    sandbox.start_nb(0).unwrap();
    // Changes made after the restart, including a deletion, reach the replica.
    nbctl(&remote, &["ls-del", "a", "--", "ls-add", "c"]);
    session.client(T).await.unwrap();
    let rows = converge(&session, &remote).await;
    assert_eq!(rows.len(), 2);
    assert!(session.stats().connects.load(Ordering::Relaxed) >= 2);
    // And the change feed goes on: a later write shows up.
    let mut feed = session.subscribe();
    session.transact(&[add_switch("d")], T).await.unwrap();
    let batch = tokio::time::timeout(T, feed.recv()).await.unwrap().unwrap();
    assert!(batch.iter().any(|c| c
        .new_row()
        .and_then(|r| r.get("name"))
        .and_then(|d| d.as_atom())
        .and_then(|a| a.as_str())
        == Some("d")));
}
