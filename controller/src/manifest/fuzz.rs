//! In-process fuzzing of the input path: manifest text → [`parse_into`] → [`validate`] /
//! [`validate_pods`] → [`translate`]. Cases are random worlds of our kinds with plausible and
//! hostile field values (NUL, newlines, quotes, `/`, 300 characters, wrong types, odd CIDRs and
//! MACs), and the shipped examples mutated structurally (a leaf replaced, a key dropped, a
//! document doubled) and textually (YAML punctuation and byte order marks sprinkled in).
//!
//! Properties: nothing panics; every failure names its document (and its object when one was
//! read), every validation error an object of the input and a field; a world that validates
//! translates into rows the Northbound schema accepts (types, ranges, unique indexes, no control
//! characters), and every pod either gets an address or says why not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{parse_into, ManifestError, Manifests};
use crate::api::{validate, validate_pods};
use crate::translate::{pod_key, translate};

const NAMES: &[&str] = &[
    "vpc-a", "vpc-b", "default", "a-net1", "b-net1", "ext", "e1", "e2", "f1", "web", "team-a",
    "team-b", "db", "a", "a-b", "b", "c", "b-c",
];

/// Strings that break things: what the issue found and what parsers trip on.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\0".to_string()),
        Just("a\0b".to_string()),
        Just("a\nb".to_string()),
        Just("\"".to_string()),
        Just("a/b".to_string()),
        Just("b/c".to_string()),
        Just("x".repeat(300)),
        Just("Web".to_string()),
        Just("-a".to_string()),
        Just("a.".to_string()),
        Just("a.b".to_string()),
        Just("é".to_string()),
        Just("\u{feff}".to_string()),
        Just("ip4.src == \"x".to_string()),
        Just("(ip4".to_string()),
        Just("zz:zz".to_string()),
        Just("01:00:5e:00:00:01".to_string()),
        Just("00:00:00:00:00:00".to_string()),
        Just("0a:00:00:00:00:01 ".to_string()),
        Just("10.0.1.5,10.0.1.6".to_string()),
        Just("10.0.1.5,".to_string()),
        Just(" 10.0.1.5".to_string()),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(20).collect()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(NAMES).prop_map(str::to_string),
        1 => hostile(),
    ]
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(&[
            "10.0.1.0/24", "10.0.2.0/24", "172.16.0.0/24", "fd00:a::/64", "10.0.1.0/30",
            "10.0.1.128/25", "10.0.0.0/8",
        ][..]).prop_map(str::to_string),
        2 => proptest::sample::select(&[
            "0.0.0.0/0", "10.0.0.0/31", "10.0.0.1/32", "255.255.255.255/32", "::/0",
            "fd00::/127", "fd00::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
            "10.0.1.1/24", "10.0.1.0/33", "x",
        ][..]).prop_map(str::to_string),
        1 => hostile(),
    ]
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(&[
            "10.0.1.1", "10.0.1.5", "10.0.1.0", "10.0.1.255", "172.16.0.1", "172.16.0.10",
            "172.16.0.0", "172.16.0.255", "172.16.0.3", "fd00:a::5", "fd00:a::", "10.0.2.7",
            "10.0.1.2..10.0.1.9", "10.0.1.9..10.0.1.2", "172.16.0.2..172.16.0.254",
            "fd00:a::1..fd00:a::ff", "10.0.1.5,fd00:a::5", "0.0.0.0", "255.255.255.255",
        ][..]).prop_map(str::to_string),
        1 => hostile(),
    ]
}

fn mac() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(&[
            "0a:00:00:00:00:01", "0A:00:00:00:00:02", "0a:00:00:00:00:01",
        ][..]).prop_map(str::to_string),
        1 => hostile(),
    ]
}

/// A value of the wrong shape, now and then, instead of `v`.
fn shaped(v: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => v.prop_map(Value::String),
        1 => Just(json!(3)),
        1 => Just(json!(-1)),
        1 => Just(json!(null)),
        1 => Just(json!([1, "a"])),
        1 => Just(json!({"a": 1})),
        1 => Just(json!(true)),
    ]
}

