//! Property test of the controller core through `apply --prune` on a real ovsdb-server: random
//! sequences of pod creations, deletions and restarts (a fresh process state, manifests in a
//! shuffled order) never leak a logical port or an address, never hand one address to two
//! pods, never move a running pod's address, and a re-apply always writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ovn_vpc::sandbox::Sandbox;
use proptest::prelude::*;

/// Two VPCs reusing one small CIDR (/28: 13 hosts, 3 excluded), so exhaustion happens.
const SUBNETS: &str = "\
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec: {}
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-b}
spec: {}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a}
spec: {vpc: vpc-a, cidrs: [10.0.1.0/28], namespaces: [ns-a], excludeIps: ['10.0.1.5..10.0.1.6', 10.0.1.9]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: b}
spec: {vpc: vpc-b, cidrs: [10.0.1.0/28], namespaces: [ns-b]}
";

#[derive(Debug, Clone)]
enum Step {
    /// Create pods `0..n` of a namespace that do not exist yet (`a` or `b`), some static.
    Create {
        ns: bool,
        ids: Vec<u8>,
        static_ip: Option<u8>,
    },
    /// Delete these pods (if present).
    Delete { ns: bool, ids: Vec<u8> },
    /// Re-apply everything in another document order, as a restarted controller would.
    Restart { seed: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<bool>(), prop::collection::vec(0u8..20, 1..6), prop::option::of(1u8..15))
            .prop_map(|(ns, ids, static_ip)| Step::Create { ns, ids, static_ip }),
        2 => (any::<bool>(), prop::collection::vec(0u8..20, 1..6))
            .prop_map(|(ns, ids)| Step::Delete { ns, ids }),
        1 => any::<u64>().prop_map(|seed| Step::Restart { seed }),
    ]
}

fn ns_name(b: bool) -> &'static str {
    if b {
        "ns-b"
    } else {
        "ns-a"
    }
}

