//! `ovn-vpc show` groups the topology by VPC.

use ovn_nb::nb;
use ovn_nb::ops::Txn;
use ovn_vpc::dump::dump;
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::nbctl;

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test]
async fn show_puts_switches_nat_and_routes_under_their_vpc() {
    let sandbox = Sandbox::builder().start().unwrap();
    let (client, conn) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    tokio::spawn(conn);
    let mut txn = Txn::new(ovn_vpc::owner::IDENTITY);
    for vpc in ["vpc-a", "vpc-b"] {
        let owner = format!("Vpc/{vpc}");
        let lr = txn.lr_add(
            &owner,
            nb::LogicalRouter {
                name: s(vpc),
                ..Default::default()
            },
        );
        // The same LAN address in both VPCs.
        txn.lrp_add(
            &owner,
            &lr,
            nb::LogicalRouterPort {
                name: format!("{vpc}-net1"),
                mac: s("0a:00:00:00:01:01"),
                networks: vec![s("10.0.1.1/24")],
                ..Default::default()
            },
        );
        txn.lr_nat_add(
            &owner,
            &lr,
            nb::Nat {
                r#type: nb::NatType::Snat,
                external_ip: if vpc == "vpc-a" {
                    s("172.16.0.10")
                } else {
                    s("172.16.0.11")
                },
                logical_ip: s("10.0.1.0/24"),
                ..Default::default()
            },
        );
        txn.lr_route_add(
            &owner,
            &lr,
            nb::LogicalRouterStaticRoute {
                ip_prefix: s("0.0.0.0/0"),
                nexthop: s("172.16.0.1"),
                ..Default::default()
            },
        );
        let ls = txn.ls_add(
            &format!("Subnet/{vpc}-net1"),
            nb::LogicalSwitch {
                name: format!("{vpc}-net1"),
                ..Default::default()
            },
        );
        txn.lsp_add(
            &owner,
            &ls,
            nb::LogicalSwitchPort {
                name: format!("{vpc}-net1-rtr"),
                r#type: s("router"),
                addresses: vec![s("router")],
                options: [(s("router-port"), format!("{vpc}-net1"))].into(),
                ..Default::default()
            },
        );
        txn.lsp_add(
            "Pod/web/p",
            &ls,
            nb::LogicalSwitchPort {
                name: format!("{vpc}.web.p"),
                addresses: vec![s("0a:00:00:00:01:05 10.0.1.5")],
                ..Default::default()
            },
        );
    }
    client
        .transact(nb::DATABASE, &txn.operations())
        .await
        .unwrap();
    nbctl(&sandbox.nb_remote(), &["ls-add", "loose"]);

    let tree = ovn_vpc::show::render(&dump(&client, nb::DATABASE, &[]).await.unwrap());
    let a = tree.find("vpc vpc-a (router vpc-a)").expect(&tree);
    let b = tree.find("vpc vpc-b (router vpc-b)").expect(&tree);
    let a_switch = tree
        .find("    switch vpc-a-net1 (Subnet/vpc-a-net1)")
        .expect(&tree);
    let b_switch = tree.find("    switch vpc-b-net1").expect(&tree);
    assert!(
        a < a_switch && a_switch < b && b < b_switch,
        "switches not under their VPC:\n{tree}"
    );
    assert!(
        tree.contains("    nat snat 172.16.0.10 <-> 10.0.1.0/24"),
        "{tree}"
    );
    assert!(
        tree.contains("    route 0.0.0.0/0 via 172.16.0.1 (dst-ip)"),
        "{tree}"
    );
    assert!(
        tree.contains("        port vpc-b.web.p 0a:00:00:00:01:05 10.0.1.5"),
        "{tree}"
    );
    assert!(
        tree.contains("\nswitch loose\n"),
        "an unattached foreign switch is listed at top level:\n{tree}"
    );
}