fn list<S: Strategy<Value = String> + 'static>(v: fn() -> S) -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => proptest::collection::vec(v(), 0..3).prop_map(|v| json!(v)),
        1 => shaped(v()),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (1u16..=65535).prop_map(|p| json!(p)),
        1 => Just(json!(0)),
        1 => Just(json!(70000)),
        1 => Just(json!("80")),
    ]
}

fn object(kind: &'static str, spec: Value, meta: Value) -> Value {
    json!({"apiVersion": "ovnvpc.io/v1", "kind": kind, "metadata": meta, "spec": spec})
}

fn meta() -> impl Strategy<Value = Value> {
    shaped(name()).prop_map(|n| json!({ "name": n }))
}

/// One random document of one of the kinds the manifests carry.
fn document() -> impl Strategy<Value = Value> {
    let vpc = (
        meta(),
        list(name),
        proptest::collection::vec((cidr(), address(), any::<bool>()), 0..3),
        proptest::collection::vec(
            (-2i64..40000, hostile(), 0u8..4, proptest::option::of(address())),
            0..3,
        ),
        proptest::option::of(name()),
    )
        .prop_map(|(m, ns, routes, policies, ext)| {
            let routes: Vec<Value> = routes
                .into_iter()
                .map(|(c, h, src)| json!({"cidr": c, "nextHop": h, "policy": if src {"src"} else {"dst"}}))
                .collect();
            let policies: Vec<Value> = policies
                .into_iter()
                .map(|(p, m, a, h)| {
                    let m = if m.len() % 2 == 0 { "ip4.src == 10.0.1.66".to_string() } else { m };
                    let action = ["allow", "drop", "reroute", "jump"][a as usize];
                    json!({"priority": p, "match": m, "action": action, "nextHop": h})
                })
                .collect();
            let mut spec = json!({"namespaces": ns, "staticRoutes": routes, "policyRoutes": policies});
            if let Some(x) = ext {
                spec["externalSubnet"] = json!(x);
            }
            object("Vpc", spec, m)
        });
    let subnet = (
        meta(),
        shaped(name()),
        list(cidr),
        proptest::option::of(address()),
        list(address),
        list(name),
        any::<(bool, bool, bool)>(),
        proptest::option::of((hostile(), proptest::option::of(0u32..5000))),
    )
        .prop_map(|(m, vpc, cidrs, gw, excl, ns, (nat, default, gu), external)| {
            let mut spec = json!({"vpc": vpc, "cidrs": cidrs, "excludeIps": excl, "namespaces": ns,
                "natOutgoing": nat, "default": default, "globallyUnique": gu});
            if let Some(g) = gw {
                spec["gateway"] = json!(g);
            }
            if let Some((pn, vlan)) = external {
                let pn = if pn.len() % 3 == 0 { pn } else { "physnet".to_string() };
                spec["external"] = json!({"physicalNetwork": pn, "vlan": vlan});
            }
            object("Subnet", spec, m)
        });
    let eip = (
        meta(),
        shaped(name()),
        shaped(name()),
        proptest::option::of(address()),
    )
        .prop_map(|(m, vpc, x, a)| {
            object(
                "Eip",
                json!({"vpc": vpc, "externalSubnet": x, "address": a}),
                m,
            )
        });
    let fip = (
        meta(),
        shaped(name()),
        proptest::option::of(prop_oneof![Just("team-a/web".to_string()), name()]),
        proptest::option::of(address()),
    )
        .prop_map(|(m, eip, pod, ip)| object("Fip", json!({"eip": eip, "pod": pod, "ip": ip}), m));
    let snat = (
        meta(),
        shaped(name()),
        proptest::option::of(name()),
        proptest::option::of(cidr()),
    )
        .prop_map(|(m, eip, s, c)| {
            object("SnatRule", json!({"eip": eip, "subnet": s, "cidr": c}), m)
        });
    let dnat = (
        meta(),
        shaped(name()),
        any::<bool>(),
        port(),
        shaped(address()),
        port(),
    )
        .prop_map(|(m, eip, tcp, ep, ip, ip_port)| {
            object(
                "DnatRule",
                json!({"eip": eip, "protocol": if tcp {"tcp"} else {"udp"}, "externalPort": ep,
                    "internalIp": ip, "internalPort": ip_port}),
                m,
            )
        });
    let pod = (
        shaped(name()),
        proptest::option::of(shaped(name())),
        proptest::option::of(name()),
        proptest::option::of(address()),
        proptest::option::of(mac()),
        proptest::option::of(0u32..5),
    )
        .prop_map(|(n, ns, subnet, ip, mac, created)| {
            let mut ann = serde_json::Map::new();
            if let Some(s) = subnet {
                ann.insert("ovnvpc.io/subnet".into(), json!(s));
            }
            if let Some(ip) = ip {
                ann.insert("ovnvpc.io/ip_address".into(), json!(ip));
            }
            if let Some(m) = mac {
                ann.insert("ovnvpc.io/mac_address".into(), json!(m));
            }
            let mut meta = json!({"name": n, "annotations": ann});
            if let Some(ns) = ns {
                meta["namespace"] = ns;
            }
            if let Some(t) = created {
                meta["creationTimestamp"] = json!(format!("2024-01-0{}T00:00:00Z", t + 1));
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []}})
        });
    let other = (
        proptest::sample::select(&["Namespace", "Node", "IP", "Deployment", "Vcp"][..]),
        shaped(name()),
        address(),
        mac(),
        hostile(),
    )
        .prop_map(|(kind, n, ip, mac, h)| match kind {
            "IP" => object(
                "IP",
                json!({"subnet": "a-net1", "vpc": "vpc-a", "owner": format!("Pod/team-a/{h}"),
                    "ips": [ip], "mac": mac}),
                json!({"name": n}),
            ),
            "Deployment" => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": n}}),
            "Vcp" => object("Vcp", json!({}), json!({"name": n})),
            _ => json!({"apiVersion": "v1", "kind": kind,
                "metadata": {"name": n, "annotations": {"ovnvpc.io/chassis": h}}}),
        });
    prop_oneof![
        3 => vpc, 4 => subnet, 2 => eip, 2 => fip, 1 => snat, 1 => dnat, 4 => pod, 1 => other,
    ]
}

