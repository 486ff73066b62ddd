//! The world as the caches show it, ready for translation (no I/O): objects being deleted are
//! left out, except a VPC that still has subnets; invalid objects are left out with their
//! errors; pods that must wait, or whose annotations ask for what cannot be given, are set aside
//! with why.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Resource, ResourceExt};

use super::Stores;
use crate::api::{validate, Object, PodCheck};
use crate::translate::{pod_key, Status, SUBNET_ANNOTATION};

/// The world as the caches show it, ready for translation.
pub(crate) struct World {
    pub(crate) objects: Vec<Object>,
    pub(crate) pods: Vec<Pod>,
    pub(crate) nodes: Vec<Node>,
    /// Objects left out (invalid, or deletion blocked) with why.
    pub(crate) notes: Vec<Status>,
}

fn waiting(object: String, reason: &str, message: String) -> Status {
    Status {
        object,
        ready: false,
        reason: reason.into(),
        message,
    }
}

fn live<K: Resource>(o: &K) -> bool {
    o.meta().deletion_timestamp.is_none()
}

/// Pods that take an address: not host-network, not finished.
pub(crate) fn addressable(p: &Pod) -> bool {
    let host = p
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !host && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn object_key(o: &Object) -> String {
    match o {
        Object::Vpc(v) => format!("Vpc/{}", v.name_any()),
        Object::Subnet(v) => format!("Subnet/{}", v.name_any()),
        Object::Eip(v) => format!("Eip/{}", v.name_any()),
        Object::Fip(v) => format!("Fip/{}", v.name_any()),
        Object::SnatRule(v) => format!("SnatRule/{}", v.name_any()),
        Object::DnatRule(v) => format!("DnatRule/{}", v.name_any()),
    }
}

/// Builds the world from the caches: objects being deleted are left out (so the sync removes
/// their rows), except a VPC that still has subnets; invalid objects are left out with their
/// errors, until what remains validates; pods whose namespace is claimed by a subnet that was
/// left out wait rather than fall back to the default subnet.
pub(crate) fn world(stores: &Stores) -> World {
    let mut notes = Vec::new();
    let mut objects = Vec::new();
    let subnets = stores.subnets.state();
    for v in stores.vpcs.state() {
        if !live(&*v) {
            let mut users: Vec<String> = subnets
                .iter()
                .filter(|s| s.spec.vpc == v.name_any())
                .map(|s| s.name_any())
                .collect();
            if users.is_empty() {
                continue;
            }
            users.sort();
            notes.push(waiting(
                format!("Vpc/{}", v.name_any()),
                "HasSubnets",
                format!(
                    "deletion waits until its Subnets are deleted: {}",
                    users.join(", ")
                ),
            ));
        }
        objects.push(Object::Vpc((*v).clone()));
    }
    objects.extend(
        subnets
            .iter()
            .filter(|o| live(&***o))
            .map(|o| Object::Subnet((**o).clone())),
    );
    macro_rules! add {
        ($store:expr, $variant:ident) => {
            objects.extend(
                $store
                    .state()
                    .into_iter()
                    .filter(|o| live(&**o))
                    .map(|o| Object::$variant((*o).clone())),
            )
        };
    }
    add!(stores.eips, Eip);
    add!(stores.fips, Fip);
    add!(stores.snat_rules, SnatRule);
    add!(stores.dnat_rules, DnatRule);
    // Leave out invalid objects until the rest validates (leaving one out can make another
    // invalid: a subnet of a VPC that was left out).
    for _ in 0..16 {
        let errors = validate(&objects);
        if errors.is_empty() {
            break;
        }
        let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in &errors {
            bad.entry(format!("{}/{}", e.kind, e.name))
                .or_default()
                .push(format!("{}: {}", e.field, e.message));
        }
        let before = objects.len();
        objects.retain(|o| !bad.contains_key(&object_key(o)));
        for (object, msgs) in bad {
            notes.push(waiting(object, "InvalidSpec", msgs.join("; ")));
        }
        if objects.len() == before {
            break;
        }
    }
    let valid: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Subnet(s) => Some(s.name_any()),
            _ => None,
        })
        .collect();
    let mut claimed_elsewhere: BTreeMap<String, String> = BTreeMap::new();
    for s in &subnets {
        if s.spec.external.is_none() && !valid.contains(&s.name_any()) {
            for ns in &s.spec.namespaces {
                claimed_elsewhere.insert(ns.clone(), s.name_any());
            }
        }
    }
    // Each pod's requests are checked alone (not against other pods: which of two pods asking
    // for one address keeps it is the allocation's call, by what is in force, not by name).
    // An invalid request gets no port and says why; it never falls back to a dynamic address.
    let check = PodCheck::new(&objects);
    let mut pods = Vec::new();
    for p in stores.pods.state() {
        if !addressable(&p) {
            continue;
        }
        let ns = p.namespace().unwrap_or_default();
        if !p.annotations().contains_key(SUBNET_ANNOTATION) {
            if let Some(s) = claimed_elsewhere.get(&ns) {
                notes.push(pod_waits(&p, s));
                continue;
            }
        }
        let (_, errors) = check.check(&p);
        if !errors.is_empty() {
            let msgs: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            let reason = if errors
                .iter()
                .all(|e| e.field.starts_with("metadata.annotations"))
            {
                "InvalidAnnotation"
            } else {
                "InvalidSpec"
            };
            notes.push(waiting(
                pod_key(&p),
                reason,
                format!("{}; it gets no port until this is fixed", msgs.join("; ")),
            ));
            continue;
        }
        pods.push((*p).clone());
    }
    World {
        objects,
        pods,
        nodes: stores.nodes.state().iter().map(|n| (**n).clone()).collect(),
        notes,
    }
}

