//! The native OVSDB client against a real ovsdb-server: every method round-trips, and every
//! error the server can be made to produce comes back typed.

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::nbctl;
use ovsdb::{
    Atom, Client, Condition, Datum, Error, ErrorKind, Mutation, Mutator, Operation,
    OperationResult, Row, Uuid,
};
use serde_json::json;

const NB: &str = "OVN_Northbound";

async fn client(sandbox: &Sandbox) -> Client {
    let (client, connection) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The next notification, or a test failure after 10 s (never a hang).
async fn next_note(notes: &mut ovsdb::Notifications) -> ovsdb::Notification {
    tokio::time::timeout(std::time::Duration::from_secs(10), notes.recv())
        .await
        .expect("no notification within 10 s")
        .expect("connection ended")
}

fn row(pairs: &[(&str, Datum)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn insert(table: &str, r: Row, name: Option<&str>) -> Operation {
    Operation::Insert {
        table: table.into(),
        row: r,
        uuid_name: name.map(str::to_string),
    }
}

fn server_error(e: Error) -> (ErrorKind, usize, bool) {
    match e {
        Error::Transact(t) => (t.error.kind, t.index, t.commit_time),
        Error::Server(s) => (s.kind, usize::MAX, false),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn list_dbs_get_schema_and_echo() {
    let sandbox = Sandbox::builder().start().unwrap();
    let c = client(&sandbox).await;
    let dbs = c.list_dbs().await.unwrap();
    assert!(
        dbs.contains(&NB.to_string()) && dbs.contains(&"_Server".to_string()),
        "{dbs:?}"
    );
    let schema = c.get_schema(NB).await.unwrap();
    assert_eq!(schema.name, NB);
    assert_eq!(schema.version, "7.0.0");
    assert!(schema.tables.contains_key("Logical_Switch_Port"));
    c.echo().await.unwrap();
    // Also over TCP.
    let (tcp, conn) = ovsdb::connect(&sandbox.nb_tcp_remote().unwrap())
        .await
        .unwrap();
    tokio::spawn(conn);
    tcp.echo().await.unwrap();
    assert!(c.stats().received() > 0);
}

#[tokio::test]
async fn every_operation_round_trips_and_ovn_nbctl_sees_the_result() {
    let sandbox = Sandbox::builder().start().unwrap();
    let c = client(&sandbox).await;
    let ops = vec![
        insert(
            "Logical_Switch",
            row(&[
                ("name", Datum::atom("sw0")),
                ("ports", Datum::set([Atom::NamedUuid("p0".into())])),
                ("external_ids", Datum::map([("ovn-vpc/owner", "Subnet/a")])),
            ]),
            Some("sw"),
        ),
        insert(
            "Logical_Switch_Port",
            row(&[
                ("name", Datum::atom("p0")),
                ("addresses", Datum::set(["0a:00:00:00:00:01 10.0.0.2"])),
            ]),
            Some("p0"),
        ),
        Operation::Comment("ovn-vpc integration test".into()),
        Operation::Commit { durable: false },
    ];
    let results = c.transact(NB, &ops).await.unwrap();
    let OperationResult::Insert(sw) = results[0] else {
        panic!("{results:?}")
    };
    assert_eq!(results[2], OperationResult::Empty);
    assert!(nbctl(&sandbox.nb_remote(), &["show"]).contains("port p0"));

    let more = vec![
        Operation::Update {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::uuid(sw)],
            row: row(&[("other_config", Datum::map([("mcast_snoop", "true")]))]),
        },
        Operation::Mutate {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::eq("name", "sw0")],
            mutations: vec![Mutation::insert("external_ids", Datum::map([("k", "v")]))],
        },
        Operation::Wait {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::uuid(sw)],
            columns: vec!["name".into()],
            until_equal: true,
            rows: vec![row(&[("name", Datum::atom("sw0"))])],
            timeout_ms: Some(0),
        },
        Operation::Select {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::includes(
                "external_ids",
                Datum::map([("k", "v")]),
            )],
            columns: Some(vec![
                "name".into(),
                "external_ids".into(),
                "other_config".into(),
            ]),
        },
    ];
    let r = c.transact(NB, &more).await.unwrap();
    assert_eq!(r[0], OperationResult::Count(1));
    assert_eq!(r[1], OperationResult::Count(1));
    let OperationResult::Select(rows) = &r[3] else {
        panic!("{r:?}")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["external_ids"].get_str("k"), Some("v"));
    assert_eq!(rows[0]["other_config"].get_str("mcast_snoop"), Some("true"));
    assert_eq!(
        nbctl(
            &sandbox.nb_remote(),
            &["get", "Logical_Switch", "sw0", "external_ids:k"]
        )
        .trim(),
        "v"
    );

    let del = vec![Operation::Delete {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::uuid(sw)],
    }];
    assert_eq!(
        c.transact(NB, &del).await.unwrap(),
        vec![OperationResult::Count(1)]
    );
    assert!(nbctl(&sandbox.nb_remote(), &["ls-list"]).trim().is_empty());
    // The port was referenced only by the switch (non-root table): gone with it.
    assert!(
        nbctl(&sandbox.nb_remote(), &["list", "Logical_Switch_Port"])
            .trim()
            .is_empty()
    );
}

