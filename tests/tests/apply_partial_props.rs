//! Property test of what `apply` may touch, on a real ovsdb-server: random sequences of
//! `apply` and `apply --prune` of partial manifests (any subset of a small world), with
//! ovn-nbctl adding foreign rows — top level, and inside our switches and routers — between
//! steps. Checked after every step, against `ovsdb-client dump` as the witness:
//! - foreign rows never change (not one column of one row);
//! - without `--prune`, no row of an object absent from the manifests changes;
//! - with `--prune`, the rows of absent objects are gone, unless removing them would make the
//!   server collect a foreign row, in which case the apply is refused and nothing changes;
//! - no two pod ports of one subnet share an address, and a pod's address never moves;
//! - planning the same manifests again shows nothing.

use std::collections::{BTreeMap, BTreeSet};

use ovn_nb::diff::DiffError;
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc::standalone::{apply, plan, ApplyOptions};
use ovn_vpc_tests::{nbctl, ovsdb_client_dump, DumpRows};
use ovsdb::{Atom, Datum};
use proptest::prelude::*;

const TABLES: &[&str] = &[
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
];

/// The world's objects; a manifest is a subset. A Subnet brings its Vpc along (a Subnet of an
/// unknown VPC is invalid input, refused as a whole, which another test covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    Vpc,
    SubnetA,
    SubnetB,
    Pod(u8),
}

const PODS: u8 = 6;

impl Obj {
    fn all() -> Vec<Obj> {
        let mut v = vec![Obj::Vpc, Obj::SubnetA, Obj::SubnetB];
        v.extend((0..PODS).map(Obj::Pod));
        v
    }

    fn owner(self) -> String {
        match self {
            Obj::Vpc => "Vpc/vpc-x".into(),
            Obj::SubnetA => "Subnet/sa".into(),
            Obj::SubnetB => "Subnet/sb".into(),
            Obj::Pod(i) => format!("Pod/{}/p{i}", pod_ns(i)),
        }
    }

    fn doc(self) -> String {
        match self {
            Obj::Vpc => "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-x}\nspec: {staticRoutes: [{cidr: 192.168.0.0/16, nextHop: 10.70.0.254}]}\n".into(),
            Obj::SubnetA => "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: sa}\nspec: {vpc: vpc-x, cidrs: [10.70.0.0/28], namespaces: [na]}\n".into(),
            Obj::SubnetB => "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: sb}\nspec: {vpc: vpc-x, cidrs: [10.71.0.0/28], namespaces: [nb]}\n".into(),
            Obj::Pod(i) => format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {}}}\nspec: {{containers: []}}\n",
                pod_ns(i)
            ),
        }
    }
}

fn pod_ns(i: u8) -> &'static str {
    if i.is_multiple_of(2) {
        "na"
    } else {
        "nb"
    }
}

#[derive(Debug, Clone)]
enum Foreign {
    /// A port inside switch `sa` or `sb`.
    PortIn(bool),
    /// A NAT row, a static route and a policy inside router `vpc-x`.
    InRouter,
    /// A switch with a port, beside ours.
    TopLevel,
    /// A key of another tool in our switch's `external_ids`.
    IdIn(bool),
}

#[derive(Debug, Clone)]
enum Step {
    Apply { subset: Vec<bool>, prune: bool },
    Foreign(Foreign),
}

fn step() -> impl Strategy<Value = Step> {
    let n = Obj::all().len();
    prop_oneof![
        4 => (prop::collection::vec(prop::bool::weighted(0.6), n), prop::bool::weighted(0.35))
            .prop_map(|(subset, prune)| Step::Apply { subset, prune }),
        1 => prop_oneof![
            any::<bool>().prop_map(Foreign::PortIn),
            Just(Foreign::InRouter),
            Just(Foreign::TopLevel),
            any::<bool>().prop_map(Foreign::IdIn),
        ]
        .prop_map(Step::Foreign),
    ]
}

