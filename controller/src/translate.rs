//! Objects → the Northbound rows that should exist (no I/O). Covered so far: a logical router
//! per VPC, per Subnet a logical switch with its router port pair and DHCPv4 options, per Pod a
//! logical switch port with addresses from the subnet's IPAM; the static and policy routes of
//! each VPC. NAT and external subnets are not translated yet.
//!
//! Subnet binding never races: a pod that names (by annotation or namespace) a subnet that is
//! not there waits, with a reason; it is never given a default-subnet address instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use ovn_nb::diff::Desired;
use ovsdb::{Atom, Datum, Row};

use crate::api::{Object, Subnet};
use crate::ipam::{mac_for, Pool};

/// Annotation choosing a pod's subnet.
pub const SUBNET_ANNOTATION: &str = "ovnvpc.io/subnet";
/// Annotation requesting a static address (comma-separated for dual stack).
pub const IP_ANNOTATION: &str = "ovnvpc.io/ip_address";
/// Annotation requesting a static MAC.
pub const MAC_ANNOTATION: &str = "ovnvpc.io/mac_address";

/// The `external_ids` key recording a pod port's subnet.
pub const SUBNET_KEY: &str = "ovn-vpc/subnet";

/// The tables translation writes (and may delete from).
pub const MANAGED_TABLES: &[&str] = &[
    "Logical_Router",
    "Logical_Router_Static_Route",
    "Logical_Router_Policy",
    "Logical_Router_Port",
    "Logical_Switch",
    "Logical_Switch_Port",
    "DHCP_Options",
];

/// An address assignment already in force (read back from OVN or IP objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The subnet.
    pub subnet: String,
    /// The MAC.
    pub mac: String,
    /// The addresses.
    pub ips: Vec<IpAddr>,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `Kind/name` or `Pod/namespace/name`.
    pub object: String,
    /// Ready, or waiting.
    pub ready: bool,
    /// CamelCase reason when not ready.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// The translation of a world.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Rows that should exist.
    pub desired: Vec<Desired>,
    /// Per-object outcome (pods waiting for their subnet are here).
    pub statuses: Vec<Status>,
    /// Pod → its allocation.
    pub allocations: BTreeMap<String, Allocation>,
    /// Owners of every desired row (the scope of a non-pruning reconcile).
    pub owners: BTreeSet<String>,
}

fn s(v: impl Into<String>) -> Datum {
    Datum::atom(v.into())
}

fn strings<I: IntoIterator<Item = String>>(v: I) -> Datum {
    Datum::set(v)
}

fn row(pairs: Vec<(&str, Datum)>) -> Row {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn refs(keys: impl IntoIterator<Item = String>) -> Datum {
    Datum::set(keys.into_iter().map(Atom::NamedUuid))
}

struct SubnetPlan<'a> {
    subnet: &'a Subnet,
    nets: Vec<IpNetwork>,
    gateways: Vec<IpAddr>,
    pools: Vec<Pool>,
}

fn gateways(sub: &Subnet, nets: &[IpNetwork]) -> Vec<IpAddr> {
    let given: Vec<IpAddr> = sub
        .spec
        .gateway
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter_map(|g| g.trim().parse().ok())
        .collect();
    nets.iter()
        .map(|n| {
            given
                .iter()
                .copied()
                .find(|g| n.contains(*g))
                .unwrap_or_else(|| {
                    // Default: the first address after the network address.
                    match n {
                        IpNetwork::V4(v) => IpAddr::V4((u32::from(v.network()) + 1).into()),
                        IpNetwork::V6(v) => IpAddr::V6((u128::from(v.network()) + 1).into()),
                    }
                })
        })
        .collect()
}

