//! ovn-nbctl-like operations against ovsdb-server + ovn-northd: one transaction builds a
//! router with every operation family, and the logical flows northd derives prove the rows
//! are the ones OVN understands. Rows we do not own are never touched.

use ovn_nb::ops::{existing, AclTarget, LbTarget, Txn};
use ovn_nb::{nb, Table};
use ovn_vpc::owner::{IDENTITY, OWNER_KEY};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{eventually, nbctl, sbctl};
use ovsdb::{Error, ErrorKind, OperationResult};

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_family_lands_and_northd_derives_its_flows() {
    let sandbox = Sandbox::builder().northd().start().unwrap();
    let (client, conn) = ovsdb::connect(&sandbox.nb_remote()).await.unwrap();
    tokio::spawn(conn);
    let vpc = "Vpc/vpc-a";
    let subnet = "Subnet/net1";
    let mut txn = Txn::new(IDENTITY);
    let lr = txn.lr_add(
        vpc,
        nb::LogicalRouter {
            name: s("vpc-a"),
            ..Default::default()
        },
    );
    let ext = txn.lrp_add(
        vpc,
        &lr,
        nb::LogicalRouterPort {
            name: s("vpc-a-ext"),
            mac: s("0a:00:00:00:00:fe"),
            networks: vec![s("172.16.0.10/24")],
            ..Default::default()
        },
    );
    txn.lrp_set_gateway_chassis(vpc, &ext, "vpc-a-ext", "ch0", 100);
    txn.lrp_add(
        vpc,
        &lr,
        nb::LogicalRouterPort {
            name: s("vpc-a-net1"),
            mac: s("0a:00:00:00:01:01"),
            networks: vec![s("10.0.1.1/24")],
            ..Default::default()
        },
    );
    let dhcp = txn.dhcp_options_add(
        subnet,
        nb::DhcpOptions {
            cidr: s("10.0.1.0/24"),
            options: [
                ("lease_time", "3600"),
                ("router", "10.0.1.1"),
                ("server_id", "10.0.1.1"),
                ("server_mac", "0a:00:00:00:01:01"),
            ]
            .into_iter()
            .map(|(k, v)| (s(k), s(v)))
            .collect(),
            ..Default::default()
        },
    );
    let ls = txn.ls_add(
        subnet,
        nb::LogicalSwitch {
            name: s("net1"),
            ..Default::default()
        },
    );
    txn.lsp_add(
        subnet,
        &ls,
        nb::LogicalSwitchPort {
            name: s("net1-vpc-a"),
            r#type: s("router"),
            addresses: vec![s("router")],
            options: [(s("router-port"), s("vpc-a-net1"))].into(),
            ..Default::default()
        },
    );
    let p5 = txn.lsp_add(
        "Pod/web/p5",
        &ls,
        nb::LogicalSwitchPort {
            name: s("web.p5"),
            addresses: vec![s("0a:00:00:00:01:05 10.0.1.5")],
            port_security: vec![s("0a:00:00:00:01:05 10.0.1.5")],
            dhcpv4_options: Some(dhcp.clone()),
            ..Default::default()
        },
    );
    txn.lr_nat_add(
        vpc,
        &lr,
        nb::Nat {
            r#type: nb::NatType::Snat,
            external_ip: s("172.16.0.10"),
            logical_ip: s("10.0.1.0/24"),
            ..Default::default()
        },
    );
    txn.lr_nat_add(
        "Fip/fip-a",
        &lr,
        nb::Nat {
            r#type: nb::NatType::DnatAndSnat,
            external_ip: s("172.16.0.20"),
            logical_ip: s("10.0.1.5"),
            ..Default::default()
        },
    );
    txn.lr_route_add(
        vpc,
        &lr,
        nb::LogicalRouterStaticRoute {
            ip_prefix: s("0.0.0.0/0"),
            nexthop: s("172.16.0.1"),
            ..Default::default()
        },
    );
    txn.lr_policy_add(
        vpc,
        &lr,
        nb::LogicalRouterPolicy {
            priority: 3000,
            r#match: s("ip4.src == 10.0.1.66"),
            action: nb::LogicalRouterPolicyAction::Drop,
            ..Default::default()
        },
    );
    txn.acl_add(
        subnet,
        &AclTarget::Switch(ls.clone()),
        nb::Acl {
            direction: nb::AclDirection::ToLport,
            priority: 1002,
            r#match: s("ip4.src == 10.0.1.77"),
            action: nb::AclAction::Drop,
            ..Default::default()
        },
    );
    let pg = txn.pg_add(
        vpc,
        nb::PortGroup {
            name: s("pg_vpc_a"),
            ports: vec![p5],
            ..Default::default()
        },
    );
    txn.acl_add(
        vpc,
        &AclTarget::PortGroup(pg),
        nb::Acl {
            direction: nb::AclDirection::FromLport,
            priority: 1003,
            r#match: s("inport == @pg_vpc_a && ip4.dst == 10.0.1.88"),
            action: nb::AclAction::AllowRelated,
            ..Default::default()
        },
    );
    // A second gateway port whose chassis come from an HA chassis group.
    let group = txn.ha_chassis_group_add(vpc, "vpc-a-ha", &[("ch1", 20), ("ch2", 10)]);
    txn.lrp_add(
        vpc,
        &lr,
        nb::LogicalRouterPort {
            name: s("vpc-a-ext2"),
            mac: s("0a:00:00:00:00:fd"),
            networks: vec![s("172.17.0.10/24")],
            ha_chassis_group: Some(group),
            ..Default::default()
        },
    );
    // An address set used by an ACL match.
    txn.acl_add(
        subnet,
        &AclTarget::Switch(ls.clone()),
        nb::Acl {
            direction: nb::AclDirection::ToLport,
            priority: 1004,
            r#match: s("ip4.src == $as_vpc_a && tcp.dst == 5432"),
            action: nb::AclAction::Reject,
            ..Default::default()
        },
    );
    txn.address_set_add(
        vpc,
        nb::AddressSet {
            name: s("as_vpc_a"),
            addresses: vec![s("10.0.1.5")],
            ..Default::default()
        },
    );
    txn.lb_add(
        "DnatRule/dnat-a",
        nb::LoadBalancer {
            name: s("dnat-a"),
            protocol: Some(nb::LoadBalancerProtocol::Tcp),
            vips: [(s("172.16.0.10:8080"), s("10.0.1.5:80"))].into(),
            ..Default::default()
        },
        &[LbTarget::Router(lr.clone())],
    );
    let ops = txn.operations();
    client.transact(nb::DATABASE, &ops).await.unwrap();

    // Every row we created carries its owner.
    let tagged = nbctl(
        &sandbox.nb_remote(),
        &[
            "--bare",
            "--columns=external_ids",
            "find",
            "NAT",
            &format!("external_ids:{OWNER_KEY}=Fip/fip-a"),
        ],
    );
    assert!(tagged.contains("Fip/fip-a"), "{tagged}");

    let sb = sandbox.sb_remote().unwrap();
    let expectations = [
        (
            "net1",
            "0a:00:00:00:01:05",
            "switch port address in L2 lookup",
        ),
        ("net1", "ip4.src == 10.0.1.77", "switch ACL"),
        ("net1", "ip4.dst == 10.0.1.88", "port-group ACL"),
        ("net1", "offerip = 10.0.1.5", "DHCPv4 options of the port"),
        ("vpc-a", "ip4.dst == 0.0.0.0/0", "static route"),
        ("vpc-a", "ip4.src == 10.0.1.66", "router policy"),
        ("vpc-a", "ct_snat(172.16.0.10)", "SNAT"),
        ("vpc-a", "ct_dnat_in_czone(10.0.1.5)", "dnat_and_snat"),
        (
            "vpc-a",
            "172.16.0.10 && tcp && tcp.dst == 8080",
            "load balancer VIP on the router",
        ),
        (
            "vpc-a",
            "is_chassis_resident(\"cr-vpc-a-ext2\")",
            "HA chassis group gateway port",
        ),
        (
            "net1",
            "$as_vpc_a && tcp.dst == 5432",
            "address set in an ACL",
        ),
    ];
    let mut missing = Vec::new();
    let ok = eventually(30, || {
        missing.clear();
        let flows_ls = sbctl(&sb, &["lflow-list", "net1"]);
        let flows_lr = sbctl(&sb, &["lflow-list", "vpc-a"]);
        for (dp, needle, what) in expectations {
            let flows = if dp == "net1" { &flows_ls } else { &flows_lr };
            if !flows.contains(needle) {
                missing.push(what);
            }
        }
        missing.is_empty()
    });
    assert!(ok, "northd derived no flow for: {missing:?}");
}

