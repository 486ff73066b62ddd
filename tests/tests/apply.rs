//! `ovn-vpc apply -f` / `plan -f` through the binary, against ovsdb-server + ovn-northd, with
//! ovn-nbctl / ovn-sbctl as witnesses.

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{eventually, nbctl, ovn_vpc, stdout_of, write_file as write};

const WORLD: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec:
  staticRoutes: [{cidr: 192.168.0.0/16, nextHop: 10.0.1.254}, {cidr: 10.0.1.128/25, nextHop: 10.0.1.253, policy: src}]
  policyRoutes: [{priority: 3000, match: "ip4.src == 10.0.1.66", action: drop}]
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-b}
spec: {}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net1}
spec: {vpc: vpc-a, cidrs: [10.0.1.0/24], namespaces: [team-a]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: b-net1}
spec: {vpc: vpc-b, cidrs: [10.0.1.0/24], namespaces: [team-b]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: default}
spec: {cidrs: [10.16.0.0/16], default: true}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-b}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: elsewhere}
spec: {containers: [{name: c, image: x}]}
"#;

#[test]
fn two_vpcs_with_the_same_cidr_apply_and_a_reapply_changes_nothing() {
    let sandbox = Sandbox::builder().northd().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "world.yaml", WORLD);
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let routers = nbctl(&nb, &["lr-list"]);
    for r in ["vpc-a", "vpc-b", "default"] {
        assert!(routers.contains(&format!("({r})")), "{routers}");
    }
    // Same LAN address on both VPC routers, same first pod address in both VPCs.
    assert!(nbctl(&nb, &["lrp-list", "vpc-a"]).contains("vpc-a-a-net1"));
    assert_eq!(
        nbctl(
            &nb,
            &["get", "Logical_Router_Port", "vpc-a-a-net1", "networks"]
        )
        .trim(),
        "[\"10.0.1.1/24\"]"
    );
    assert_eq!(
        nbctl(
            &nb,
            &["get", "Logical_Router_Port", "vpc-b-b-net1", "networks"]
        )
        .trim(),
        "[\"10.0.1.1/24\"]"
    );
    let a = nbctl(
        &nb,
        &["get", "Logical_Switch_Port", "web.team-a", "addresses"],
    );
    let b = nbctl(
        &nb,
        &["get", "Logical_Switch_Port", "web.team-b", "addresses"],
    );
    assert!(
        a.contains(" 10.0.1.2\"") && b.contains(" 10.0.1.2\""),
        "{a} {b}"
    );
    assert_ne!(a, b, "different MACs");
    let other = nbctl(
        &nb,
        &["get", "Logical_Switch_Port", "other.elsewhere", "addresses"],
    );
    assert!(
        other.contains(" 10.16.0.2\""),
        "unclaimed namespace → default subnet: {other}"
    );

    let routes = nbctl(&nb, &["lr-route-list", "vpc-a"]);
    assert!(
        routes.contains("192.168.0.0/16")
            && routes.contains("10.0.1.254")
            && routes.contains("src-ip"),
        "{routes}"
    );
    let policies = nbctl(&nb, &["lr-policy-list", "vpc-a"]);
    assert!(
        policies.contains("3000")
            && policies.contains("ip4.src == 10.0.1.66")
            && policies.contains("drop"),
        "{policies}"
    );

    // plan after apply: nothing; a second apply: nothing either.
    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", &f]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    assert!(String::from_utf8_lossy(&plan.stdout).contains("no changes"));
    // Routes are identified by content: listing them in another order changes nothing.
    let reordered = write(
        dir.path(),
        "reordered.yaml",
        &WORLD.replace(
            "staticRoutes: [{cidr: 192.168.0.0/16, nextHop: 10.0.1.254}, {cidr: 10.0.1.128/25, nextHop: 10.0.1.253, policy: src}]",
            "staticRoutes: [{cidr: 10.0.1.128/25, nextHop: 10.0.1.253, policy: src}, {cidr: 192.168.0.0/16, nextHop: 10.0.1.254}]",
        ),
    );
    assert_eq!(
        ovn_vpc(&["plan", "--db", &nb, "-f", &reordered])
            .status
            .code(),
        Some(0)
    );
    let again = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("applied: 0 operation(s)"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // northd derives the datapaths and port bindings.
    let sb = sandbox.sb_remote().unwrap();
    let ok = eventually(30, || {
        let s = stdout_of(
            "ovn-sbctl",
            &[
                &format!("--db={sb}"),
                "--columns=logical_port",
                "list",
                "Port_Binding",
            ],
        );
        s.contains("web.team-a") && s.contains("web.team-b") && s.contains("other.elsewhere")
    });
    assert!(ok, "northd did not bind the pod ports");

    // Removing a pod from the manifests removes its port only with --prune.
    let fewer = write(
        dir.path(),
        "fewer.yaml",
        &WORLD.replace(
            "metadata: {name: other, namespace: elsewhere}",
            "metadata: {name: other2, namespace: team-a}",
        ),
    );
    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", &fewer]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&plan.stdout).contains("- Logical_Switch_Port"));
    let pruned = ovn_vpc(&["apply", "--prune", "--db", &nb, "-f", &fewer]);
    assert!(pruned.status.success());
    assert!(
        !nbctl(&nb, &["--columns=name", "list", "Logical_Switch_Port"]).contains("other.elsewhere")
    );
    // Addresses in force are kept: web.team-a still has 10.0.1.2, the new pod gets .3.
    assert_eq!(
        nbctl(
            &nb,
            &["get", "Logical_Switch_Port", "web.team-a", "addresses"]
        ),
        a
    );
    assert!(nbctl(
        &nb,
        &["get", "Logical_Switch_Port", "other2.team-a", "addresses"]
    )
    .contains(" 10.0.1.3\""));
}