#[tokio::test]
async fn many_requests_in_flight_at_once_all_get_their_own_reply() {
    let sandbox = Sandbox::builder().start().unwrap();
    let c = client(&sandbox).await;
    let mut pending = Vec::new();
    for i in 0..200 {
        let ops = vec![insert(
            "Logical_Switch",
            row(&[("name", Datum::atom(format!("s{i}")))]),
            None,
        )];
        let cc = c.clone();
        pending.push(tokio::spawn(async move { cc.transact(NB, &ops).await }));
    }
    let mut uuids = std::collections::HashSet::new();
    for p in pending {
        let r = p.await.unwrap().unwrap();
        let OperationResult::Insert(u) = r[0] else {
            panic!()
        };
        uuids.insert(u);
    }
    assert_eq!(uuids.len(), 200);
    assert_eq!(
        nbctl(&sandbox.nb_remote(), &["ls-list"]).lines().count(),
        200
    );
}

#[tokio::test]
async fn client_side_validation_refuses_bad_values_before_sending() {
    let sandbox = Sandbox::builder().start().unwrap();
    let c = client(&sandbox).await;
    let sent_before = c
        .stats()
        .requests_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    let _ = c.schema(NB).await.unwrap();
    let bad = vec![insert(
        "Logical_Router_Static_Route",
        row(&[
            ("ip_prefix", Datum::atom("0.0.0.0/0")),
            ("nexthop", Datum::atom("1.1.1.1")),
            ("policy", Datum::atom("sideways")),
        ]),
        None,
    )];
    match c.transact(NB, &bad).await {
        Err(Error::Constraint(v)) => {
            assert_eq!(
                (v.table.as_str(), v.column.as_str()),
                ("Logical_Router_Static_Route", "policy")
            );
        }
        other => panic!("{other:?}"),
    }
    // Only the schema fetch went out.
    let sent = c
        .stats()
        .requests_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sent - sent_before, 1);
    // The server agrees it is wrong: sent unchecked, it is refused there too.
    let (kind, index, _) = server_error(c.transact_unchecked(NB, &bad).await.unwrap_err());
    assert_eq!((kind, index), (ErrorKind::ConstraintViolation, 0));
}

