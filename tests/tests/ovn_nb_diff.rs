//! The desired-state diff against a real ovsdb-server, driven by random sequences of desired
//! states: after each one a single transaction makes the database equal to it, re-diffing
//! yields zero operations, and rows that are not ours are never changed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ovn_nb::diff::{diff, Desired, Scope};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::nbctl;
use ovsdb::{
    Atom, Datum, MonitorRequest, MonitorRequests, Operation, OperationResult, Session,
    SessionOptions,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const NB: &str = "OVN_Northbound";
const MANAGED: &[&str] = &["Logical_Switch", "Logical_Switch_Port"];

/// switch → (other_config value, port → address index)
type State = BTreeMap<u8, (u8, BTreeMap<u8, u8>)>;

fn state() -> impl Strategy<Value = State> {
    prop::collection::btree_map(
        0u8..4,
        (0u8..3, prop::collection::btree_map(0u8..4, 0u8..3, 0..4)),
        0..4,
    )
}

fn desired(st: &State) -> Vec<Desired> {
    let mut out = Vec::new();
    for (sw, (cfg, ports)) in st {
        let sw_key = format!("sw{sw}");
        let mut port_refs = Vec::new();
        for (p, addr) in ports {
            let key = format!("sw{sw}-p{p}");
            port_refs.push(Atom::NamedUuid(key.clone()));
            out.push(Desired {
                table: "Logical_Switch_Port".into(),
                key: key.clone(),
                owner: format!("Pod/ns/{key}"),
                row: [
                    ("name".to_string(), Datum::atom(key.as_str())),
                    (
                        "addresses".to_string(),
                        Datum::set([format!("0a:00:00:00:{sw:02x}:{p:02x} 10.{sw}.{addr}.{p}")]),
                    ),
                ]
                .into(),
            });
        }
        out.push(Desired {
            table: "Logical_Switch".into(),
            key: sw_key.clone(),
            owner: format!("Subnet/{sw_key}"),
            row: [
                ("name".to_string(), Datum::atom(sw_key.as_str())),
                (
                    "other_config".to_string(),
                    Datum::map([("ovn-vpc-test", format!("v{cfg}"))]),
                ),
                ("ports".to_string(), Datum::set(port_refs)),
            ]
            .into(),
        });
    }
    out
}

/// What the database holds, read with a select (not the replica): our switches with their
/// config and port names, our ports with their addresses; and the foreign rows verbatim.
async fn read_back(client: &ovsdb::Client) -> (BTreeMap<String, String>, Vec<ovsdb::Row>) {
    let sel = |t: &str| Operation::Select {
        table: t.into(),
        conditions: vec![],
        columns: None,
    };
    let r = client
        .transact(NB, &[sel("Logical_Switch"), sel("Logical_Switch_Port")])
        .await
        .unwrap();
    let (OperationResult::Select(lss), OperationResult::Select(lsps)) = (&r[0], &r[1]) else {
        panic!()
    };
    let port_name: BTreeMap<String, String> = lsps
        .iter()
        .map(|p| {
            (
                p["_uuid"].to_string(),
                p["name"]
                    .as_atom()
                    .and_then(|a| a.as_str())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let mut ours = BTreeMap::new();
    let mut foreign = Vec::new();
    for ls in lss {
        let name = ls["name"]
            .as_atom()
            .and_then(|a| a.as_str())
            .unwrap_or("")
            .to_string();
        if ls["external_ids"].get_str("ovn-vpc/owner").is_none() {
            let mut row = ls.clone();
            row.remove("_version");
            foreign.push(row);
            continue;
        }
        let mut ports: Vec<String> = ls["ports"]
            .as_set()
            .iter()
            .map(|u| port_name[&Datum::atom(u.clone()).to_string()].clone())
            .collect();
        ports.sort();
        ours.insert(
            format!("LS {name}"),
            format!(
                "{} {:?}",
                ls["other_config"].get_str("ovn-vpc-test").unwrap_or(""),
                ports
            ),
        );
    }
    for p in lsps {
        let name = p["name"]
            .as_atom()
            .and_then(|a| a.as_str())
            .unwrap_or("")
            .to_string();
        if p["external_ids"].get_str("ovn-vpc/owner").is_some() {
            ours.insert(format!("LSP {name}"), p["addresses"].to_string());
        } else {
            let mut row = p.clone();
            row.remove("_version");
            foreign.push(row);
        }
    }
    (ours, foreign)
}

fn expected(st: &State) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (sw, (cfg, ports)) in st {
        let names: Vec<String> = ports.keys().map(|p| format!("sw{sw}-p{p}")).collect();
        out.insert(format!("LS sw{sw}"), format!("v{cfg} {names:?}"));
        for (p, addr) in ports {
            out.insert(
                format!("LSP sw{sw}-p{p}"),
                Datum::set([format!("0a:00:00:00:{sw:02x}:{p:02x} 10.{sw}.{addr}.{p}")])
                    .to_string(),
            );
        }
    }
    out
}

#[test]
fn random_desired_states_converge_in_one_transaction_and_reapply_as_nothing() {
    let sandbox = Sandbox::builder().start().unwrap();
    let remote = sandbox.nb_remote();
    // Rows that are not ours, with the same names ours may use.
    nbctl(
        &remote,
        &[
            "ls-add",
            "sw0",
            "--",
            "lsp-add",
            "sw0",
            "sw0-p9",
            "--",
            "set",
            "Logical_Switch",
            "sw0",
            "other_config:ovn-vpc-test=foreign",
        ],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (session, client, foreign_before) = rt.block_on(async {
        let reqs = MonitorRequests::new()
            .table("Logical_Switch", MonitorRequest::new())
            .table("Logical_Switch_Port", MonitorRequest::new());
        let session = Session::start(&remote, SessionOptions::new(NB).monitor(reqs)).unwrap();
        let client = session.client(Duration::from_secs(30)).await.unwrap();
        let (_, foreign) = read_back(&client).await;
        (session, client, foreign)
    });
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let transactions = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(state(), 1..5), |states| {
            rt.block_on(async {
                for st in &states {
                    let want = desired(st);
                    let ops = diff(
                        &ovn_vpc::owner::IDENTITY,
                        MANAGED,
                        &want,
                        session.replica().as_ref().unwrap(),
                        &Scope::All,
                    )
                    .unwrap();
                    if !ops.is_empty() {
                        client.transact(NB, &ops).await.unwrap();
                        transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // One transaction must be enough: once the replica has caught up, nothing
                    // is left to do.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        let left = diff(
                            &ovn_vpc::owner::IDENTITY,
                            MANAGED,
                            &want,
                            session.replica().as_ref().unwrap(),
                            &Scope::All,
                        )
                        .unwrap();
                        if left.is_empty() {
                            break;
                        }
                        prop_assert!(
                            Instant::now() < deadline,
                            "still {} operations after one transaction: {left:?}",
                            left.len()
                        );
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let (ours, foreign) = read_back(&client).await;
                    prop_assert_eq!(ours, expected(st));
                    prop_assert_eq!(&foreign, &foreign_before, "a foreign row changed");
                }
                Ok(())
            })
        })
        .unwrap();
    let transactions = transactions.into_inner();
    assert!(
        transactions > 10,
        "the generator produced too few changes ({transactions})"
    );
}
