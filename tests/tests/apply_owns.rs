//! What `apply`, `plan` and `uninstall` may touch, against ovsdb-server with ovn-nbctl as the
//! other writer and as witness: a partial apply changes nothing of absent objects, foreign
//! rows beside and inside ours never change, `--prune` removes exactly the rows of absent
//! objects, and every row that would disappear is listed first.

use std::collections::BTreeMap;
use std::process::Command;

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{nbctl, ovn_vpc, ovn_vpc_bin, succeeded as ok, write_file as write};

/// Every row of the tables apply writes, as ovn-nbctl prints it: uuid → the row's text.
fn snapshot(nb: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in [
        "Logical_Router",
        "Logical_Router_Port",
        "Logical_Router_Static_Route",
        "Logical_Router_Policy",
        "Logical_Switch",
        "Logical_Switch_Port",
        "NAT",
        "Load_Balancer",
        "DHCP_Options",
        "HA_Chassis_Group",
        "HA_Chassis",
    ] {
        let text = nbctl(nb, &["list", t]);
        for rec in text.split("\n\n").filter(|r| !r.trim().is_empty()) {
            let uuid = rec
                .lines()
                .find_map(|l| l.strip_prefix("_uuid"))
                .map(|l| l.trim_start_matches([' ', ':']).trim().to_string())
                .unwrap();
            out.insert(format!("{t} {uuid}"), rec.trim().to_string());
        }
    }
    out
}

fn port_address(nb: &str, port: &str) -> String {
    nbctl(nb, &["get", "Logical_Switch_Port", port, "addresses"])
        .trim()
        .to_string()
}

const SUBNET_SHARED: &str = "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: shared}\nspec: {cidrs: [10.60.0.0/24], namespaces: [sh]}\n";

fn pod(ns: &str, name: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n")
}

#[test]
fn a_partial_apply_keeps_the_ports_and_addresses_of_absent_pods() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.yaml",
        &format!("{SUBNET_SHARED}{}", pod("sh", "pa")),
    );
    let b = write(
        dir.path(),
        "b.yaml",
        &format!("{SUBNET_SHARED}{}", pod("sh", "pb")),
    );
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", &a]));
    let pa = port_address(&nb, "pa.sh");
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", &b]));
    let ports = nbctl(&nb, &["lsp-list", "shared"]);
    assert!(ports.contains("pa.sh"), "pa.sh was removed: {ports}");
    assert!(ports.contains("pb.sh"), "{ports}");
    assert_eq!(port_address(&nb, "pa.sh"), pa, "pa's address changed");
    let ip = |a: &str| {
        a.trim_matches(['[', ']', '"'])
            .split(' ')
            .nth(1)
            .map(str::to_string)
    };
    assert_ne!(
        ip(&pa),
        ip(&port_address(&nb, "pb.sh")),
        "pb took pa's address"
    );
    // Re-applying B plans nothing; --prune plans exactly pa's port, by name.
    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", &b]);
    assert_eq!(plan.status.code(), Some(0), "{}", ok(&plan));
    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", &b, "--prune"]);
    assert_eq!(plan.status.code(), Some(2));
    let text = String::from_utf8_lossy(&plan.stdout);
    let removals: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(
        removals,
        vec!["- Logical_Switch_Port \"pa.sh\" (Pod/sh/pa)"],
        "{text}"
    );
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", &b, "--prune"]));
    let ports = nbctl(&nb, &["lsp-list", "shared"]);
    assert!(
        !ports.contains("pa.sh") && ports.contains("pb.sh"),
        "{ports}"
    );
}