/// `(table, uuid)` → row, of the tables apply writes.
type Rows = BTreeMap<(String, String), BTreeMap<String, Datum>>;

fn rows(nb: &str) -> Rows {
    // ovsdb-client dumps one table or all of them.
    let dump: DumpRows = ovsdb_client_dump(nb, "OVN_Northbound", &[]);
    let mut out = Rows::new();
    for (t, rows) in dump
        .into_iter()
        .filter(|(t, _)| TABLES.contains(&t.as_str()))
    {
        for (u, r) in rows {
            out.insert((t.clone(), u), r);
        }
    }
    out
}

fn owner(row: &BTreeMap<String, Datum>) -> Option<String> {
    row.get("external_ids")
        .and_then(|d| d.get_str("ovn-vpc/owner"))
        .map(str::to_string)
}

/// A row without our tag; our rows' `external_ids` keys of others count as foreign too.
fn foreign(r: &Rows) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ((t, u), row) in r {
        if owner(row).is_none() {
            out.insert(format!("{t} {u}"), format!("{row:?}"));
        } else if let Some(ids) = row.get("external_ids") {
            for (k, v) in ids.as_map() {
                if !k.as_str().unwrap_or("").starts_with("ovn-vpc/") {
                    out.insert(format!("{t} {u} external_ids {k}"), v.to_string());
                }
            }
        }
    }
    out
}