#[tokio::test]
async fn every_producible_rfc_7047_error_comes_back_typed() {
    let sandbox = Sandbox::builder().start().unwrap();
    let c = client(&sandbox).await;
    let nb_global = || insert("NB_Global", Row::new(), None);

    // Commit-time: NB_Global has maxRows 1. The extra result names no operation.
    let (kind, index, at_commit) = server_error(
        c.transact(NB, &[nb_global(), nb_global()])
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (kind, index, at_commit),
        (ErrorKind::ConstraintViolation, 2, true)
    );

    // Commit-time: a strong reference to a row that does not exist.
    let dangling = insert(
        "Logical_Switch",
        row(&[("ports", Datum::set([Atom::Uuid(Uuid::from_u128(7))]))]),
        None,
    );
    let (kind, _, at_commit) = server_error(c.transact(NB, &[dangling]).await.unwrap_err());
    assert_eq!(
        (kind, at_commit),
        (ErrorKind::ReferentialIntegrityViolation, true)
    );

    let twice = vec![
        insert("Logical_Switch", Row::new(), Some("x")),
        insert("Logical_Switch", Row::new(), Some("x")),
    ];
    assert_eq!(
        server_error(c.transact(NB, &twice).await.unwrap_err()).0,
        ErrorKind::DuplicateUuidName
    );

    c.transact(NB, &[nb_global()]).await.unwrap();
    let arith = |m: Mutator, v: i64| Operation::Mutate {
        table: "NB_Global".into(),
        conditions: vec![],
        mutations: vec![Mutation {
            column: "nb_cfg".into(),
            mutator: m,
            value: Datum::atom(v),
        }],
    };
    assert_eq!(
        server_error(c.transact(NB, &[arith(Mutator::Div, 0)]).await.unwrap_err()).0,
        ErrorKind::DomainError
    );
    let overflow = [arith(Mutator::Add, i64::MAX), arith(Mutator::Add, i64::MAX)];
    assert_eq!(
        server_error(c.transact(NB, &overflow).await.unwrap_err()).0,
        ErrorKind::RangeError
    );

    let never = Operation::Wait {
        table: "NB_Global".into(),
        conditions: vec![],
        columns: vec!["nb_cfg".into()],
        until_equal: true,
        rows: vec![row(&[("nb_cfg", Datum::atom(424242i64))])],
        timeout_ms: Some(0),
    };
    assert_eq!(
        server_error(c.transact(NB, &[never]).await.unwrap_err()).0,
        ErrorKind::TimedOut
    );

    assert_eq!(
        server_error(c.transact(NB, &[Operation::Abort]).await.unwrap_err()).0,
        ErrorKind::Aborted
    );
    let assert_lock = Operation::Assert {
        lock: "notmine".into(),
    };
    assert_eq!(
        server_error(c.transact(NB, &[assert_lock]).await.unwrap_err()).0,
        ErrorKind::NotOwner
    );

    let unknown_table = Operation::Delete {
        table: "Nope".into(),
        conditions: vec![],
    };
    assert!(matches!(
        c.transact(NB, std::slice::from_ref(&unknown_table)).await,
        Err(Error::Constraint(_))
    ));
    assert_eq!(
        server_error(
            c.transact_unchecked(NB, &[unknown_table])
                .await
                .unwrap_err()
        )
        .0,
        ErrorKind::SyntaxError
    );

    assert_eq!(
        server_error(c.get_schema("Nope").await.unwrap_err()).0,
        ErrorKind::UnknownDatabase
    );
    assert_eq!(
        server_error(
            c.transact_unchecked("Nope", &[Operation::Comment("x".into())])
                .await
                .unwrap_err()
        )
        .0,
        ErrorKind::UnknownDatabase
    );
    let unknown_method = c.call("frobnicate", &json!([])).await.unwrap_err();
    assert!(
        matches!(server_error(unknown_method).0, ErrorKind::Other(ref s) if s == "unknown method")
    );
}

/// `cancel` (RFC 7047 §4.1.4) of a transaction blocked in a `wait`. ovsdb-server sends no reply
/// for a canceled transaction, so its `canceled` error is made by our client and proves
/// nothing about the server; what does is that the server abandoned the transaction: the
/// insert behind the wait never commits, not even once the wait's condition comes true.
#[tokio::test]
async fn a_canceled_transaction_is_abandoned_by_the_server_and_never_commits() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    // The NB_Global row the wait watches (a fresh database has none until a tool makes it).
    nbctl(&nb, &["init"]);
    let c = client(&sandbox).await;
    let nb_cfg = |v: i64| row(&[("nb_cfg", Datum::atom(v))]);
    let blocked = vec![
        // No timeout: blocks until nb_cfg is 99.
        Operation::Wait {
            table: "NB_Global".into(),
            conditions: vec![],
            columns: vec!["nb_cfg".into()],
            until_equal: true,
            rows: vec![nb_cfg(99)],
            timeout_ms: None,
        },
        insert(
            "Logical_Switch",
            row(&[("name", Datum::atom("after-the-wait"))]),
            None,
        ),
    ];
    // The request goes out before the cancel on the one connection, so the server holds it
    // blocked when the cancel comes.
    let pending = c.start_transact(NB, &blocked).unwrap();
    c.cancel(pending.id()).unwrap();
    // What the client guarantees: the caller is answered at once, with `canceled`.
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), pending.finish(&blocked))
        .await
        .expect("the canceled transaction got no answer")
        .unwrap_err();
    assert_eq!(server_error(e).0, ErrorKind::Canceled);

    // The wait's condition comes true. Had the server kept the transaction, it would commit
    // right after this one (ovsdb-server retries blocked transactions after each commit),
    // before it reads any later request.
    let set = Operation::Update {
        table: "NB_Global".into(),
        conditions: vec![],
        row: nb_cfg(99),
    };
    assert_eq!(
        c.transact(NB, &[set]).await.unwrap(),
        [OperationResult::Count(1)]
    );
    c.echo().await.unwrap();
    assert_eq!(
        nbctl(&nb, &["get", "NB_Global", ".", "nb_cfg"]).trim(),
        "99"
    );
    assert_eq!(
        nbctl(&nb, &["ls-list"]),
        "",
        "the canceled transaction committed"
    );
    // The connection is still fine afterwards, and so is the server's side of it.
    let done = c.transact(NB, &blocked).await.unwrap();
    assert_eq!(done.len(), 2);
    assert!(nbctl(&nb, &["ls-list"]).contains("(after-the-wait)"));
}

