//! Objects → the Northbound rows that should exist (no I/O). Covered so far: a logical router
//! per VPC, per Subnet a logical switch with its router port pair and DHCPv4 options, per Pod a
//! logical switch port with addresses from the subnet's IPAM; the static and policy routes of
//! each VPC; external subnets as localnet switches, a VPC's gateway port on its external
//! subnet (HA chassis group of the gateway chassis) with a default route, Eips, Fips and
//! SnatRules as NAT rows, DnatRules as load balancers on the VPC router, and `natOutgoing` of
//! custom-VPC subnets as SNAT on the VPC gateway.
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
    "NAT",
    "Load_Balancer",
    "HA_Chassis_Group",
    "HA_Chassis",
];

/// The columns of a managed table that translation may write, plus those it reads back
/// (`external_ids`): what standalone mode monitors, so a sync carries no column nobody reads.
pub fn managed_columns(table: &str) -> Option<&'static [&'static str]> {
    // Kept to what is written: every column here is in every row of the initial sync, and
    // the server's CPU for that reply is what a re-apply of a large world waits on.
    Some(match table {
        "Logical_Router" => &[
            "name",
            "ports",
            "static_routes",
            "policies",
            "nat",
            "load_balancer",
            "external_ids",
        ],
        "Logical_Router_Static_Route" => &["ip_prefix", "nexthop", "policy", "external_ids"],
        "Logical_Router_Policy" => &["priority", "match", "action", "nexthops", "external_ids"],
        "Logical_Router_Port" => &[
            "name",
            "mac",
            "networks",
            "ha_chassis_group",
            "ipv6_ra_configs",
            "external_ids",
        ],
        "Logical_Switch" => &["name", "ports", "external_ids"],
        "Logical_Switch_Port" => &[
            "name",
            "type",
            "addresses",
            "port_security",
            "options",
            "dhcpv4_options",
            "dhcpv6_options",
            "external_ids",
        ],
        "DHCP_Options" => &["cidr", "options", "external_ids"],
        "NAT" => &["type", "external_ip", "logical_ip", "external_ids"],
        "Load_Balancer" => &["name", "vips", "protocol", "external_ids"],
        "HA_Chassis_Group" => &["name", "ha_chassis", "external_ids"],
        "HA_Chassis" => &["chassis_name", "priority", "external_ids"],
        _ => return None,
    })
}

/// What a Northbound replica of ours monitors: per managed table the columns translation
/// writes or reads back, plus every strong reference column (children a row holds, ours or
/// others'), so that a plan sees every row a delete or a detach would make the server
/// collect (`ovn_nb::effects`). From the committed schema: columns a newer server adds are
/// not seen.
pub fn monitor_requests() -> ovsdb::MonitorRequests {
    static SCHEMA: std::sync::OnceLock<Option<ovsdb::DatabaseSchema>> = std::sync::OnceLock::new();
    let schema = SCHEMA
        .get_or_init(|| ovsdb::DatabaseSchema::from_json_str(ovn_nb::nb::SCHEMA).ok())
        .as_ref();
    let mut requests = ovsdb::MonitorRequests::new();
    for t in MANAGED_TABLES {
        let request = match managed_columns(t) {
            Some(c) => {
                let mut columns: BTreeSet<&str> = c.iter().copied().collect();
                if let Some(schema) = schema {
                    columns.extend(ovn_nb::effects::child_columns(schema, t));
                }
                ovsdb::MonitorRequest::new().columns(columns)
            }
            None => ovsdb::MonitorRequest::new(),
        };
        requests.add(*t, request);
    }
    requests
}

/// `external_ids` key prefix on an external subnet's switch recording who holds which of its
/// addresses (`ovn-vpc/ip:Vpc/vpc-a` = `172.16.0.2`): the NB stores the allocations.
pub const IP_KEY_PREFIX: &str = "ovn-vpc/ip:";

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
    /// Eip → its address.
    pub eips: BTreeMap<String, IpAddr>,
    /// Owners of every desired row (the scope of a non-pruning reconcile).
    pub owners: BTreeSet<String>,
    /// Subnet → its address counts after this translation (for `Subnet` status).
    pub usage: BTreeMap<String, SubnetUsage>,
}

/// Address counts of one subnet, per family (what `Subnet` status reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubnetUsage {
    /// Free IPv4 addresses.
    pub v4_available: u64,
    /// Given IPv4 addresses.
    pub v4_using: u64,
    /// Free IPv6 addresses (saturating at `u64::MAX`).
    pub v6_available: u64,
    /// Given IPv6 addresses.
    pub v6_using: u64,
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