/// The documents of `examples/vpcs.yaml` whose `metadata: {name: …}` is one of `names`.
fn examples_subset(names: &[&str]) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/vpcs.yaml"
    ))
    .unwrap();
    text.split("\n---\n")
        .filter(|d| {
            names
                .iter()
                .any(|n| d.contains(&format!("metadata: {{name: {n}}}")))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn applying_part_of_the_examples_changes_nothing_of_the_rest() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", examples]));
    let before = snapshot(&nb);
    let dir = tempfile::tempdir().unwrap();
    let part = write(
        dir.path(),
        "part.yaml",
        &examples_subset(&["external", "vpc-a", "a-net1"]),
    );
    let plan = ovn_vpc(&["plan", "--db", &nb, "-f", &part]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "a partial plan changes something:\n{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", &part]));
    assert_eq!(snapshot(&nb), before, "a partial apply changed rows");
    assert!(nbctl(&nb, &["lsp-list", "a-net1"]).contains("web.team-a"));
    assert!(nbctl(&nb, &["lsp-list", "external"]).contains("external-vpc-b"));

    // A new Eip in a partial manifest gets an address nobody absent holds.
    let held = |nb: &str| -> BTreeMap<String, String> {
        let ids = nbctl(nb, &["get", "Logical_Switch", "external", "external_ids"]);
        ids.trim_matches(['{', '}', '\n'])
            .split(", ")
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| k.contains("ovn-vpc/ip:"))
            .map(|(k, v)| {
                (
                    k.trim_matches('"').to_string(),
                    v.trim_matches('"').to_string(),
                )
            })
            .collect()
    };
    let old = held(&nb);
    assert!(old.len() >= 5, "{old:?}");
    let extra = write(
        dir.path(),
        "extra.yaml",
        &format!(
            "{}\n---\napiVersion: ovnvpc.io/v1\nkind: Eip\nmetadata: {{name: extra}}\nspec: {{vpc: vpc-a, externalSubnet: external}}\n",
            examples_subset(&["external", "vpc-a"])
        ),
    );
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", &extra]));
    let now = held(&nb);
    for (k, v) in &old {
        assert_eq!(now.get(k), Some(v), "{k} lost or moved: {now:?}");
    }
    let mine = now
        .iter()
        .find(|(k, _)| k.ends_with("Eip/extra"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no address for Eip/extra: {now:?}"));
    assert!(
        !old.values().any(|v| *v == mine),
        "Eip/extra got {mine}, held by an absent object: {old:?}"
    );
}

#[test]
fn foreign_rows_inside_our_switches_and_routers_survive_apply_prune_and_are_protected() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", examples]));
    // Another tool's rows: inside our switch and router, and beside them.
    nbctl(&nb, &["lsp-add", "a-net1", "foreign-port"]);
    nbctl(
        &nb,
        &[
            "lr-nat-add",
            "vpc-a",
            "dnat_and_snat",
            "172.16.0.200",
            "10.0.1.77",
        ],
    );
    nbctl(
        &nb,
        &["lr-route-add", "vpc-a", "192.168.77.0/24", "10.0.1.254"],
    );
    nbctl(
        &nb,
        &[
            "lr-policy-add",
            "vpc-a",
            "1234",
            "ip4.src == 10.0.1.78",
            "drop",
        ],
    );
    nbctl(&nb, &["ls-add", "theirs", "--", "lsp-add", "theirs", "t1"]);
    nbctl(
        &nb,
        &["set", "Logical_Switch", "a-net1", "external_ids:team=blue"],
    );
    let foreign = |nb: &str| -> BTreeMap<String, String> {
        snapshot(nb)
            .into_iter()
            .filter(|(_, row)| !row.contains("ovn-vpc/owner"))
            .collect()
    };
    let theirs = foreign(&nb);
    assert!(theirs.len() >= 6, "{theirs:#?}");

    for args in [vec![], vec!["--prune"]] {
        let mut a = vec!["apply", "--db", &nb, "-f", examples];
        a.extend(args.iter().copied());
        ok(&ovn_vpc(&a));
        assert_eq!(foreign(&nb), theirs, "apply {args:?} changed foreign rows");
        assert!(nbctl(&nb, &["lsp-list", "a-net1"]).contains("foreign-port"));
        assert!(nbctl(&nb, &["lr-nat-list", "vpc-a"]).contains("172.16.0.200"));
        assert!(nbctl(&nb, &["lr-route-list", "vpc-a"]).contains("192.168.77.0/24"));
        assert!(nbctl(&nb, &["lr-policy-list", "vpc-a"]).contains("10.0.1.78"));
        assert!(nbctl(
            &nb,
            &["get", "Logical_Switch", "a-net1", "external_ids:team"]
        )
        .contains("blue"));
        let plan = ovn_vpc(&["plan", "--db", &nb, "-f", examples]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&plan.stdout)
        );
    }

    // Pruning a-net1 would make the server delete foreign-port with it: refused, named,
    // nothing written.
    let dir = tempfile::tempdir().unwrap();
    let without = write(
        dir.path(),
        "without-a-net1.yaml",
        &examples_subset(&["external", "vpc-a", "vpc-b", "b-net1", "tools"]),
    );
    let before = snapshot(&nb);
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &without, "--prune"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("foreign-port") && err.contains("not ovn-vpc's"),
        "{err}"
    );
    assert_eq!(snapshot(&nb), before, "a refused apply wrote something");

    // uninstall: --dry-run lists the foreign rows that would go; without --force it refuses.
    let dry = ok(&ovn_vpc(&["uninstall", "--db", &nb, "--dry-run"]));
    assert!(dry.contains("foreign-port"), "{dry}");
    assert!(dry.contains("refuses"), "{dry}");
    let out = ovn_vpc(&["uninstall", "--db", &nb]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("foreign-port") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        snapshot(&nb),
        before,
        "a refused uninstall removed something"
    );
    // --force removes ours, says what went with them, and leaves the top-level foreign rows.
    let forced = ok(&ovn_vpc(&["uninstall", "--db", &nb, "--force"]));
    assert!(forced.contains("foreign-port"), "{forced}");
    let left = snapshot(&nb);
    assert!(
        left.values().all(|r| !r.contains("ovn-vpc/owner")),
        "{left:#?}"
    );
    assert!(nbctl(&nb, &["lsp-list", "theirs"]).contains("t1"));
}