/// Documents as text: JSON (which is YAML) or YAML block style.
fn render(docs: &[Value], yaml: bool) -> String {
    docs.iter()
        .map(|d| {
            if yaml {
                serde_yaml::to_string(d).unwrap_or_default()
            } else {
                format!("{d}\n")
            }
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The names the input holds, per kind (`Pod` names as `namespace/name`).
fn names_in(m: &Manifests) -> BTreeSet<(String, String)> {
    let mut out: BTreeSet<(String, String)> = m
        .objects
        .iter()
        .map(|o| (o.kind().to_string(), o.name()))
        .collect();
    for p in &m.pods {
        out.insert((
            "Pod".into(),
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.as_deref().unwrap_or("")
            ),
        ));
    }
    out
}

fn schema() -> &'static ovsdb::DatabaseSchema {
    static SCHEMA: std::sync::OnceLock<ovsdb::DatabaseSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| ovsdb::DatabaseSchema::from_json_str(ovn_nb::nb::SCHEMA).unwrap())
}

/// How far a case went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// The manifests did not parse.
    Parse,
    /// Validation refused them.
    Validation,
    /// They were translated.
    Translation,
}

/// The whole path on one text; panics (a failed case) when a property does not hold.
fn check(text: &str) -> Reached {
    let mut m = Manifests::default();
    if let Err(e) = parse_into(Path::new("f.yaml"), text, &mut m) {
        let shown = e.to_string();
        match &e {
            ManifestError::Invalid {
                document,
                object,
                message,
                ..
            } => {
                assert!(*document >= 1, "{shown}");
                assert!(!message.is_empty(), "{shown}");
                assert!(
                    !shown.contains('\0'),
                    "a NUL reached the message: {shown:?}"
                );
                if object.is_some() {
                    // Serde's path (`spec.cidrs: …`), a field in backticks, or one of ours.
                    assert!(
                        message.contains("spec")
                            || message.contains("metadata")
                            || message.contains('`')
                            || message.starts_with("unknown kind")
                            || message.contains("apiVersion"),
                        "no field named: {shown}"
                    );
                }
            }
            other => panic!("unexpected error for in-memory text: {other}"),
        }
        return Reached::Parse;
    }
    let mut errors = validate(&m.objects);
    errors.extend(validate_pods(&m.objects, &m.pods));
    let known = names_in(&m);
    for e in &errors {
        assert!(
            e.field.starts_with("spec") || e.field.starts_with("metadata"),
            "field not named: {e}"
        );
        assert!(!e.message.is_empty(), "{e}");
        assert!(
            known.contains(&(e.kind.to_string(), e.name.clone())),
            "{e} names no object of the input"
        );
        let line = e.to_string();
        assert!(!line.contains('\n') && !line.contains('\0'), "{line:?}");
    }
    if !errors.is_empty() {
        return Reached::Validation;
    }
    let t = translate(
        &m.objects,
        &m.pods,
        &BTreeMap::new(),
        &["ch0".into()],
        crate::translate::Absent::Release,
    );
    // Rows the server takes: every value of its column's type, unique indexes unique, and no
    // control character anywhere (a NUL resets the connection).
    let schema = schema();
    let mut indexed: BTreeMap<(String, Vec<String>), String> = BTreeMap::new();
    for d in &t.desired {
        let ts = &schema.tables[&d.table];
        for (col, datum) in &d.row {
            ts.check_value(col, datum)
                .unwrap_or_else(|v| panic!("{} {}: {v}", d.table, d.key));
            let text = datum.to_string();
            // A tab is whitespace to OVN's match lexer; nothing else of the kind is taken.
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\t'),
                "{}.{col} of {}: {text:?}",
                d.table,
                d.key
            );
        }
        for index in &ts.indexes {
            let values: Option<Vec<String>> = index
                .iter()
                .map(|c| d.row.get(c).map(|v| v.to_string()))
                .collect();
            if let Some(values) = values {
                let mut k = vec![];
                k.extend(values);
                if let Some(other) = indexed.insert((d.table.clone(), k.clone()), d.key.clone()) {
                    panic!(
                        "{} rows {other} and {} share index {index:?} = {k:?}",
                        d.table, d.key
                    );
                }
            }
        }
    }
    let keys: BTreeSet<(&str, &str)> = t
        .desired
        .iter()
        .map(|d| (d.table.as_str(), d.key.as_str()))
        .collect();
    assert_eq!(keys.len(), t.desired.len(), "two desired rows share a key");
    for p in &m.pods {
        let k = pod_key(p);
        assert!(
            t.allocations.contains_key(&k) || t.statuses.iter().any(|s| s.object == k && !s.ready),
            "{k} got neither an address nor a reason"
        );
    }
    Reached::Translation
}