const TWO_PODS_ONE_ADDRESS: &str = "---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, annotations: {ovnvpc.io/ip_address: 10.16.0.9}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, annotations: {ovnvpc.io/ip_address: 10.16.0.9}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, annotations: {ovnvpc.io/ip_address: 10.16.0.x}}
spec: {containers: []}
";
const LATE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: data, annotations: {ovnvpc.io/subnet: late}}
spec: {containers: [{name: c, image: x}]}
"#;
const DEFAULT_SUBNET: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: default}
spec: {cidrs: [10.16.0.0/16], default: true}
"#;
const LATE_SUBNET: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: late}
spec: {cidrs: [10.77.0.0/24]}
"#;

#[test]
fn a_pod_whose_subnet_is_missing_waits_and_never_gets_a_default_address() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "first.yaml",
        &format!("{DEFAULT_SUBNET}---{LATE_POD}"),
    );
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &first]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Pod/data/db") && err.contains("SubnetNotReady"),
        "{err}"
    );
    assert!(
        !nbctl(&nb, &["--columns=name", "list", "Logical_Switch_Port"]).contains("db.data"),
        "the pod got a port before its subnet existed"
    );

    // Either order of the documents gives the same result once the subnet is there.
    for (i, text) in [
        format!("{DEFAULT_SUBNET}---{LATE_POD}---{LATE_SUBNET}"),
        format!("{LATE_SUBNET}---{LATE_POD}---{DEFAULT_SUBNET}"),
    ]
    .iter()
    .enumerate()
    {
        let f = write(dir.path(), &format!("all{i}.yaml"), text);
        let out = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = nbctl(&nb, &["get", "Logical_Switch_Port", "db.data", "addresses"]);
        assert!(addr.contains(" 10.77.0.2\""), "order {i}: {addr}");
    }
}

#[test]
fn an_invalid_manifest_is_refused_with_object_and_field_and_nothing_is_applied() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yaml", &format!("{DEFAULT_SUBNET}---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: clash}}\nspec: {{cidrs: [10.16.5.0/24], gateway: 10.99.0.1}}\n{TWO_PODS_ONE_ADDRESS}"));
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &bad]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Subnet/default: spec.cidrs: 10.16.0.0/16 overlaps 10.16.5.0/24 of Subnet clash in VPC default"), "{err}");
    assert!(
        err.contains("Subnet/clash: spec.gateway: 10.99.0.1 is outside 10.16.5.0/24"),
        "{err}"
    );
    assert!(err.contains("Pod/x/b: metadata.annotations[ovnvpc.io/ip_address]: 10.16.0.9 is also requested by Pod x/a in Subnet default"), "{err}");
    assert!(err.contains("Pod/x/c: metadata.annotations[ovnvpc.io/ip_address]: \"10.16.0.x\" is not an IP address"), "{err}");
    assert!(
        nbctl(&nb, &["show"]).trim().is_empty(),
        "something was applied"
    );
}