pub(crate) fn pod_waits(p: &Pod, subnet: &str) -> Status {
    waiting(
        pod_key(p),
        "SubnetNotReady",
        format!(
            "waiting: namespace {} is claimed by Subnet {subnet}, which is not Ready; it gets \
             no address from another subnet meanwhile",
            p.namespace().unwrap_or_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::put;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_yaml::from_str(text).unwrap()
    }

    fn keys(w: &World) -> Vec<String> {
        w.objects.iter().map(object_key).collect()
    }

    fn notes(w: &World) -> Vec<(String, String)> {
        w.notes
            .iter()
            .map(|s| (s.object.clone(), s.reason.clone()))
            .collect()
    }

    fn stores() -> (Stores, crate::runtime::Writers) {
        let (stores, mut writers) = Stores::new();
        writers.mark_ready();
        put(
            &mut writers.vpcs,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-a}\nspec: {}\n"),
        );
        put(
            &mut writers.subnets,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: a-net1}\nspec: {vpc: vpc-a, cidrs: [10.0.1.0/24]}\n"),
        );
        (stores, writers)
    }

    #[test]
    fn a_vpc_being_deleted_stays_while_subnets_use_it_and_says_which() {
        let (stores, mut writers) = stores();
        let mut dying: crate::api::Vpc =
            yaml("apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-a}\nspec: {}\n");
        dying.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        put(&mut writers.vpcs, dying.clone());
        let w = world(&stores);
        assert_eq!(keys(&w), ["Vpc/vpc-a", "Subnet/a-net1"]);
        assert_eq!(notes(&w), [("Vpc/vpc-a".into(), "HasSubnets".into())]);
        assert!(w.notes[0].message.contains("a-net1"));

        // Without subnets it is left out, so the sync removes its router.
        crate::runtime::remove(
            &mut writers.subnets,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: a-net1}\nspec: {vpc: vpc-a, cidrs: [10.0.1.0/24]}\n"),
        );
        let w = world(&stores);
        assert!(keys(&w).is_empty() && w.notes.is_empty());
    }

    #[test]
    fn invalid_objects_are_left_out_with_their_errors_and_what_depended_on_them_too() {
        let (stores, mut writers) = stores();
        // Overlaps a-net1: invalid.
        put(
            &mut writers.subnets,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: a-net2}\nspec: {vpc: vpc-a, cidrs: [10.0.1.128/25], namespaces: [team-b]}\n"),
        );
        // Its VPC does not exist: invalid.
        put(
            &mut writers.subnets,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: lost}\nspec: {vpc: nope, cidrs: [10.9.0.0/24]}\n"),
        );
        put(
            &mut writers.subnets,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: default}\nspec: {cidrs: [10.16.0.0/16], default: true}\n"),
        );
        // A pod of the namespace the invalid subnet claims waits; another pod goes on.
        put(
            &mut writers.pods,
            yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: team-b}\nspec: {containers: []}\n"),
        );
        put(
            &mut writers.pods,
            yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: other}\nspec: {containers: []}\n"),
        );
        // Host-network and finished pods take no address.
        put(
            &mut writers.pods,
            yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: host, namespace: other}\nspec: {containers: [], hostNetwork: true}\n"),
        );
        put(
            &mut writers.pods,
            yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: done, namespace: other}\nspec: {containers: []}\nstatus: {phase: Succeeded}\n"),
        );
        let w = world(&stores);
        let mut k = keys(&w);
        k.sort();
        assert_eq!(k, ["Subnet/a-net1", "Subnet/default", "Vpc/vpc-a"]);
        let mut n = notes(&w);
        n.sort();
        assert_eq!(
            n,
            [
                ("Pod/team-b/db".to_string(), "SubnetNotReady".to_string()),
                ("Subnet/a-net2".into(), "InvalidSpec".into()),
                ("Subnet/lost".into(), "InvalidSpec".into()),
            ]
        );
        let pods: Vec<String> = w.pods.iter().map(pod_key).collect();
        assert_eq!(pods, ["Pod/other/web"]);
    }

    #[test]
    fn pods_with_bad_requests_are_left_out_with_the_annotation_named() {
        let (stores, mut writers) = stores();
        put(
            &mut writers.subnets,
            yaml("apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: a-net1}\nspec: {vpc: vpc-a, cidrs: [10.0.1.0/24], namespaces: [team-a]}\n"),
        );
        for (name, ann) in [
            ("ok", "ovnvpc.io/ip_address: 10.0.1.20"),
            ("outside", "ovnvpc.io/ip_address: 10.9.0.5"),
            ("gateway", "ovnvpc.io/ip_address: 10.0.1.1"),
            ("mac", "ovnvpc.io/mac_address: \"0a:00:00:00:00:01 x\""),
        ] {
            put(
                &mut writers.pods,
                yaml(&format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: team-a, annotations: {{{ann}}}}}\nspec: {{containers: []}}\n")),
            );
        }
        let w = world(&stores);
        let pods: Vec<String> = w.pods.iter().map(pod_key).collect();
        assert_eq!(pods, ["Pod/team-a/ok"]);
        let mut n: Vec<(String, String, String)> = w
            .notes
            .iter()
            .map(|s| (s.object.clone(), s.reason.clone(), s.message.clone()))
            .collect();
        n.sort();
        assert_eq!(n.len(), 3, "{n:?}");
        for (object, reason, message) in &n {
            assert_eq!(reason, "InvalidAnnotation", "{object}");
            assert!(
                message.contains("metadata.annotations[ovnvpc.io/"),
                "{message}"
            );
            assert!(
                message.ends_with("it gets no port until this is fixed"),
                "{message}"
            );
        }
        assert!(
            n[0].2.contains("10.0.1.1 is the gateway of Subnet a-net1"),
            "{n:?}"
        );
        assert!(n[1].2.contains("is not a MAC address"), "{n:?}");
        assert!(
            n[2].2
                .contains("10.9.0.5 is outside Subnet a-net1 (10.0.1.0/24)"),
            "{n:?}"
        );
    }
}