fn owned_by(r: &Rows, owners: &BTreeSet<String>) -> Rows {
    r.iter()
        .filter(|(_, row)| owner(row).is_some_and(|o| owners.contains(&o)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Pod port name → (subnet, address).
fn pod_addresses(r: &Rows) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for ((t, _), row) in r {
        if t != "Logical_Switch_Port" || !owner(row).is_some_and(|o| o.starts_with("Pod/")) {
            continue;
        }
        let name = row["name"].as_atom().and_then(Atom::as_str).unwrap_or("");
        let subnet = row["external_ids"].get_str("ovn-vpc/subnet").unwrap_or("");
        let addr = row["addresses"]
            .as_set()
            .first()
            .and_then(Atom::as_str)
            .unwrap_or("");
        let ip = addr.split(' ').nth(1).unwrap_or("").to_string();
        out.insert(name.to_string(), (subnet.to_string(), ip));
    }
    out
}

fn add_foreign(nb: &str, f: &Foreign, n: usize) {
    let switch = |b: bool| if b { "sb" } else { "sa" };
    let has = |cmd: &str, name: &str| {
        nbctl(nb, &[cmd])
            .lines()
            .any(|l| l.contains(&format!("({name})")))
    };
    match f {
        Foreign::PortIn(b) if has("ls-list", switch(*b)) => {
            nbctl(nb, &["lsp-add", switch(*b), &format!("foreign-{n}")]);
        }
        Foreign::InRouter if has("lr-list", "vpc-x") => {
            nbctl(
                nb,
                &[
                    "lr-nat-add",
                    "vpc-x",
                    "dnat_and_snat",
                    &format!("172.31.0.{}", n % 250 + 1),
                    &format!("10.70.0.{}", n % 12 + 1),
                ],
            );
            nbctl(
                nb,
                &[
                    "lr-route-add",
                    "vpc-x",
                    &format!("192.169.{}.0/24", n % 250),
                    "10.70.0.254",
                ],
            );
            nbctl(
                nb,
                &[
                    "lr-policy-add",
                    "vpc-x",
                    &format!("{}", 100 + n),
                    &format!("ip4.src == 10.70.0.{}", n % 250),
                    "drop",
                ],
            );
        }
        Foreign::TopLevel => {
            nbctl(
                nb,
                &[
                    "ls-add",
                    &format!("theirs-{n}"),
                    "--",
                    "lsp-add",
                    &format!("theirs-{n}"),
                    &format!("t-{n}"),
                ],
            );
        }
        Foreign::IdIn(b) if has("ls-list", switch(*b)) => {
            nbctl(
                nb,
                &[
                    "set",
                    "Logical_Switch",
                    switch(*b),
                    &format!("external_ids:tool-{n}=x"),
                ],
            );
        }
        _ => {} // the parent is not there (yet)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn partial_applies_touch_only_what_they_own(steps in prop::collection::vec(step(), 1..9)) {
        let sandbox = Sandbox::builder().start().unwrap();
        let nb = sandbox.nb_remote();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A pod's address, once given, for as long as its port lives.
        let mut addresses: BTreeMap<String, String> = BTreeMap::new();
        for (n, s) in steps.iter().enumerate() {
            let before = rows(&nb);
            match s {
                Step::Foreign(f) => {
                    add_foreign(&nb, f, n);
                    continue;
                }
                Step::Apply { subset, prune } => {
                    let mut present: BTreeSet<Obj> = Obj::all()
                        .into_iter()
                        .zip(subset)
                        .filter(|(_, &on)| on)
                        .map(|(o, _)| o)
                        .collect();
                    if present.contains(&Obj::SubnetA) || present.contains(&Obj::SubnetB) {
                        present.insert(Obj::Vpc);
                    }
                    let docs: Vec<String> = present.iter().map(|o| o.doc()).collect();
                    let path = dir.path().join(format!("step-{n}.yaml"));
                    std::fs::write(&path, docs.join("---\n")).unwrap();
                    let files = [path];
                    let opts = ApplyOptions { prune: *prune, force: true };
                    let result = rt.block_on(apply(&nb, None, &files, opts));
                    let after = rows(&nb);
                    // Keys others set on a row of ours go with it when it is pruned; on rows
                    // of ours that stay, and on foreign rows, nothing changes.
                    let mut expected = foreign(&before);
                    expected.retain(|k, _| {
                        let mut it = k.splitn(3, ' ');
                        let (t, u, rest) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next());
                        rest.is_none() || after.contains_key(&(t.to_string(), u.to_string()))
                    });
                    prop_assert_eq!(foreign(&after), expected, "foreign rows changed at step {} {:?}", n, s);
                    let absent: BTreeSet<String> = Obj::all()
                        .into_iter()
                        .filter(|o| !present.contains(o))
                        .map(Obj::owner)
                        .collect();
                    match result {
                        Err(e) => {
                            // Only a prune that would take a foreign row with it is refused.
                            let refused = matches!(e.downcast_ref::<DiffError>(), Some(DiffError::WouldRemoveForeign { .. }));
                            prop_assert!(*prune && refused, "step {} {:?}: {:#}", n, s, e);
                            prop_assert_eq!(&after, &before, "a refused apply wrote something");
                            continue;
                        }
                        Ok(_) if *prune => {
                            let left = owned_by(&after, &absent);
                            prop_assert!(left.is_empty(), "--prune left rows of absent objects: {:?}", left.keys());
                        }
                        Ok(_) => {
                            prop_assert_eq!(
                                owned_by(&after, &absent),
                                owned_by(&before, &absent),
                                "apply without --prune changed rows of absent objects at step {}", n
                            );
                        }
                    }
                    // Addresses: unique per subnet, and never moved while the port lives.
                    let now = pod_addresses(&after);
                    let mut seen = BTreeSet::new();
                    for (port, (subnet, ip)) in &now {
                        prop_assert!(seen.insert((subnet.clone(), ip.clone())), "{} shares {} in {}", port, ip, subnet);
                        if let Some(old) = addresses.get(port) {
                            prop_assert_eq!(old, ip, "{} moved", port);
                        }
                    }
                    addresses.retain(|p, _| now.contains_key(p));
                    for (p, (_, ip)) in now {
                        addresses.entry(p).or_insert(ip);
                    }
                    let again = rt.block_on(plan(&nb, None, &files, opts)).unwrap();
                    prop_assert!(again.changes.is_empty(), "a re-plan shows changes: {:?}", again.changes);
                }
            }
        }
    }
}