#[test]
fn the_examples_land_with_nat_gateways_and_northd_derives_their_flows() {
    let sandbox = Sandbox::builder().northd().chassis(1).start().unwrap();
    let nb = sandbox.nb_remote();
    let sb = sandbox.sb_remote().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let out = ovn_vpc(&["apply", "--db", &nb, "--sb", &sb, "-f", examples]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "something waits: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each VPC: a gateway port on the external subnet with its own address, the same LAN
    // address 10.0.1.1, SNAT and a Fip, a default route to the external gateway.
    let a_nat = nbctl(&nb, &["lr-nat-list", "vpc-a"]);
    let b_nat = nbctl(&nb, &["lr-nat-list", "vpc-b"]);
    assert!(
        a_nat.contains("snat")
            && a_nat.contains("10.0.1.0/24")
            && a_nat.contains("dnat_and_snat")
            && a_nat.contains("172.16.0.100"),
        "{a_nat}"
    );
    assert!(
        b_nat.contains("snat") && b_nat.contains("dnat_and_snat"),
        "{b_nat}"
    );
    let a_gw = nbctl(
        &nb,
        &["get", "Logical_Router_Port", "vpc-a-external", "networks"],
    );
    let b_gw = nbctl(
        &nb,
        &["get", "Logical_Router_Port", "vpc-b-external", "networks"],
    );
    assert_ne!(a_gw, b_gw);
    // The gateway (.1) and the excluded range (.2-.9) are never handed to a router.
    for gw in [&a_gw, &b_gw] {
        let addr = gw.trim().trim_matches(|c| c == '[' || c == ']' || c == '"');
        let host: u8 = addr
            .strip_prefix("172.16.0.")
            .and_then(|r| r.strip_suffix("/24"))
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("{gw}"));
        assert!(host >= 10, "{gw}");
    }
    let routes = nbctl(&nb, &["lr-route-list", "vpc-a"]);
    assert!(
        routes
            .lines()
            .any(|l| l.contains("0.0.0.0/0") && l.contains("172.16.0.1 ")),
        "{routes}"
    );
    assert!(nbctl(&nb, &["lr-lb-list", "vpc-b"]).contains("5432"));
    // The gateway chassis comes from the Southbound (no Node is labelled).
    assert!(nbctl(&nb, &["list", "HA_Chassis"]).contains("ch0"));
    // The default-VPC subnet bound to a namespace.
    assert!(nbctl(
        &nb,
        &["get", "Logical_Switch_Port", "toolbox.tools", "addresses"]
    )
    .contains(" 10.20.0.2\""));

    // northd: each router gets a chassis-redirect port and NAT flows for its own addresses.
    let ok = eventually(30, || {
        let flows = stdout_of("ovn-sbctl", &[&format!("--db={sb}"), "lflow-list", "vpc-a"]);
        flows.contains("ct_dnat_in_czone(10.0.1.2)")
            && flows.contains("is_chassis_resident(\"cr-vpc-a-external\")")
            && flows.contains("172.16.0.100")
    });
    assert!(ok, "northd derived no NAT flows for vpc-a");

    // Re-applying the examples changes nothing, every address included.
    let plan = ovn_vpc(&["plan", "--db", &nb, "--sb", &sb, "-f", examples]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
}

#[test]
fn uninstall_removes_every_row_of_ours_and_nothing_else() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", examples]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Someone else's rows, one with a name we also use.
    nbctl(&nb, &["ls-add", "theirs", "--", "lsp-add", "theirs", "p1"]);
    nbctl(
        &nb,
        &[
            "lr-add",
            "vpc-x",
            "--",
            "set",
            "Logical_Router",
            "vpc-x",
            "external_ids:owner=them",
        ],
    );
    let ours = |nb: &str| {
        let out = ovn_vpc(&["dump", "--db", nb, "--format", "json"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .matches("ovn-vpc/owner")
            .count()
    };
    assert!(ours(&nb) > 30, "the examples did not land");

    let dry = ovn_vpc(&["uninstall", "--db", &nb, "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(ours(&nb) > 30, "--dry-run removed something");

    let out = ovn_vpc(&["uninstall", "--db", &nb]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(ours(&nb), 0, "rows of ours left behind after: {said}");
    assert!(nbctl(&nb, &["ls-list"]).contains("theirs"));
    assert!(nbctl(&nb, &["lsp-list", "theirs"]).contains("p1"));
    assert!(nbctl(&nb, &["lr-list"]).contains("vpc-x"));
    assert_eq!(
        nbctl(&nb, &["--bare", "--columns=_uuid", "list", "NAT"]).trim(),
        ""
    );

    let again = ovn_vpc(&["uninstall", "--db", &nb]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("removed 0 row(s) of ours"));
}

#[test]
fn doctor_finds_pods_outside_the_subnet_that_claims_them() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let before = r#"
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: dflt}
spec: {cidrs: [10.30.0.0/24], default: true}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: late}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: early, namespace: late, annotations: {ovnvpc.io/subnet: nowhere}}
spec: {containers: []}
"#;
    let claim = "---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: late-net}\nspec: {cidrs: [10.40.0.0/24], namespaces: [late]}\n";
    let w1 = write(dir.path(), "before.yaml", before);
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &w1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doctor = |w: &str| {
        let out = ovn_vpc(&["doctor", "--db", &nb, "-f", w]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = doctor(&w1);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "note Pod late/early: waits: annotation ovnvpc.io/subnet names Subnet \"nowhere\""
        ),
        "{text}"
    );

    // A subnet now claims the namespace: the pod placed in the default subnet is reported.
    let w2 = write(dir.path(), "after.yaml", &format!("{before}{claim}"));
    let (code, text) = doctor(&w2);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("MISMATCH Pod late/web: address 10.30.0.2 is in subnet dflt, but subnet late-net claims it"), "{text}");

    // Applying moves it; then a pod dropped from the manifests leaves an orphan port.
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &w2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = doctor(&w2);
    assert_eq!(code, Some(0), "{text}");
    let w3 = write(
        dir.path(),
        "gone.yaml",
        &format!("{}{claim}", before.replace("name: web,", "name: other,")),
    );
    let (code, text) = doctor(&w3);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("MISMATCH Pod late/web: has a port (10.40.0.2 in subnet late-net) but is not in the manifests"), "{text}");
}

