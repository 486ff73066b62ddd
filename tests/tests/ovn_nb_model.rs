//! The generated types against real databases: typed rows commit and read back unchanged, and
//! rows written by OVS itself decode.

use ovn_nb::{nb, vswitch, Ref, Table};
use ovn_vpc::sandbox::{Sandbox, SandboxBuilder};
use ovn_vpc_tests::nbctl;
use ovsdb::{Condition, Operation, OperationResult};

fn insert<T: Table>(row: &T, name: &str) -> Operation {
    Operation::Insert {
        table: T::TABLE.into(),
        row: row.to_row(),
        uuid_name: Some(name.into()),
    }
}

fn select<T: Table>() -> Operation {
    Operation::Select {
        table: T::TABLE.into(),
        conditions: vec![],
        columns: None,
    }
}

fn rows<T: Table>(r: &OperationResult) -> Vec<T> {
    let OperationResult::Select(rows) = r else {
        panic!("{r:?}")
    };
    rows.iter()
        .map(|row| {
            let mut row = row.clone();
            row.remove("_uuid");
            row.remove("_version");
            T::from_row(&row).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn typed_rows_commit_in_one_transaction_and_read_back_equal() {
    let sandbox = Sandbox::builder().start().unwrap();
    let (client, conn) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    tokio::spawn(conn);
    let route = nb::LogicalRouterStaticRoute {
        ip_prefix: "0.0.0.0/0".into(),
        nexthop: "172.16.0.1".into(),
        policy: Some(nb::LogicalRouterStaticRoutePolicy::DstIp),
        ..Default::default()
    };
    let lrp = nb::LogicalRouterPort {
        name: "lrp-a".into(),
        mac: "0a:00:00:00:01:01".into(),
        networks: vec!["10.0.1.1/24".into()],
        ..Default::default()
    };
    let lr = nb::LogicalRouter {
        name: "vpc-a".into(),
        ports: vec![Ref::named("lrp")],
        static_routes: vec![Ref::named("route")],
        external_ids: [("ovn-vpc/owner".to_string(), "Vpc/vpc-a".to_string())].into(),
        ..Default::default()
    };
    let ops = vec![
        insert(&route, "route"),
        insert(&lrp, "lrp"),
        insert(&lr, "lr"),
    ];
    client.transact(nb::DATABASE, &ops).await.unwrap();

    let read = client
        .transact(
            nb::DATABASE,
            &[
                select::<nb::LogicalRouterStaticRoute>(),
                select::<nb::LogicalRouterPort>(),
                select::<nb::LogicalRouter>(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows::<nb::LogicalRouterStaticRoute>(&read[0]), vec![route]);
    assert_eq!(rows::<nb::LogicalRouterPort>(&read[1]), vec![lrp]);
    let routers = rows::<nb::LogicalRouter>(&read[2]);
    assert_eq!(routers.len(), 1);
    assert_eq!(routers[0].name, "vpc-a");
    assert!(
        routers[0].ports[0].as_uuid().is_some(),
        "the named reference became a UUID"
    );
    // ovn-nbctl, an independent reader, sees the route on the router.
    assert!(nbctl(&sandbox.nb_remote(), &["lr-route-list", "vpc-a"]).contains("172.16.0.1"));
    // An update through a typed condition.
    let upd = Operation::Update {
        table: nb::LogicalRouter::TABLE.into(),
        conditions: vec![Condition::eq("name", "vpc-a")],
        row: [(
            "options".to_string(),
            nb::LogicalRouter {
                options: [("always_learn_from_arp_request".into(), "false".into())].into(),
                ..Default::default()
            }
            .column("options")
            .unwrap(),
        )]
        .into(),
    };
    assert_eq!(
        client.transact(nb::DATABASE, &[upd]).await.unwrap(),
        vec![OperationResult::Count(1)]
    );
}

#[tokio::test]
async fn rows_written_by_ovs_itself_decode_into_the_vswitch_types() {
    let sandbox = SandboxBuilder::default().chassis(1).start().unwrap();
    let (client, conn) = ovsdb::connect(&sandbox.chassis()[0].ovs_remote())
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = client
        .transact(
            vswitch::DATABASE,
            &[
                select::<vswitch::OpenVSwitch>(),
                select::<vswitch::Bridge>(),
                select::<vswitch::Interface>(),
            ],
        )
        .await
        .unwrap();
    let ovs = rows::<vswitch::OpenVSwitch>(&r[0]);
    assert_eq!(ovs.len(), 1);
    assert_eq!(
        ovs[0]
            .external_ids
            .get("ovn-bridge-datapath-type")
            .map(String::as_str),
        Some("netdev")
    );
    let bridges = rows::<vswitch::Bridge>(&r[1]);
    let br_int = bridges.iter().find(|b| b.name == "br-int").expect("br-int");
    assert_eq!(br_int.datapath_type, "netdev");
    assert_eq!(br_int.fail_mode, Some(vswitch::BridgeFailMode::Secure));
    let ifaces = rows::<vswitch::Interface>(&r[2]);
    assert!(ifaces
        .iter()
        .any(|i| i.name == "br-int" && i.r#type == "internal" && i.ofport == Some(65534)));
}