/// Each CIDR of a subnet with its gateway (the given one, else the first address), in spec
/// order: what a pod's `cidr` and `gateway` annotations carry.
pub fn subnet_gateways(sub: &Subnet) -> Vec<(IpNetwork, IpAddr)> {
    let nets: Vec<IpNetwork> = sub
        .spec
        .cidrs
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let gws = gateways(sub, &nets);
    nets.into_iter().zip(gws).collect()
}

/// Which subnet a pod belongs to: the one its `ovnvpc.io/subnet` annotation names, else the
/// one claiming its namespace (the first by name when several do), else the default subnet.
/// A pod whose named subnet does not exist gets no subnet at all (it waits): it is never
/// placed in the default subnet instead.
#[derive(Debug)]
pub struct Claims<'a> {
    known: BTreeSet<&'a str>,
    by_namespace: BTreeMap<&'a str, &'a str>,
    default: Option<&'a str>,
}

impl<'a> Claims<'a> {
    /// The claims of these subnets (external ones claim nothing).
    pub fn new(subnets: impl IntoIterator<Item = &'a Subnet>) -> Claims<'a> {
        let mut list: Vec<&Subnet> = subnets
            .into_iter()
            .filter(|s| s.spec.external.is_none())
            .collect();
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut c = Claims {
            known: BTreeSet::new(),
            by_namespace: BTreeMap::new(),
            default: None,
        };
        for sub in list {
            let Some(name) = sub.metadata.name.as_deref() else {
                continue;
            };
            c.known.insert(name);
            for ns in &sub.spec.namespaces {
                c.by_namespace.entry(ns.as_str()).or_insert(name);
            }
            if sub.spec.default && c.default.is_none() {
                c.default = Some(name);
            }
        }
        c
    }

    /// The pod's subnet, or why it has none yet.
    pub fn choose(&self, p: &Pod) -> Result<&'a str, String> {
        if let Some(n) = p.annotations().get(SUBNET_ANNOTATION) {
            return self.known.get(n.as_str()).copied().ok_or_else(|| {
                format!(
                    "annotation {SUBNET_ANNOTATION} names Subnet {n:?}, which does not exist (yet)"
                )
            });
        }
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(n) = self.by_namespace.get(ns) {
            return Ok(n);
        }
        self.default.ok_or_else(|| {
            "no Subnet claims its namespace and there is no default Subnet".to_string()
        })
    }
}

fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// `Pod/namespace/name`: the owner tag of a pod's rows and the key of its allocation.
pub fn pod_key(p: &Pod) -> String {
    format!("Pod/{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// What happens to the allocations in force of objects that are not in the world being
/// translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// The world is complete (`apply --prune`, the controller): an object that is not in it
    /// is gone, and its addresses are free.
    Release,
    /// The world is partial (`apply` without `--prune`): the objects not in it still exist,
    /// their addresses stay theirs (reserved in the pools, recorded on external switches).
    Keep,
}

/// Translates valid objects (call [`crate::api::validate`] first) and pods into rows.
/// `existing` holds allocations in force, so that re-applying keeps every address.
pub fn translate(
    objects: &[Object],
    pods: &[Pod],
    existing: &BTreeMap<String, Allocation>,
    gateway_chassis: &[String],
    absent: Absent,
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
        let (nets, gws): (Vec<IpNetwork>, Vec<IpAddr>) = subnet_gateways(sub).into_iter().unzip();
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
    // An external subnet belongs to no VPC: it alone does not make the default router.
    if subnets
        .values()
        .any(|p| p.subnet.spec.vpc == "default" && p.subnet.spec.external.is_none())
    {
        vpcs.insert("default".into());
    }

    // Pods: binding first (so subnets know their ports), then addresses.
    let mut bound: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut sorted: Vec<(String, &Pod)> = pods.iter().map(|p| (pod_key(p), p)).collect();
    // Oldest first (then by namespace/name): when addresses are short, a pod that has waited
    // longer gets a freed one before a newer pod.
    sorted.sort_by(|a, b| {
        (&a.1.metadata.creation_timestamp, &a.0).cmp(&(&b.1.metadata.creation_timestamp, &b.0))
    });
    let claims = Claims::new(subnets.values().map(|sp| sp.subnet));
    for (key, p) in sorted {
        let choice = claims.choose(p);
        match choice {
            Ok(subnet) => bound.entry(subnet.to_string()).or_default().push(p),
            Err(why) => t.statuses.push(Status {
                object: key,
                ready: false,
                reason: "SubnetNotReady".into(),
                message: format!(
                    "waiting: {why}; it gets no address from another subnet meanwhile"
                ),
            }),
        }
    }

    // Allocations in force, in every subnet, before any new one: a globally unique subnet
    // must see every address other VPCs already hold in its range, and vice versa.
    let mut in_force: BTreeMap<String, BTreeMap<String, (String, Vec<IpAddr>)>> = BTreeMap::new();
    for (name, sp) in subnets
        .iter_mut()
        .filter(|(_, sp)| sp.subnet.spec.external.is_none())
    {
        let held = in_force.entry(name.clone()).or_default();
        for p in bound.get(name).into_iter().flatten() {
            let key = pod_key(p);
            if let Some(a) = existing.get(&key).filter(|a| &a.subnet == name) {
                let ok = a.ips.iter().all(|ip| {
                    sp.pools
                        .iter_mut()
                        .find(|pool| pool.cidr().contains(*ip))
                        .is_some_and(|pool| pool.allocate_static(*ip, &key).is_ok())
                });
                if ok {
                    held.insert(key, (a.mac.clone(), a.ips.clone()));
                }
            }
        }
    }
    // A partial world: pods not in it keep their addresses, which nobody else may take.
    let mut kept: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    if absent == Absent::Keep {
        let present: BTreeSet<String> = pods.iter().map(pod_key).collect();
        for (key, a) in existing {
            if !key.starts_with("Pod/") || present.contains(key) {
                continue;
            }
            let Some(sp) = subnets
                .get_mut(&a.subnet)
                .filter(|sp| sp.subnet.spec.external.is_none())
            else {
                continue;
            };
            for ip in &a.ips {
                if let Some(pool) = sp.pools.iter_mut().find(|p| p.cidr().contains(*ip)) {
                    let _ = pool.allocate_static(*ip, key);
                }
            }
            kept.entry(a.subnet.clone())
                .or_default()
                .extend(a.ips.iter().copied());
        }
    }
    // Which subnets must not share addresses: overlapping CIDRs where either side is
    // globally unique.
    let ranges: Vec<(String, Vec<IpNetwork>, bool)> = subnets
        .iter()
        .filter(|(_, sp)| sp.subnet.spec.external.is_none())
        .map(|(n, sp)| (n.clone(), sp.nets.clone(), sp.subnet.spec.globally_unique))
        .collect();
    let exclusive_with = |name: &str| -> Vec<String> {
        let Some((_, mine, gu)) = ranges.iter().find(|(n, ..)| n == name) else {
            return Vec::new();
        };
        ranges
            .iter()
            .filter(|(n, nets, other_gu)| {
                n != name
                    && (*gu || *other_gu)
                    && nets.iter().any(|a| mine.iter().any(|b| overlaps(a, b)))
            })
            .map(|(n, ..)| n.clone())
            .collect()
    };

    for (name, sp) in subnets
        .iter_mut()
        .filter(|(_, sp)| sp.subnet.spec.external.is_none())
    {
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
        let mut lrp = row(vec![
            ("name", s(lrp_name.clone())),
            ("mac", s(lrp_mac.clone())),
            ("networks", strings(networks)),
        ]);
        if sp.nets.iter().any(|n| n.is_ipv6()) {
            // Router advertisements: the default route and prefix; addresses come from
            // stateful DHCPv6 (the port's own address in OVN).
            lrp.insert(
                "ipv6_ra_configs".into(),
                Datum::map([
                    ("address_mode", "dhcpv6_stateful"),
                    ("send_periodic", "true"),
                    ("max_interval", "30"),
                ]),
            );
        }
        t.desired.push(Desired {
            table: "Logical_Router_Port".into(),
            key: lrp_key.clone(),
            owner: owner.clone(),
            row: lrp,
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
        // DHCP: one options row per family, referenced by every pod port of the subnet.
        let mut dhcp = |family: &str, cidr: &IpNetwork, options: Datum| {
            let key = format!("{owner}/{family}");
            t.desired.push(Desired {
                table: "DHCP_Options".into(),
                key: key.clone(),
                owner: owner.clone(),
                row: row(vec![("cidr", s(cidr.to_string())), ("options", options)]),
            });
            key
        };
        let dhcp_key = sp
            .nets
            .iter()
            .zip(&sp.gateways)
            .find(|(n, _)| n.is_ipv4())
            .map(|(n, g)| {
                let options = Datum::map([
                    ("lease_time", "3600".to_string()),
                    ("router", g.to_string()),
                    ("server_id", g.to_string()),
                    ("server_mac", lrp_mac.clone()),
                ]);
                dhcp("dhcpv4", n, options)
            });
        let dhcpv6_key = sp
            .nets
            .iter()
            .find(|n| n.is_ipv6())
            .map(|n| dhcp("dhcpv6", n, Datum::map([("server_id", lrp_mac.clone())])));

        // Addresses: keep what is in force, honour static requests, then allocate.
        let pods = bound.remove(name).unwrap_or_default();
        let mut assigned = in_force.remove(name).unwrap_or_default();
        // Addresses held in subnets this one must not share with are off limits here.
        const FOREIGN: &str = "held by an overlapping subnet (globallyUnique)";
        for other in exclusive_with(name) {
            let held = in_force
                .get(&other)
                .into_iter()
                .flat_map(|m| m.values().flat_map(|(_, ips)| ips.iter()));
            for ip in held.chain(kept.get(&other).into_iter().flatten()) {
                if let Some(pool) = sp.pools.iter_mut().find(|p| p.cidr().contains(*ip)) {
                    let _ = pool.allocate_static(*ip, FOREIGN);
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
        in_force.insert(name.clone(), assigned.clone());
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
            if let Some(d) = &dhcpv6_key {
                r.insert("dhcpv6_options".into(), refs([d.clone()]));
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

    // External subnets: addresses for VPC gateways and Eips (kept across applies), the
    // localnet switch, and each attached VPC's gateway port.
    let mut vpc_gateway: BTreeMap<String, (String, IpAddr)> = BTreeMap::new();
    let mut vpc_nats: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut vpc_lbs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut vpc_default_route: BTreeMap<String, IpAddr> = BTreeMap::new();
    let vpc_ext: BTreeMap<String, String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Vpc(v) => v.spec.external_subnet.clone().map(|x| (v.name_any(), x)),
            _ => None,
        })
        .collect();
    let eip_objs: Vec<&crate::api::Eip> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Eip(e) => Some(e),
            _ => None,
        })
        .collect();
    for (xname, sp) in subnets
        .iter_mut()
        .filter(|(_, sp)| sp.subnet.spec.external.is_some())
    {
        let owner = format!("Subnet/{xname}");
        let mut held: BTreeMap<String, IpAddr> = BTreeMap::new();
        // Claimants: VPC gateways and Eips of this external subnet, by owner name.
        let mut claim: Vec<(String, Option<IpAddr>)> = Vec::new();
        for (vpc, x) in &vpc_ext {
            if x == xname {
                claim.push((format!("Vpc/{vpc}"), None));
            }
        }
        for e in &eip_objs {
            if &e.spec.external_subnet == xname {
                let wanted = e.spec.address.as_deref().and_then(|a| a.parse().ok());
                claim.push((format!("Eip/{}", e.name_any()), wanted));
            }
        }
        // A partial world: VPC gateways and Eips not in it keep their addresses, reserved
        // before anyone present is given one.
        let mut kept_ids: Vec<(String, IpAddr)> = Vec::new();
        if absent == Absent::Keep {
            for (who, a) in existing {
                if a.subnet != *xname
                    || !(who.starts_with("Vpc/") || who.starts_with("Eip/"))
                    || claim.iter().any(|(c, _)| c == who)
                {
                    continue;
                }
                for ip in &a.ips {
                    if let Some(pool) = sp.pools.iter_mut().find(|p| p.cidr().contains(*ip)) {
                        let _ = pool.allocate_static(*ip, who);
                    }
                    kept_ids.push((who.clone(), *ip));
                }
            }
        }
        // Requested addresses first, then those in force, then new ones.
        for (who, wanted) in &claim {
            if let Some(ip) = wanted {
                if let Some(pool) = sp.pools.iter_mut().find(|p| p.cidr().contains(*ip)) {
                    if pool.allocate_static(*ip, who).is_ok() {
                        held.insert(who.clone(), *ip);
                    }
                }
            }
        }
        for (who, wanted) in &claim {
            if held.contains_key(who) || wanted.is_some() {
                continue;
            }
            if let Some(ip) = existing
                .get(who)
                .filter(|a| &a.subnet == xname)
                .and_then(|a| a.ips.first())
            {
                if let Some(pool) = sp.pools.iter_mut().find(|p| p.cidr().contains(*ip)) {
                    if pool.allocate_static(*ip, who).is_ok() {
                        held.insert(who.clone(), *ip);
                    }
                }
            }
        }
        for (who, _) in &claim {
            if held.contains_key(who) {
                continue;
            }
            match sp
                .pools
                .iter_mut()
                .find(|p| p.cidr().is_ipv4())
                .map(|p| p.allocate_next(who))
            {
                Some(Ok(ip)) => {
                    held.insert(who.clone(), ip);
                }
                Some(Err(e)) => t.statuses.push(Status {
                    object: who.clone(),
                    ready: false,
                    reason: "AllocationFailed".into(),
                    message: e.to_string(),
                }),
                None => t.statuses.push(Status {
                    object: who.clone(),
                    ready: false,
                    reason: "AllocationFailed".into(),
                    message: format!("external Subnet {xname} has no IPv4 CIDR"),
                }),
            }
        }
        let ext = sp
            .subnet
            .spec
            .external
            .clone()
            .unwrap_or_else(|| crate::api::External {
                physical_network: String::new(),
                vlan: None,
            });
        let localnet_key = format!("{owner}/localnet");
        let mut localnet = row(vec![
            ("name", s(format!("{xname}-localnet"))),
            ("type", s("localnet")),
            ("addresses", strings(["unknown".to_string()])),
            (
                "options",
                Datum::map([("network_name", ext.physical_network.as_str())]),
            ),
        ]);
        if let Some(v) = ext.vlan {
            localnet.insert("tag".into(), Datum::atom(v as i64));
        }
        t.desired.push(Desired {
            table: "Logical_Switch_Port".into(),
            key: localnet_key.clone(),
            owner: owner.clone(),
            row: localnet,
        });
        let mut ports = vec![localnet_key];
        let prefix_of = |ip: IpAddr| {
            sp.nets
                .iter()
                .find(|n| n.contains(ip))
                .map(|n| n.prefix())
                .unwrap_or(32)
        };
        let x_gateway = sp.gateways.iter().copied().find(|g| g.is_ipv4());
        for (vpc, x) in &vpc_ext {
            if x != xname {
                continue;
            }
            let who = format!("Vpc/{vpc}");
            let Some(addr) = held.get(&who).copied() else {
                continue;
            };
            let vowner = who.clone();
            let lrp_name = format!("{vpc}-{xname}");
            let lrp_key = format!("{vowner}/gateway-port");
            let mut lrp = row(vec![
                ("name", s(lrp_name.clone())),
                (
                    "mac",
                    s(mac_for(&format!("gateway {vpc}/{xname}")).to_string()),
                ),
                ("networks", strings([format!("{addr}/{}", prefix_of(addr))])),
            ]);
            if !gateway_chassis.is_empty() {
                let mut members = Vec::new();
                for (i, c) in gateway_chassis.iter().enumerate() {
                    let key = format!("{vowner}/ha-chassis/{c}");
                    t.desired.push(Desired {
                        table: "HA_Chassis".into(),
                        key: key.clone(),
                        owner: vowner.clone(),
                        row: row(vec![
                            ("chassis_name", s(c.clone())),
                            ("priority", Datum::atom(100 - i.min(90) as i64)),
                        ]),
                    });
                    members.push(key);
                }
                let group_key = format!("{vowner}/ha-chassis-group");
                t.desired.push(Desired {
                    table: "HA_Chassis_Group".into(),
                    key: group_key.clone(),
                    owner: vowner.clone(),
                    row: row(vec![
                        ("name", s(format!("{vpc}-gateway"))),
                        ("ha_chassis", refs(members)),
                    ]),
                });
                lrp.insert("ha_chassis_group".into(), refs([group_key]));
            } else {
                // Cleared, not left out: a group that goes away must not stay referenced
                // (the diff updates only the columns a desired row names).
                lrp.insert("ha_chassis_group".into(), refs(Vec::<String>::new()));
            }
            t.desired.push(Desired {
                table: "Logical_Router_Port".into(),
                key: lrp_key.clone(),
                owner: vowner.clone(),
                row: lrp,
            });
            vpc_ports.entry(vpc.clone()).or_default().push(lrp_key);
            let lsp_key = format!("{vowner}/external-switch-port");
            t.desired.push(Desired {
                table: "Logical_Switch_Port".into(),
                key: lsp_key.clone(),
                owner: vowner.clone(),
                row: row(vec![
                    ("name", s(format!("{xname}-{vpc}"))),
                    ("type", s("router")),
                    ("addresses", strings(["router".to_string()])),
                    ("options", Datum::map([("router-port", lrp_name.as_str())])),
                ]),
            });
            ports.push(lsp_key);
            vpc_gateway.insert(vpc.clone(), (xname.clone(), addr));
            if let Some(g) = x_gateway {
                vpc_default_route.insert(vpc.clone(), g);
            }
        }
        for (who, ip) in &held {
            if let Some(e) = who.strip_prefix("Eip/") {
                t.eips.insert(e.to_string(), *ip);
                t.statuses.push(Status {
                    object: who.clone(),
                    ready: true,
                    reason: String::new(),
                    message: format!("address {ip}"),
                });
            }
        }
        let ids: Vec<(String, String)> = held
            .iter()
            .chain(kept_ids.iter().map(|(who, ip)| (who, ip)))
            .map(|(who, ip)| (format!("{IP_KEY_PREFIX}{who}"), ip.to_string()))
            .collect();
        t.desired.push(Desired {
            table: "Logical_Switch".into(),
            key: owner.clone(),
            owner: owner.clone(),
            row: row(vec![
                ("name", s(xname.clone())),
                ("ports", refs(ports)),
                ("external_ids", Datum::map(ids)),
            ]),
        });
        t.statuses.push(Status {
            object: owner,
            ready: true,
            reason: String::new(),
            message: String::new(),
        });
    }

    // NAT: Fips and SnatRules as NAT rows, DnatRules as load balancers, on the Eip's VPC.
    let eip_vpc: BTreeMap<String, String> = eip_objs
        .iter()
        .map(|e| (e.name_any(), e.spec.vpc.clone()))
        .collect();
    let v4_cidr = |subnet: &str| -> Option<String> {
        subnets
            .get(subnet)
            .and_then(|sp| sp.nets.iter().find(|n| n.is_ipv4()))
            .map(|n| n.to_string())
    };
    let mut wait = |object: String, reason: &str, message: String| {
        t.statuses.push(Status {
            object,
            ready: false,
            reason: reason.into(),
            message,
        });
    };
    let mut nats: Vec<(String, String, String, &'static str, String, String)> = Vec::new(); // (vpc, key, owner, type, external, logical)
    let mut lbs: Vec<(String, String, Row)> = Vec::new();
    for o in objects {
        match o {
            Object::Fip(f) => {
                let key = format!("Fip/{}", f.name_any());
                let (Some(eip), Some(vpc)) =
                    (t.eips.get(&f.spec.eip).copied(), eip_vpc.get(&f.spec.eip))
                else {
                    wait(
                        key,
                        "EipNotReady",
                        format!("Eip {} has no address", f.spec.eip),
                    );
                    continue;
                };
                let logical = match (&f.spec.pod, &f.spec.ip) {
                    (Some(pod), _) => t
                        .allocations
                        .get(&format!("Pod/{pod}"))
                        .filter(|a| {
                            subnets
                                .get(&a.subnet)
                                .is_some_and(|sp| &sp.subnet.spec.vpc == vpc)
                        })
                        .and_then(|a| a.ips.iter().find(|i| i.is_ipv4()))
                        .map(|i| i.to_string()),
                    (None, Some(ip)) => Some(ip.clone()),
                    (None, None) => None,
                };
                match logical {
                    Some(l) => nats.push((
                        vpc.clone(),
                        key.clone(),
                        key,
                        "dnat_and_snat",
                        eip.to_string(),
                        l,
                    )),
                    None => wait(
                        key,
                        "PodNotReady",
                        format!("pod {:?} has no IPv4 address in VPC {vpc}", f.spec.pod),
                    ),
                }
            }
            Object::SnatRule(r) => {
                let key = format!("SnatRule/{}", r.name_any());
                let (Some(eip), Some(vpc)) =
                    (t.eips.get(&r.spec.eip).copied(), eip_vpc.get(&r.spec.eip))
                else {
                    wait(
                        key,
                        "EipNotReady",
                        format!("Eip {} has no address", r.spec.eip),
                    );
                    continue;
                };
                let logical = r
                    .spec
                    .cidr
                    .clone()
                    .or_else(|| r.spec.subnet.as_deref().and_then(v4_cidr));
                match logical {
                    Some(l) => {
                        nats.push((vpc.clone(), key.clone(), key, "snat", eip.to_string(), l))
                    }
                    None => wait(key, "SubnetNotReady", "no IPv4 CIDR to translate".into()),
                }
            }
            Object::DnatRule(d) => {
                let key = format!("DnatRule/{}", d.name_any());
                let (Some(eip), Some(vpc)) =
                    (t.eips.get(&d.spec.eip).copied(), eip_vpc.get(&d.spec.eip))
                else {
                    wait(
                        key,
                        "EipNotReady",
                        format!("Eip {} has no address", d.spec.eip),
                    );
                    continue;
                };
                let proto = match d.spec.protocol {
                    crate::api::Protocol::Tcp => "tcp",
                    crate::api::Protocol::Udp => "udp",
                };
                lbs.push((
                    vpc.clone(),
                    key.clone(),
                    row(vec![
                        ("name", s(format!("dnat-{}", d.name_any()))),
                        ("protocol", s(proto)),
                        (
                            "vips",
                            Datum::map([(
                                format!("{eip}:{}", d.spec.external_port),
                                format!("{}:{}", d.spec.internal_ip, d.spec.internal_port),
                            )]),
                        ),
                    ]),
                ));
            }
            _ => {}
        }
    }
    // natOutgoing of a custom VPC's subnet: SNAT behind the VPC's gateway address.
    for (name, sp) in subnets
        .iter()
        .filter(|(_, sp)| sp.subnet.spec.external.is_none() && sp.subnet.spec.nat_outgoing)
    {
        let vpc = &sp.subnet.spec.vpc;
        if vpc == "default" {
            continue; // the node shim masquerades for the default VPC
        }
        match (vpc_gateway.get(vpc), sp.nets.iter().find(|n| n.is_ipv4())) {
            (Some((_, gw)), Some(n)) => {
                let key = format!("Subnet/{name}/nat-outgoing");
                nats.push((
                    vpc.clone(),
                    key,
                    format!("Subnet/{name}"),
                    "snat",
                    gw.to_string(),
                    n.to_string(),
                ));
            }
            _ => wait(
                format!("Subnet/{name}"),
                "NoGateway",
                format!("natOutgoing needs VPC {vpc} to have an externalSubnet"),
            ),
        }
    }
    for (vpc, key, owner, kind, external, logical) in nats {
        t.desired.push(Desired {
            table: "NAT".into(),
            key: key.clone(),
            owner,
            row: row(vec![
                ("type", s(kind)),
                ("external_ip", s(external)),
                ("logical_ip", s(logical)),
            ]),
        });
        vpc_nats.entry(vpc).or_default().push(key);
    }
    for (vpc, key, r) in lbs {
        t.desired.push(Desired {
            table: "Load_Balancer".into(),
            key: key.clone(),
            owner: key.clone(),
            row: r,
        });
        vpc_lbs.entry(vpc).or_default().push(key);
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
        if let Some(g) = vpc_default_route.get(&vpc) {
            let key = format!("{owner}/route/dst-ip/0.0.0.0/0");
            if !routes.contains(&key) {
                t.desired.push(Desired {
                    table: "Logical_Router_Static_Route".into(),
                    key: key.clone(),
                    owner: owner.clone(),
                    row: row(vec![
                        ("ip_prefix", s("0.0.0.0/0")),
                        ("nexthop", s(g.to_string())),
                        ("policy", s("dst-ip")),
                    ]),
                });
                routes.push(key);
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
                ("nat", refs(vpc_nats.remove(&vpc).unwrap_or_default())),
                (
                    "load_balancer",
                    refs(vpc_lbs.remove(&vpc).unwrap_or_default()),
                ),
            ]),
        });
        t.statuses.push(Status {
            object: owner,
            ready: true,
            reason: String::new(),
            message: String::new(),
        });
    }
    for (name, sp) in &subnets {
        let mut u = SubnetUsage::default();
        for pool in &sp.pools {
            let available = u64::try_from(pool.available()).unwrap_or(u64::MAX);
            let using = pool.using() as u64;
            if pool.cidr().is_ipv4() {
                (u.v4_available, u.v4_using) = (available, using);
            } else {
                (u.v6_available, u.v6_using) = (available, using);
            }
        }
        t.usage.insert(name.clone(), u);
    }
    t.owners = t.desired.iter().map(|d| d.owner.clone()).collect();
    t
}

/// Allocations in force, read from the pod ports of ours in the replica (standalone mode keeps
/// them in OVN: `addresses` = `MAC IP…`, `external_ids:ovn-vpc/subnet`).
pub fn existing_allocations(replica: &ovsdb::Replica) -> BTreeMap<String, Allocation> {
    let mut out = BTreeMap::new();
    if let Some(t) = replica.table("Logical_Switch") {
        for r in t.iter() {
            let Some(ids) = r.get("external_ids") else {
                continue;
            };
            let Some(subnet) = ids
                .get_str(crate::owner::OWNER_KEY)
                .and_then(|o| o.strip_prefix("Subnet/"))
            else {
                continue;
            };
            for (k, v) in ids.as_map() {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    continue;
                };
                let (Some(owner), Ok(ip)) = (k.strip_prefix(IP_KEY_PREFIX), v.parse::<IpAddr>())
                else {
                    continue;
                };
                out.insert(
                    owner.to_string(),
                    Allocation {
                        subnet: subnet.to_string(),
                        mac: String::new(),
                        ips: vec![ip],
                    },
                );
            }
        }
    }
    let Some(t) = replica.table("Logical_Switch_Port") else {
        return out;
    };
    for r in t.iter() {
        let Some(ids) = r.get("external_ids") else {
            continue;
        };
        let (Some(owner), Some(subnet)) = (
            ids.get_str(crate::owner::OWNER_KEY),
            ids.get_str(SUBNET_KEY),
        ) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A world touching every table and column translation writes.
    fn rich_world() -> Translation {
        let dir = tempfile::tempdir().unwrap();
        let extra = dir.path().join("routes.yaml");
        std::fs::write(
            &extra,
            "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-r}\nspec:\n  externalSubnet: external\n  staticRoutes: [{cidr: 192.168.0.0/16, nextHop: 10.9.0.254}, {cidr: 10.9.0.128/25, nextHop: 10.9.0.253, policy: src}]\n  policyRoutes: [{priority: 3000, match: \"ip4.src == 10.9.0.66\", action: drop}, {priority: 2000, match: \"ip4.dst == 8.8.8.8\", action: reroute, nextHop: 10.9.0.254}]\n---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: r-net}\nspec: {vpc: vpc-r, cidrs: [10.9.0.0/24, 'fd00:9::/64'], natOutgoing: true, namespaces: [r]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: r}\nspec: {containers: []}\n",
        )
        .unwrap();
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let m = crate::manifest::load(&[examples, extra]).unwrap();
        assert!(crate::api::validate(&m.objects).is_empty());
        translate(
            &m.objects,
            &m.pods,
            &BTreeMap::new(),
            &["ch0".into()],
            Absent::Release,
        )
    }

    #[test]
    fn every_written_column_is_monitored() {
        let t = rich_world();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for d in &t.desired {
            seen.insert(d.table.as_str());
            let monitored = managed_columns(&d.table)
                .unwrap_or_else(|| panic!("{} is not a managed table", d.table));
            for c in d.row.keys() {
                assert!(
                    monitored.contains(&c.as_str()),
                    "{}.{c} is written but not monitored, so every apply would rewrite it",
                    d.table
                );
            }
        }
        assert_eq!(
            seen.len(),
            MANAGED_TABLES.len(),
            "the world misses a table: {seen:?}"
        );
    }

    #[test]
    fn monitored_columns_exist_in_the_schema() {
        let schema = ovsdb::DatabaseSchema::from_json_str(ovn_nb::nb::SCHEMA).unwrap();
        for t in MANAGED_TABLES {
            let ts = &schema.tables[*t];
            for c in managed_columns(t).unwrap() {
                assert!(ts.columns.contains_key(*c), "{t}.{c} is not in the schema");
            }
        }
    }

    fn world(yaml: &str) -> crate::manifest::Manifests {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.yaml");
        std::fs::write(&p, yaml).unwrap();
        crate::manifest::load(&[p]).unwrap()
    }

    fn two_vpcs(gu_a: bool) -> String {
        let mut y = String::new();
        for (v, gu) in [("a", gu_a), ("b", false)] {
            y.push_str(&format!(
                "---\napiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {{name: vpc-{v}}}\nspec: {{}}\n\
                 ---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: {v}}}\n\
                 spec: {{vpc: vpc-{v}, cidrs: [10.0.1.0/24], namespaces: [{v}], globallyUnique: {gu}}}\n"
            ));
            for i in 0..3 {
                y.push_str(&format!(
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {v}}}\nspec: {{containers: []}}\n"
                ));
            }
        }
        y
    }

    fn ips_of(t: &Translation, subnet: &str) -> BTreeSet<IpAddr> {
        t.allocations
            .values()
            .filter(|a| a.subnet == subnet)
            .flat_map(|a| a.ips.iter().copied())
            .collect()
    }

    #[test]
    fn overlapping_vpcs_reuse_addresses_unless_a_subnet_is_globally_unique() {
        let m = world(&two_vpcs(false));
        let t = translate(&m.objects, &m.pods, &BTreeMap::new(), &[], Absent::Release);
        assert_eq!(
            ips_of(&t, "a"),
            ips_of(&t, "b"),
            "tenants reuse the same addresses"
        );

        let m = world(&two_vpcs(true));
        // b already holds 10.0.1.2 and .3 (applied before a became globally unique).
        let mut existing = BTreeMap::new();
        for (i, ip) in [(0, "10.0.1.2"), (1, "10.0.1.3")] {
            existing.insert(
                format!("Pod/b/p{i}"),
                Allocation {
                    subnet: "b".into(),
                    mac: format!("0a:00:00:00:00:0{i}"),
                    ips: vec![ip.parse().unwrap()],
                },
            );
        }
        let t = translate(&m.objects, &m.pods, &existing, &[], Absent::Release);
        let (a, b) = (ips_of(&t, "a"), ips_of(&t, "b"));
        assert_eq!((a.len(), b.len()), (3, 3));
        assert!(
            a.is_disjoint(&b),
            "globally unique a shares with b: {a:?} {b:?}"
        );
        assert!(
            b.contains(&"10.0.1.2".parse::<IpAddr>().unwrap()),
            "b's addresses in force moved"
        );
        assert!(t.statuses.iter().all(|s| s.ready), "{:?}", t.statuses);
    }
}
