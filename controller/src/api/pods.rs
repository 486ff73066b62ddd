//! Validation of pods: names, and the annotations that request a subnet, addresses and a MAC
//! (`ovnvpc.io/subnet`, `ovnvpc.io/ip_address`, `ovnvpc.io/mac_address`). A request that
//! cannot be honoured is an error naming the annotation; it never falls back to a dynamic
//! address or goes verbatim into a port.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::names::{truncated, NameRule};
use super::validate::{Errors, SubnetAddrs};
use super::{Object, ValidationError};
use crate::ipam::Mac;
use crate::translate::{Claims, IP_ANNOTATION, MAC_ANNOTATION, SUBNET_ANNOTATION};

// The controller's record of an allocation on the pod, written beside `ip_address` and
// `mac_address`.
use crate::runtime::{
    ALLOCATED_ANNOTATION as ALLOCATED, LOGICAL_SWITCH_ANNOTATION as LOGICAL_SWITCH,
};

/// What one pod asks for, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequest {
    /// `namespace/name`.
    pub name: String,
    /// The subnet it belongs to, when one is there to take it.
    pub subnet: Option<String>,
    /// Static addresses (at most one per family).
    pub ips: Vec<IpAddr>,
    /// A static MAC.
    pub mac: Option<Mac>,
}

/// Checks pods one at a time against a set of (valid) objects: what the controller does for
/// every pod it sees, and `apply` for every pod of the manifests.
#[derive(Debug)]
pub struct PodCheck<'a> {
    claims: Claims<'a>,
    subnets: BTreeMap<&'a str, SubnetAddrs>,
}

impl<'a> PodCheck<'a> {
    /// A check against the subnets among `objects`.
    pub fn new(objects: &'a [Object]) -> PodCheck<'a> {
        let subnets: Vec<&super::Subnet> = objects
            .iter()
            .filter_map(|o| match o {
                Object::Subnet(s) => Some(s),
                _ => None,
            })
            .collect();
        PodCheck {
            claims: Claims::new(subnets.iter().copied()),
            subnets: subnets
                .iter()
                .filter_map(|s| Some((s.metadata.name.as_deref()?, SubnetAddrs::of(s))))
                .collect(),
        }
    }

    /// The problems of `pod` alone (other pods are not looked at), and what it asks for.
    pub fn check(&self, pod: &Pod) -> (PodRequest, Vec<ValidationError>) {
        let mut e = Errors(Vec::new());
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = format!("{ns}/{}", pod.name_any());
        let mut req = PodRequest {
            name: name.clone(),
            ..Default::default()
        };
        if let Err(m) = NameRule::Subdomain.check(&pod.name_any()) {
            e.add("Pod", &name, "metadata.name", m);
        }
        match &pod.metadata.namespace {
            None => e.add(
                "Pod",
                &name,
                "metadata.namespace",
                "is required (a pod's owner key and port name carry it)",
            ),
            Some(ns) => {
                if let Err(m) = NameRule::Label.check(ns) {
                    e.add("Pod", &name, "metadata.namespace", m);
                }
            }
        }
        let ann = pod.annotations();
        let field = |a: &str| format!("metadata.annotations[{a}]");
        if let Some(s) = ann.get(SUBNET_ANNOTATION) {
            if let Err(m) = NameRule::Label.check(s) {
                e.add("Pod", &name, field(SUBNET_ANNOTATION), m);
            }
        }
        req.subnet = self.claims.choose(pod).ok().map(str::to_string);
        // The addresses and MAC of an allocation the controller recorded for another logical
        // switch (the pod's subnet went away) describe the old port, not a request for the new
        // one: they are not held against the new subnet.
        let moved = ann.get(ALLOCATED).is_some_and(|v| v == "true")
            && ann.get(LOGICAL_SWITCH).map(String::as_str) != req.subnet.as_deref();
        if let Some(list) = ann.get(IP_ANNOTATION) {
            let f = field(IP_ANNOTATION);
            for a in list.split(',').map(str::trim) {
                let Ok(ip) = a.parse::<IpAddr>() else {
                    e.add(
                        "Pod",
                        &name,
                        &f,
                        format!("{:?} is not an IP address", truncated(a)),
                    );
                    continue;
                };
                if let Some(other) = req.ips.iter().find(|o| o.is_ipv4() == ip.is_ipv4()) {
                    e.add(
                        "Pod",
                        &name,
                        &f,
                        format!("{ip} and {other} are of one family; give at most one per family"),
                    );
                    continue;
                }
                let subnet = req.subnet.as_deref();
                if let Some(why) = subnet
                    .filter(|_| !moved)
                    .and_then(|s| self.subnets.get(s)?.refuse(ip, s))
                {
                    e.add("Pod", &name, &f, why);
                    continue;
                }
                req.ips.push(ip);
            }
        }
        if let Some(m) = ann.get(MAC_ANNOTATION) {
            let f = field(MAC_ANNOTATION);
            match m.parse::<Mac>() {
                Err(err) => e.add("Pod", &name, &f, err.to_string()),
                Ok(mac) if mac.is_multicast() => e.add(
                    "Pod",
                    &name,
                    &f,
                    format!(
                        "{mac} is a multicast or broadcast address; a port needs a unicast MAC"
                    ),
                ),
                Ok(mac) if mac.is_zero() => e.add(
                    "Pod",
                    &name,
                    &f,
                    format!("{mac} is the all-zero address; a port needs a unicast MAC"),
                ),
                Ok(mac) => req.mac = Some(mac),
            }
        }
        (req, e.0)
    }
}

/// Checks pods against the objects: each pod alone ([`PodCheck`]), then against each other:
/// the same pod twice, a static address or a static MAC that another pod of the same subnet
/// also requests (a MAC is unique per logical switch, the L2 segment OVN forwards by MAC on;
/// in different subnets, even of one VPC, the same MAC is fine).
pub fn validate_pods(objects: &[Object], pods: &[Pod]) -> Vec<ValidationError> {
    let check = PodCheck::new(objects);
    let mut e = Errors(Vec::new());
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut wanted: BTreeMap<(String, IpAddr), String> = BTreeMap::new();
    let mut macs: BTreeMap<(String, Mac), String> = BTreeMap::new();
    for p in sorted {
        let (req, errors) = check.check(p);
        e.0.extend(errors);
        let name = req.name.clone();
        if seen.insert(name.clone(), ()).is_some() {
            e.add(
                "Pod",
                &name,
                "metadata.name",
                format!("Pod {name} is given twice; each object may appear once"),
            );
            continue;
        }
        let Some(subnet) = req.subnet else { continue };
        for ip in req.ips {
            if let Some(other) = wanted.insert((subnet.clone(), ip), name.clone()) {
                e.add(
                    "Pod",
                    &name,
                    format!("metadata.annotations[{IP_ANNOTATION}]"),
                    format!("{ip} is also requested by Pod {other} in Subnet {subnet}"),
                );
            }
        }
        if let Some(mac) = req.mac {
            if let Some(other) = macs.insert((subnet.clone(), mac), name.clone()) {
                e.add(
                    "Pod",
                    &name,
                    format!("metadata.annotations[{MAC_ANNOTATION}]"),
                    format!("{mac} is also requested by Pod {other} in Subnet {subnet}"),
                );
            }
        }
    }
    let mut out = e.0;
    out.sort();
    out.dedup();
    out
}