#[tokio::test]
async fn rows_without_our_owner_tag_are_never_modified_or_deleted() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb_remote = sandbox.nb_remote();
    nbctl(&nb_remote, &["ls-add", "theirs"]);
    let uuid: ovsdb::Uuid = nbctl(
        &nb_remote,
        &[
            "--bare",
            "--columns=_uuid",
            "find",
            "Logical_Switch",
            "name=theirs",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    let (client, conn) = ovsdb::connect(&nb_remote).await.unwrap();
    tokio::spawn(conn);

    let refused =
        |e: Error| matches!(e, Error::Transact(ref t) if t.error.kind == ErrorKind::TimedOut);
    let mut add_port = Txn::new(IDENTITY);
    add_port.lsp_add(
        "Pod/x/y",
        &existing(uuid),
        nb::LogicalSwitchPort {
            name: s("sneaky"),
            ..Default::default()
        },
    );
    let e = client
        .transact(nb::DATABASE, &add_port.operations())
        .await
        .unwrap_err();
    assert!(refused(e), "adding a port to a foreign switch must fail");
    let mut del = Txn::new(IDENTITY);
    del.delete::<nb::LogicalSwitch>("Subnet/theirs", uuid);
    assert!(refused(
        client
            .transact(nb::DATABASE, &del.operations())
            .await
            .unwrap_err()
    ));
    let mut upd = Txn::new(IDENTITY);
    upd.update::<nb::LogicalSwitch>(
        "Subnet/theirs",
        uuid,
        [(
            s("other_config"),
            nb::LogicalSwitch::default().column("other_config").unwrap(),
        )]
        .into(),
    );
    assert!(refused(
        client
            .transact(nb::DATABASE, &upd.operations())
            .await
            .unwrap_err()
    ));
    assert_eq!(nbctl(&nb_remote, &["ls-list"]).lines().count(), 1);
    assert!(nbctl(&nb_remote, &["list", "Logical_Switch_Port"])
        .trim()
        .is_empty());

    // Ours: the same operations succeed, and a child is unlinked then collected.
    let mut mine = Txn::new(IDENTITY);
    let ls = mine.ls_add(
        "Subnet/mine",
        nb::LogicalSwitch {
            name: s("mine"),
            ..Default::default()
        },
    );
    mine.lsp_add(
        "Subnet/mine",
        &ls,
        nb::LogicalSwitchPort {
            name: s("p1"),
            ..Default::default()
        },
    );
    let r = client
        .transact(nb::DATABASE, &mine.operations())
        .await
        .unwrap();
    let (OperationResult::Insert(ls_uuid), OperationResult::Insert(p1)) = (&r[0], &r[1]) else {
        panic!("{r:?}")
    };
    let mut unlink = Txn::new(IDENTITY);
    unlink.unlink::<nb::LogicalSwitch>(
        "Subnet/mine",
        *ls_uuid,
        "ports",
        nb::LogicalSwitchPort::TABLE,
        *p1,
    );
    client
        .transact(nb::DATABASE, &unlink.operations())
        .await
        .unwrap();
    assert!(
        !nbctl(&nb_remote, &["list", "Logical_Switch_Port"]).contains("p1"),
        "unreferenced port not collected"
    );
    let mut del = Txn::new(IDENTITY);
    del.delete::<nb::LogicalSwitch>("Subnet/mine", *ls_uuid);
    client
        .transact(nb::DATABASE, &del.operations())
        .await
        .unwrap();
    assert_eq!(nbctl(&nb_remote, &["ls-list"]).trim().lines().count(), 1);
}