#[test]
fn prune_with_manifests_that_hold_nothing_is_refused_without_force() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.yaml",
        &format!("{SUBNET_SHARED}{}", pod("sh", "pa")),
    );
    let empty = write(
        dir.path(),
        "empty.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    ok(&ovn_vpc(&["apply", "--db", &nb, "-f", &a]));
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &empty, "--prune"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(nbctl(&nb, &["lsp-list", "shared"]).contains("pa.sh"));
    ok(&ovn_vpc(&[
        "apply", "--db", &nb, "-f", &empty, "--prune", "--force",
    ]));
    assert!(!nbctl(&nb, &["ls-list"]).contains("shared"));
}

#[test]
fn two_applies_at_once_both_succeed_and_land_once() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let mut world = String::from(SUBNET_SHARED).replace("10.60.0.0/24", "10.60.0.0/23");
    for i in 0..200 {
        world.push_str(&pod("sh", &format!("p{i}")));
    }
    let f = write(dir.path(), "w.yaml", &world);
    let mut raced = 0;
    for round in 0..6 {
        let spawn = || {
            Command::new(ovn_vpc_bin())
                .args(["apply", "--db", &nb, "-f", &f])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            let text = ok(&out);
            if text.contains("another writer changed the Northbound") {
                raced += 1;
            }
        }
        // Exactly one switch and one port per pod, each address once.
        let ports = nbctl(
            &nb,
            &["--bare", "--columns=name", "list", "Logical_Switch_Port"],
        );
        let names: Vec<&str> = ports.split_whitespace().collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len(), "round {round}: duplicate ports");
        assert_eq!(names.len(), 201, "round {round}: {names:?}");
        assert_eq!(
            nbctl(
                &nb,
                &[
                    "--bare",
                    "--columns=_uuid",
                    "find",
                    "Logical_Switch",
                    "name=shared"
                ]
            )
            .split_whitespace()
            .count(),
            1
        );
        let plan = ovn_vpc(&["plan", "--db", &nb, "-f", &f]);
        assert_eq!(plan.status.code(), Some(0));
        ok(&ovn_vpc(&["uninstall", "--db", &nb]));
    }
    eprintln!("{raced} of 12 applies lost a race and planned again");
}