fn examples() -> Vec<Value> {
    let text = include_str!("../../../examples/vpcs.yaml");
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .collect()
}
use serde::Deserialize;

/// Every path to a node of `v` (keys and indexes).
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(json!(k));
                paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(json!(i));
                paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(i) => cur.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the node at (document, path index) with a value.
    Replace(usize, usize, Value),
    /// Remove the node at (document, path index) from its parent.
    Remove(usize, usize),
    /// Append a copy of a document.
    Double(usize),
    /// Insert text at a byte offset (as a fraction of the length) of the rendered manifests.
    Text(u16, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![
        4 => shaped(prop_oneof![name(), cidr(), address(), mac(), hostile()]),
        1 => Just(json!({"deep": [[[[[[1]]]]]]})),
    ];
    prop_oneof![
        6 => (any::<usize>(), any::<usize>(), value).prop_map(|(d, p, v)| Mutation::Replace(d, p, v)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(d, p)| Mutation::Remove(d, p)),
        1 => any::<usize>().prop_map(Mutation::Double),
        2 => (any::<u16>(), proptest::sample::select(&[
            "[", "]", "{", "}", ":", ": ", ",", "- ", "#", "'", "\"", "\n", "\n---\n", " ", "\t",
            "|", ">", "&a ", "*a", "!x ", "\u{feff}", "\0", "...\n", "%YAML 1.2\n",
        ][..]).prop_map(str::to_string)).prop_map(|(at, s)| Mutation::Text(at, s)),
    ]
}