fn pod_key(p: &Pod) -> String {
    format!("Pod/{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// Translates valid objects (call [`crate::api::validate`] first) and pods into rows.
/// `existing` holds allocations in force, so that re-applying keeps every address.
pub fn translate(
    objects: &[Object],
    pods: &[Pod],
    existing: &BTreeMap<String, Allocation>,
) -> Translation {
    let mut t = Translation::default();
    let mut vpcs: BTreeSet<String> = BTreeSet::new();
    let mut vpc_ports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in objects {
        if let Object::Vpc(v) = o {
            vpcs.insert(v.name_any());
        }
    }
    let mut subnets: BTreeMap<String, SubnetPlan> = BTreeMap::new();
    for o in objects {
        let Object::Subnet(sub) = o else { continue };
        if sub.spec.external.is_some() {
            continue; // not translated yet
        }
        let nets: Vec<IpNetwork> = sub
            .spec
            .cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        let gws = gateways(sub, &nets);
        let excl: Vec<&str> = sub.spec.exclude_ips.iter().map(String::as_str).collect();
        let pools: Vec<Pool> = nets
            .iter()
            .zip(&gws)
            .filter_map(|(n, g)| Pool::new(*n, Some(*g), &excl).ok())
            .collect();
        subnets.insert(
            sub.name_any(),
            SubnetPlan {
                subnet: sub,
                nets,
                gateways: gws,
                pools,
            },
        );
    }
    if subnets.values().any(|p| p.subnet.spec.vpc == "default") {
        vpcs.insert("default".into());
    }

    // Pods: binding first (so subnets know their ports), then addresses.
    let mut bound: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| pod_key(p));
    for p in sorted {
        let key = pod_key(p);
        let ns = p.namespace().unwrap_or_default();
        let named = p.annotations().get(SUBNET_ANNOTATION).cloned();
        let by_namespace = subnets
            .iter()
            .find(|(_, sp)| sp.subnet.spec.namespaces.contains(&ns))
            .map(|(n, _)| n.clone());
        let default = subnets
            .iter()
            .find(|(_, sp)| sp.subnet.spec.default)
            .map(|(n, _)| n.clone());
        let (choice, why) = match (&named, &by_namespace) {
            (Some(n), _) => (
                subnets.contains_key(n).then(|| n.clone()),
                format!(
                    "annotation {SUBNET_ANNOTATION} names Subnet {n:?}, which does not exist (yet)"
                ),
            ),
            (None, Some(n)) => (Some(n.clone()), String::new()),
            (None, None) => (
                default.clone(),
                "no Subnet claims its namespace and there is no default Subnet".to_string(),
            ),
        };
        match choice {
            Some(subnet) => bound.entry(subnet).or_default().push(p),
            None => t.statuses.push(Status {
                object: key,
                ready: false,
                reason: "SubnetNotReady".into(),
                message: format!(
                    "waiting: {why}; it gets no address from another subnet meanwhile"
                ),
            }),
        }
    }

    for (name, sp) in &mut subnets {
        let sub = sp.subnet;
        let vpc = sub.spec.vpc.clone();
        let owner = format!("Subnet/{name}");
        let lrp_name = format!("{vpc}-{name}");
        let lrp_mac = mac_for(&format!("lrp {vpc}/{name}")).to_string();
        let networks: Vec<String> = sp
            .nets
            .iter()
            .zip(&sp.gateways)
            .map(|(n, g)| format!("{g}/{}", n.prefix()))
            .collect();
        let lrp_key = format!("{owner}/router-port");
        t.desired.push(Desired {
            table: "Logical_Router_Port".into(),
            key: lrp_key.clone(),
            owner: owner.clone(),
            row: row(vec![
                ("name", s(lrp_name.clone())),
                ("mac", s(lrp_mac.clone())),
                ("networks", strings(networks)),
            ]),
        });
        vpc_ports.entry(vpc.clone()).or_default().push(lrp_key);
        let rtr_key = format!("{owner}/switch-router-port");
        t.desired.push(Desired {
            table: "Logical_Switch_Port".into(),
            key: rtr_key.clone(),
            owner: owner.clone(),
            row: row(vec![
                ("name", s(format!("{name}-{vpc}"))),
                ("type", s("router")),
                ("addresses", strings(["router".to_string()])),
                ("options", Datum::map([("router-port", lrp_name.as_str())])),
            ]),
        });
        let mut ports = vec![rtr_key];
        let dhcp_key = sp
            .nets
            .iter()
            .zip(&sp.gateways)
            .find(|(n, _)| n.is_ipv4())
            .map(|(n, g)| {
                let key = format!("{owner}/dhcpv4");
                t.desired.push(Desired {
                    table: "DHCP_Options".into(),
                    key: key.clone(),
                    owner: owner.clone(),
                    row: row(vec![
                        ("cidr", s(n.to_string())),
                        (
                            "options",
                            Datum::map([
                                ("lease_time", "3600".to_string()),
                                ("router", g.to_string()),
                                ("server_id", g.to_string()),
                                ("server_mac", lrp_mac.clone()),
                            ]),
                        ),
                    ]),
                });
                key
            });

        // Addresses: keep what is in force, honour static requests, then allocate.
        let pods = bound.remove(name).unwrap_or_default();
        let mut assigned: BTreeMap<String, (String, Vec<IpAddr>)> = BTreeMap::new();
        for p in &pods {
            let key = pod_key(p);
            if let Some(a) = existing.get(&key).filter(|a| &a.subnet == name) {
                let ok = a.ips.iter().all(|ip| {
                    sp.pools
                        .iter_mut()
                        .find(|pool| pool.cidr().contains(*ip))
                        .is_some_and(|pool| pool.allocate_static(*ip, &key).is_ok())
                });
                if ok {
                    assigned.insert(key, (a.mac.clone(), a.ips.clone()));
                }
            }
        }
        for p in &pods {
            let key = pod_key(p);
            if assigned.contains_key(&key) {
                continue;
            }
            let mut ips = Vec::new();
            let mut failure = None;
            let wanted: Vec<IpAddr> = p
                .annotations()
                .get(IP_ANNOTATION)
                .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
                .unwrap_or_default();
            for pool in sp.pools.iter_mut() {
                let res = match wanted.iter().find(|ip| pool.cidr().contains(**ip)) {
                    Some(ip) => pool.allocate_static(*ip, &key).map(|_| *ip),
                    None => pool.allocate_next(&key),
                };
                match res {
                    Ok(ip) => ips.push(ip),
                    Err(e) => failure = Some(e.to_string()),
                }
            }
            if let Some(f) = failure {
                for pool in sp.pools.iter_mut() {
                    pool.release_owner(&key);
                }
                t.statuses.push(Status {
                    object: key,
                    ready: false,
                    reason: "AllocationFailed".into(),
                    message: f,
                });
                continue;
            }
            let mac = p
                .annotations()
                .get(MAC_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| {
                    mac_for(&format!(
                        "{key} {}",
                        ips.first().map(|i| i.to_string()).unwrap_or_default()
                    ))
                    .to_string()
                });
            assigned.insert(key, (mac, ips));
        }
        for (key, (mac, ips)) in assigned {
            let (ns, pod) = key
                .trim_start_matches("Pod/")
                .split_once('/')
                .unwrap_or(("", ""));
            let addr = std::iter::once(mac.clone())
                .chain(ips.iter().map(|i| i.to_string()))
                .collect::<Vec<_>>()
                .join(" ");
            let mut r = row(vec![
                ("name", s(format!("{pod}.{ns}"))),
                ("addresses", strings([addr.clone()])),
                ("port_security", strings([addr])),
                ("external_ids", Datum::map([(SUBNET_KEY, name.as_str())])),
            ]);
            if let Some(d) = &dhcp_key {
                r.insert("dhcpv4_options".into(), refs([d.clone()]));
            }
            t.desired.push(Desired {
                table: "Logical_Switch_Port".into(),
                key: key.clone(),
                owner: key.clone(),
                row: r,
            });
            ports.push(key.clone());
            t.statuses.push(Status {
                object: key.clone(),
                ready: true,
                reason: String::new(),
                message: String::new(),
            });
            t.allocations.insert(
                key,
                Allocation {
                    subnet: name.clone(),
                    mac,
                    ips,
                },
            );
        }
        t.desired.push(Desired {
            table: "Logical_Switch".into(),
            key: owner.clone(),
            owner: owner.clone(),
            row: row(vec![("name", s(name.clone())), ("ports", refs(ports))]),
        });
        t.statuses.push(Status {
            object: owner,
            ready: true,
            reason: String::new(),
            message: String::new(),
        });
    }

    let specs: BTreeMap<String, &crate::api::VpcSpec> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Vpc(v) => Some((v.name_any(), &v.spec)),
            _ => None,
        })
        .collect();
    for vpc in vpcs {
        let owner = format!("Vpc/{vpc}");
        // Routes are keyed by what they are, not by position: reordering the spec changes
        // nothing in OVN.
        let mut routes = Vec::new();
        let mut policies = Vec::new();
        if let Some(spec) = specs.get(&vpc) {
            for r in &spec.static_routes {
                let policy = match r.policy {
                    crate::api::RoutePolicy::Dst => "dst-ip",
                    crate::api::RoutePolicy::Src => "src-ip",
                };
                let key = format!("{owner}/route/{policy}/{}", r.cidr);
                t.desired.push(Desired {
                    table: "Logical_Router_Static_Route".into(),
                    key: key.clone(),
                    owner: owner.clone(),
                    row: row(vec![
                        ("ip_prefix", s(r.cidr.clone())),
                        ("nexthop", s(r.next_hop.clone())),
                        ("policy", s(policy)),
                    ]),
                });
                routes.push(key);
            }
            for p in &spec.policy_routes {
                let action = match p.action {
                    crate::api::PolicyAction::Allow => "allow",
                    crate::api::PolicyAction::Drop => "drop",
                    crate::api::PolicyAction::Reroute => "reroute",
                };
                let key = format!("{owner}/policy/{}/{}", p.priority, p.match_);
                let mut r = row(vec![
                    ("priority", Datum::atom(p.priority)),
                    ("match", s(p.match_.clone())),
                    ("action", s(action)),
                ]);
                if let Some(h) = &p.next_hop {
                    r.insert("nexthops".into(), strings([h.clone()]));
                }
                t.desired.push(Desired {
                    table: "Logical_Router_Policy".into(),
                    key: key.clone(),
                    owner: owner.clone(),
                    row: r,
                });
                policies.push(key);
            }
        }
        t.desired.push(Desired {
            table: "Logical_Router".into(),
            key: owner.clone(),
            owner: owner.clone(),
            row: row(vec![
                ("name", s(vpc.clone())),
                ("ports", refs(vpc_ports.remove(&vpc).unwrap_or_default())),
                ("static_routes", refs(routes)),
                ("policies", refs(policies)),
            ]),
        });
        t.statuses.push(Status {
            object: owner,
            ready: true,
            reason: String::new(),
            message: String::new(),
        });
    }
    t.owners = t.desired.iter().map(|d| d.owner.clone()).collect();
    t
}