fn pod_doc(ns: &str, id: u8, static_ip: Option<u8>) -> String {
    let ann = static_ip
        .map(|h| format!("\n  annotations: {{ovnvpc.io/ip_address: 10.0.1.{h}}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{id}\n  namespace: {ns}{ann}\nspec: {{containers: []}}\n"
    )
}

/// The pods' ports in the NB: name → (switch, MAC, IP).
fn ports(nb: &str) -> BTreeMap<String, (String, String, Ipv4Addr)> {
    let out = std::process::Command::new("ovn-nbctl")
        .args([
            &format!("--db={nb}"),
            "--format=csv",
            "--data=bare",
            "--no-headings",
            "--columns=name,addresses,external_ids",
            "list",
            "Logical_Switch_Port",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.splitn(3, ',').collect();
        if !f[2].contains("ovn-vpc/owner=Pod/") {
            continue;
        }
        let subnet = f[2]
            .split(' ')
            .find_map(|kv| kv.strip_prefix("ovn-vpc/subnet="))
            .unwrap()
            .to_string();
        let mut a = f[1].split(' ');
        let mac = a.next().unwrap().to_string();
        let ip: Ipv4Addr = a.next().unwrap().parse().unwrap();
        m.insert(f[0].to_string(), (subnet, mac, ip));
    }
    m
}

fn check(
    nb: &str,
    alive: &BTreeMap<(bool, u8), Option<u8>>,
    before: &BTreeMap<String, (String, String, Ipv4Addr)>,
) -> BTreeMap<String, (String, String, Ipv4Addr)> {
    let now = ports(nb);
    let wanted: BTreeSet<String> = alive
        .keys()
        .map(|(b, id)| format!("p{id}.{}", ns_name(*b)))
        .collect();
    // No leak: every port belongs to a live pod.
    for name in now.keys() {
        assert!(wanted.contains(name), "port {name} outlived its pod");
    }
    // No duplicate, nothing reserved handed out, per subnet.
    let mut used: BTreeSet<(String, Ipv4Addr)> = BTreeSet::new();
    let mut macs: BTreeSet<String> = BTreeSet::new();
    for (name, (subnet, mac, ip)) in &now {
        assert!(
            used.insert((subnet.clone(), *ip)),
            "{ip} given twice in {subnet}"
        );
        assert!(macs.insert(mac.clone()), "MAC {mac} given twice");
        let host = ip.octets()[3];
        assert!(
            ip.octets()[..3] == [10, 0, 1] && (2..15).contains(&host),
            "{name}: {ip}"
        );
        if subnet == "a" {
            assert!(
                ![5, 6, 9].contains(&host),
                "{name}: excluded {ip} handed out"
            );
        }
        // Stable: a pod that had an address keeps it.
        if let Some(old) = before.get(name) {
            assert_eq!(old, &now[name], "{name} changed address");
        }
    }
    // A pod waits only when its subnet is full or its static request cannot be met (taken by
    // another pod: a reserved one is refused before anything is applied).
    for b in [false, true] {
        let (subnet, capacity) = if b { ("b", 13) } else { ("a", 10) };
        let placed = now.values().filter(|(s, ..)| s == subnet).count();
        for ((x, id), st) in alive {
            let name = format!("p{id}.{}", ns_name(*x));
            if *x == b && !now.contains_key(&name) {
                assert!(
                    st.is_some() || placed == capacity,
                    "{name} waits with {placed} of {capacity} addresses of {subnet} in use"
                );
            }
        }
    }
    now
}

/// A live pod asking for an address its subnet never gives out: the gateway (.1), or for
/// subnet `a` an excluded one (.5, .6, .9).
fn asks_for_a_reserved_address(alive: &BTreeMap<(bool, u8), Option<u8>>) -> bool {
    alive.iter().any(|((b, _), st)| match st {
        Some(1) => true,
        Some(h) => !*b && [5, 6, 9].contains(h),
        None => false,
    })
}

/// Two live pods of one namespace (so one subnet) asking for the same static address.
fn two_pods_want_one_address(alive: &BTreeMap<(bool, u8), Option<u8>>) -> bool {
    let mut seen = BTreeSet::new();
    alive
        .iter()
        .filter_map(|((ns, _), st)| st.map(|h| (*ns, h)))
        .any(|k| !seen.insert(k))
}

fn write_world(
    dir: &std::path::Path,
    alive: &BTreeMap<(bool, u8), Option<u8>>,
    seed: u64,
) -> PathBuf {
    let mut docs: Vec<String> = SUBNETS.split("---\n").map(str::to_string).collect();
    docs.push("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-a}\n".into());
    docs.push("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-b}\n".into());
    for ((b, id), s) in alive {
        docs.push(pod_doc(ns_name(*b), *id, *s));
    }
    // A deterministic shuffle: document order must not matter.
    let mut x = seed | 1;
    for i in (1..docs.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        docs.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let p = dir.join("world.yaml");
    std::fs::write(&p, docs.join("---\n")).unwrap();
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn pods_created_deleted_and_restarted_never_leak_or_share_an_address(
        steps in prop::collection::vec(step(), 1..10)
    ) {
        let sandbox = Sandbox::builder().start().unwrap();
        let nb = sandbox.nb_remote();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut alive: BTreeMap<(bool, u8), Option<u8>> = BTreeMap::new();
        let mut before = BTreeMap::new();
        let mut seed = 0;
        for s in &steps {
            let previous = alive.clone();
            match s {
                Step::Create { ns, ids, static_ip } => {
                    for (i, id) in ids.iter().enumerate() {
                        // One static request per step, on its first new pod.
                        let st = if i == 0 { *static_ip } else { None };
                        alive.entry((*ns, *id)).or_insert(st);
                    }
                }
                Step::Delete { ns, ids } => {
                    for id in ids {
                        alive.remove(&(*ns, *id));
                    }
                }
                Step::Restart { seed: s } => seed = *s,
            }
            let world = write_world(dir.path(), &alive, seed);
            let applied = rt.block_on(ovn_vpc::standalone::apply(&nb, None, std::slice::from_ref(&world), ovn_vpc::standalone::ApplyOptions::prune()));
            if two_pods_want_one_address(&alive) || asks_for_a_reserved_address(&alive) {
                // Invalid input: refused as a whole, the NB untouched; the step is undone.
                let e = applied.expect_err("two pods asking one address, or a reserved one, were accepted");
                let e = e.to_string();
                prop_assert!(
                    e.contains("is also requested by Pod")
                        || e.contains("is the gateway of Subnet")
                        || e.contains("is excluded (spec.excludeIps)"),
                    "{}", e
                );
                prop_assert_eq!(&ports(&nb), &before);
                alive = previous;
                continue;
            }
            applied.unwrap();
            before = check(&nb, &alive, &before);
            let again = rt.block_on(ovn_vpc::standalone::plan(&nb, None, &[world], ovn_vpc::standalone::ApplyOptions::prune())).unwrap();
            prop_assert!(again.operations.is_empty(), "a re-apply would write: {:?}", again.operations);
        }
    }
}