#[test]
fn drift_made_by_hand_is_healed_by_the_next_apply() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", examples]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = || String::from_utf8(ovn_vpc(&["show", "--db", &nb]).stdout).unwrap();
    let before = show();

    // An admin deletes a pod port, a NAT rule and the default route, and edits a column.
    nbctl(&nb, &["lsp-del", "web.team-a"]);
    nbctl(&nb, &["lr-nat-del", "vpc-a", "snat", "10.0.1.0/24"]);
    nbctl(&nb, &["lr-route-del", "vpc-b", "0.0.0.0/0"]);
    nbctl(&nb, &["lsp-set-port-security", "web.team-b"]);
    nbctl(
        &nb,
        &[
            "set",
            "Logical_Router_Port",
            "vpc-a-a-net1",
            "mac=\"0a:00:00:00:00:99\"",
        ],
    );
    assert_ne!(show(), before);

    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", examples]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", examples]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(show(), before, "not healed");
    assert!(nbctl(
        &nb,
        &["get", "Logical_Switch_Port", "web.team-b", "port_security"]
    )
    .contains("10.0.1.2"));
    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", examples]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
}

#[test]
fn a_dual_stack_subnet_gets_both_addresses_dhcpv6_and_router_advertisements() {
    let sandbox = Sandbox::builder().northd().start().unwrap();
    let nb = sandbox.nb_remote();
    let sb = sandbox.sb_remote().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "dual.yaml",
        "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: dual}\n\
         spec: {cidrs: [10.50.0.0/24, 'fd00:50::/64'], namespaces: [d]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: d}\nspec: {containers: []}\n",
    );
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = nbctl(&nb, &["get", "Logical_Switch_Port", "p.d", "addresses"]);
    assert!(addr.contains(" 10.50.0.2 fd00:50::2\""), "{addr}");
    assert!(nbctl(
        &nb,
        &["get", "Logical_Router_Port", "default-dual", "networks"]
    )
    .contains("fd00:50::1/64"));
    assert_eq!(nbctl(&nb, &["dhcp-options-list"]).lines().count(), 2);
    let ok = eventually(30, || {
        let flows = stdout_of("ovn-sbctl", &[&format!("--db={sb}"), "lflow-list"]);
        flows.contains("put_dhcpv6_opts(")
            && flows.contains("ia_addr = fd00:50::2")
            && flows.contains("put_dhcp_opts(offerip = 10.50.0.2")
            && flows.contains("put_nd_ra_opts(addr_mode = \"dhcpv6_stateful\"")
    });
    assert!(ok, "northd derived no DHCPv4/DHCPv6/RA flows for the pod");
    assert_eq!(
        ovn_vpc(&["plan", "--db", &nb, "-f", &f]).status.code(),
        Some(0)
    );
}

#[test]
fn ip_objects_in_the_manifests_seed_allocations_the_nb_does_not_hold() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "ips.yaml",
        "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: s}\nspec: {cidrs: [10.60.0.0/24], namespaces: [n]}\n---\n\
         apiVersion: ovnvpc.io/v1\nkind: IP\nmetadata: {name: p.n}\n\
         spec: {subnet: s, vpc: default, owner: Pod/n/p, ips: [10.60.0.77], mac: '0a:00:00:00:00:77'}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec: {containers: []}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: n}\nspec: {containers: []}\n",
    );
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        nbctl(&nb, &["get", "Logical_Switch_Port", "p.n", "addresses"]).trim(),
        "[\"0a:00:00:00:00:77 10.60.0.77\"]"
    );
    assert!(
        nbctl(&nb, &["get", "Logical_Switch_Port", "q.n", "addresses"]).contains(" 10.60.0.2\"")
    );
}