fn mutate(mut docs: Vec<Value>, mutations: &[Mutation], yaml: bool) -> String {
    let mut inserts = Vec::new();
    for m in mutations {
        if docs.is_empty() {
            break;
        }
        match m {
            Mutation::Replace(d, p, v) => {
                let d = d % docs.len();
                let mut all = Vec::new();
                paths(&docs[d], &mut Vec::new(), &mut all);
                let path = &all[p % all.len()];
                if let Some(node) = at_mut(&mut docs[d], path) {
                    *node = v.clone();
                }
            }
            Mutation::Remove(d, p) => {
                let d = d % docs.len();
                let mut all = Vec::new();
                paths(&docs[d], &mut Vec::new(), &mut all);
                let path = &all[p % all.len()];
                if let Some((last, parent)) = path.split_last() {
                    match (at_mut(&mut docs[d], parent), last) {
                        (Some(Value::Object(o)), Value::String(k)) => {
                            o.remove(k);
                        }
                        (Some(Value::Array(a)), Value::Number(i)) => {
                            let i = i.as_u64().unwrap_or(0) as usize;
                            if i < a.len() {
                                a.remove(i);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Mutation::Double(d) => {
                let copy = docs[d % docs.len()].clone();
                docs.push(copy);
            }
            Mutation::Text(at, s) => inserts.push((*at, s.clone())),
        }
    }
    let mut text = render(&docs, yaml);
    for (at, s) in inserts {
        let mut i = (at as usize * text.len()) / (u16::MAX as usize + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        text.insert_str(i, &s);
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_worlds_never_panic_and_every_failure_names_object_and_field(
        docs in proptest::collection::vec(document(), 1..10),
        yaml in any::<bool>(),
    ) {
        let text = render(&docs, yaml);
        // The depth pre-scan never refuses what is shallow, whatever the strings hold (quotes,
        // brackets, `#`, newlines rendered as block scalars): these documents nest 5 levels.
        prop_assert!(
            super::scan::check_depth(&text, 12).is_ok(),
            "{:?}", super::scan::check_depth(&text, 12)
        );
        let _ = check(&text);
    }

    #[test]
    fn mutated_examples_never_panic_and_every_failure_names_object_and_field(
        mutations in proptest::collection::vec(mutation(), 1..4),
        yaml in any::<bool>(),
    ) {
        let _ = check(&mutate(examples(), &mutations, yaml));
    }
}

#[test]
fn the_examples_themselves_pass_the_whole_path() {
    for text in [
        render(&examples(), true),
        render(&examples(), false),
        include_str!("../../../examples/vpcs.yaml").to_string(),
    ] {
        assert_eq!(check(&text), Reached::Translation);
    }
}

/// A world whose references hold together (VPCs, an external subnet, subnets with disjoint
/// CIDRs per VPC, Eips, NAT, pods with requests inside their subnets), so that most cases get
/// through validation into translation; then a few leaves are mutated.
fn coherent_world() -> impl Strategy<Value = Vec<Value>> {
    let subnet = (
        0usize..3,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
    );
    let pod = (
        0usize..4,
        0usize..6,
        proptest::option::of(2u8..250),
        proptest::option::of(any::<[u8; 5]>()),
        any::<bool>(),
        0u32..9,
    );
    (
        1usize..4,
        proptest::collection::vec(subnet, 1..5),
        proptest::collection::vec((0usize..3, proptest::option::of(10u8..250)), 0..4),
        proptest::collection::vec(pod, 0..10),
        proptest::collection::vec((0usize..4, 0usize..4, any::<bool>(), 1u16..3), 0..4),
    )
        .prop_map(|(vpcs, subnets, eips, pods, nat)| {
            let mut docs = vec![object(
                "Subnet",
                json!({"cidrs": ["172.16.0.0/24"], "excludeIps": ["172.16.0.2..172.16.0.9"],
                    "external": {"physicalNetwork": "physnet"}}),
                json!({"name": "ext"}),
            )];
            for v in 0..vpcs {
                docs.push(object("Vpc", json!({"externalSubnet": "ext",
                    "staticRoutes": [{"cidr": "192.168.0.0/16", "nextHop": format!("10.{v}.0.254")}],
                    "policyRoutes": [{"priority": 100, "match": format!("ip4.src == 10.{v}.0.66"), "action": "drop"}]}),
                    json!({"name": format!("vpc-{v}")})));
            }
            let mut names = Vec::new();
            for (i, (v, v6, gw, default, excl, gu)) in subnets.iter().enumerate() {
                let v = v % vpcs;
                let name = format!("s{i}");
                let mut cidrs = vec![format!("10.{v}.{i}.0/24")];
                if *v6 {
                    cidrs.push(format!("fd00:{v}:{i}::/64"));
                }
                let mut spec = json!({"vpc": format!("vpc-{v}"), "cidrs": cidrs,
                    "namespaces": [format!("ns{i}")], "natOutgoing": v6, "globallyUnique": gu});
                if *gw {
                    spec["gateway"] = json!(format!("10.{v}.{i}.254"));
                }
                if *default && i == 0 {
                    spec["vpc"] = json!("default");
                    spec["default"] = json!(true);
                }
                if *excl > 0 {
                    spec["excludeIps"] = json!([format!("10.{v}.{i}.2..10.{v}.{i}.{}", 2 + excl)]);
                }
                names.push((name.clone(), spec["vpc"].as_str().unwrap_or("").to_string(), v, i));
                docs.push(object("Subnet", spec, json!({"name": name})));
            }
            for (e, (v, addr)) in eips.iter().enumerate() {
                let mut spec = json!({"vpc": format!("vpc-{}", v % vpcs), "externalSubnet": "ext"});
                if let Some(a) = addr {
                    spec["address"] = json!(format!("172.16.0.{a}"));
                }
                docs.push(object("Eip", spec, json!({"name": format!("e{e}")})));
            }
            // Each NAT object on an Eip of its own, in its subnet's VPC.
            for (k, (_, s, fip, port)) in nat.iter().enumerate() {
                let (sname, vpc, v, i) = &names[s % names.len()];
                if vpc == "default" {
                    continue;
                }
                let eip = format!("n{k}");
                docs.push(object("Eip", json!({"vpc": vpc, "externalSubnet": "ext"}),
                    json!({"name": eip})));
                if *fip {
                    docs.push(object("Fip", json!({"eip": eip, "ip": format!("10.{v}.{i}.77")}),
                        json!({"name": format!("f{k}")})));
                } else {
                    docs.push(object("SnatRule", json!({"eip": eip, "subnet": sname}),
                        json!({"name": format!("snat{k}")})));
                    docs.push(object("DnatRule", json!({"eip": eip, "protocol": "tcp",
                        "externalPort": 8000 + port, "internalIp": format!("10.{v}.{i}.5"),
                        "internalPort": 80}), json!({"name": format!("dnat{k}")})));
                }
            }
            for (n, (s, p, ip, mac, annotate, day)) in pods.iter().enumerate() {
                let (sname, _, v, i) = &names[s % names.len()];
                let mut ann = serde_json::Map::new();
                if *annotate {
                    ann.insert("ovnvpc.io/subnet".into(), json!(sname));
                }
                if let Some(ip) = ip {
                    ann.insert("ovnvpc.io/ip_address".into(), json!(format!("10.{v}.{i}.{ip}")));
                }
                if let Some(m) = mac {
                    let m = [0x0a, m[0], m[1], m[2], m[3], m[4]];
                    let text: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
                    ann.insert("ovnvpc.io/mac_address".into(), json!(text.join(":")));
                }
                docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("p{p}-{n}"), "namespace": format!("ns{}", s % names.len()),
                        "annotations": ann, "creationTimestamp": format!("2024-01-0{}T00:00:00Z", day + 1)},
                    "spec": {"containers": []}}));
            }
            docs
        })
}

#[test]
fn coherent_worlds_mostly_translate_and_their_mutants_never_panic() {
    use proptest::test_runner::{Config, TestRunner};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let reached: [AtomicUsize; 3] = Default::default();
    let mut runner = TestRunner::new(Config::with_cases(1500));
    let case = (
        coherent_world(),
        proptest::collection::vec(mutation(), 0..3),
        any::<bool>(),
    );
    runner
        .run(&case, |(docs, mutations, yaml)| {
            let r = check(&mutate(docs, &mutations, yaml));
            reached[r as usize].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let [parse, validation, translation] = reached.map(|a| a.into_inner());
    eprintln!(
        "reached: {parse} parse errors, {validation} validation errors, {translation} translations"
    );
    // The generator must keep reaching translation, or the properties there test nothing.
    assert!(
        translation * 4 >= parse + validation + translation,
        "only {translation} of {} cases reached translation ({parse} parse, {validation} validation errors)",
        parse + validation + translation
    );
}