/// Allocations in force, read from the pod ports of ours in the replica (standalone mode keeps
/// them in OVN: `addresses` = `MAC IP…`, `external_ids:ovn-vpc/subnet`).
pub fn existing_allocations(replica: &ovsdb::Replica) -> BTreeMap<String, Allocation> {
    let mut out = BTreeMap::new();
    let Some(t) = replica.table("Logical_Switch_Port") else {
        return out;
    };
    for r in t.iter() {
        let Some(ids) = r.get("external_ids") else {
            continue;
        };
        let (Some(owner), Some(subnet)) =
            (ids.get_str(ovn_nb::ops::OWNER_KEY), ids.get_str(SUBNET_KEY))
        else {
            continue;
        };
        if !owner.starts_with("Pod/") {
            continue;
        }
        let Some(addr) = r
            .get("addresses")
            .and_then(|d| d.as_set().first())
            .and_then(|a| a.as_str())
        else {
            continue;
        };
        let mut parts = addr.split_whitespace();
        let mac = parts.next().unwrap_or("").to_string();
        let ips: Vec<IpAddr> = parts.filter_map(|p| p.parse().ok()).collect();
        out.insert(
            owner.to_string(),
            Allocation {
                subnet: subnet.to_string(),
                mac,
                ips,
            },
        );
    }
    out
}