#[tokio::test]
async fn locks_are_granted_queued_stolen_and_released() {
    let sandbox = Sandbox::builder().start().unwrap();
    let (a, mut conn_a) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    let mut notes_a = conn_a.take_notifications().unwrap();
    tokio::spawn(conn_a);
    let (b, mut conn_b) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    let mut notes_b = conn_b.take_notifications().unwrap();
    tokio::spawn(conn_b);

    assert!(a.lock("leader").await.unwrap());
    a.transact(
        NB,
        &[Operation::Assert {
            lock: "leader".into(),
        }],
    )
    .await
    .unwrap();
    assert!(!b.lock("leader").await.unwrap(), "b must wait");
    // The server wants the waiting request withdrawn before a steal.
    b.unlock("leader").await.unwrap();
    assert!(b.steal("leader").await.unwrap());
    // ovsdb-server also announces a lock granted at once with a `locked` notification.
    let mut stolen = next_note(&mut notes_a).await;
    while stolen.method == "locked" {
        stolen = next_note(&mut notes_a).await;
    }
    assert_eq!(stolen.method, "stolen");
    assert_eq!(
        server_error(
            a.transact(
                NB,
                &[Operation::Assert {
                    lock: "leader".into()
                }]
            )
            .await
            .unwrap_err()
        )
        .0,
        ErrorKind::NotOwner
    );
    // After a steal the loser must ask again (it is not queued); then b releases.
    a.unlock("leader").await.unwrap();
    assert!(!a.lock("leader").await.unwrap());
    b.unlock("leader").await.unwrap();
    let locked = next_note(&mut notes_a).await;
    assert_eq!(locked.method, "locked");
    a.transact(
        NB,
        &[Operation::Assert {
            lock: "leader".into(),
        }],
    )
    .await
    .unwrap();
    // b gave the lock up itself: it was never told it was stolen.
    while let Ok(n) = notes_b.try_recv() {
        assert_ne!(n.method, "stolen");
    }
}

#[tokio::test]
async fn monitors_deliver_initial_contents_and_updates_in_all_three_formats() {
    let sandbox = Sandbox::builder().start().unwrap();
    let (c, mut conn) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    let mut notes = conn.take_notifications().unwrap();
    tokio::spawn(conn);
    nbctl(&sandbox.nb_remote(), &["ls-add", "before"]);
    c.set_db_change_aware(true).await.unwrap();

    let req = json!({"Logical_Switch": {"columns": ["name"]}});
    let initial = c.monitor(NB, &json!("m1"), &req).await.unwrap();
    assert!(
        initial.get().contains("\"before\"") && initial.get().contains("\"new\""),
        "{}",
        initial.get()
    );
    let initial2 = c.monitor_cond(NB, &json!("m2"), &req).await.unwrap();
    assert!(initial2.get().contains("\"initial\""), "{}", initial2.get());
    let since: serde_json::Value = serde_json::from_str(
        c.monitor_cond_since(NB, &json!("m3"), &req, None)
            .await
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(
        since[0],
        json!(false),
        "no history asked for: everything sent"
    );
    let txn = since[1].as_str().unwrap().to_string();

    nbctl(&sandbox.nb_remote(), &["ls-add", "after"]);
    let mut methods = std::collections::BTreeSet::new();
    while methods.len() < 3 {
        let n = next_note(&mut notes).await;
        assert!(n.params.get().contains("\"after\""), "{}", n.params.get());
        methods.insert(n.method);
    }
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["update", "update2", "update3"]
    );

    // A resumed monitor_cond_since from the txn id before "after": only the change comes back
    // (on a standalone server the history may or may not be kept; both answers are valid).
    let resumed: serde_json::Value = serde_json::from_str(
        c.monitor_cond_since(NB, &json!("m4"), &req, Some(&txn))
            .await
            .unwrap()
            .get(),
    )
    .unwrap();
    if resumed[0] == json!(true) {
        let body = resumed[2].to_string();
        assert!(body.contains("after") && !body.contains("before"), "{body}");
    }

    // monitor_cond_change narrows m2 to one switch; monitor_cancel ends m1.
    let narrowed = json!({"Logical_Switch": [{"where": [["name", "==", "only-this"]]}]});
    c.monitor_cond_change(&json!("m2"), &json!("m2b"), &narrowed)
        .await
        .unwrap();
    c.monitor_cancel(&json!("m1")).await.unwrap();
    assert!(
        c.monitor_cancel(&json!("m1")).await.is_err(),
        "m1 is already gone"
    );
}
