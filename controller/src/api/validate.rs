//! Validation of a set of objects, before anything is applied: each error names the object and
//! the field, and says what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube::ResourceExt;

use super::types::{DnatRule, Eip, Fip, PolicyAction, SnatRule, Subnet, Vpc};
use crate::ipam::Pool;

/// An object of the API, as read from a manifest or the cluster.
#[derive(Debug, Clone)]
pub enum Object {
    /// A Vpc.
    Vpc(Vpc),
    /// A Subnet.
    Subnet(Subnet),
    /// An Eip.
    Eip(Eip),
    /// A Fip.
    Fip(Fip),
    /// A SnatRule.
    SnatRule(SnatRule),
    /// A DnatRule.
    DnatRule(DnatRule),
}

/// One problem with one field of one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidationError {
    /// The kind (`Subnet`).
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// The field path (`spec.gateway`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: {}: {}",
            self.kind, self.name, self.field, self.message
        )
    }
}

impl std::error::Error for ValidationError {}

struct Errors(Vec<ValidationError>);

impl Errors {
    fn add(
        &mut self,
        kind: &'static str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(ValidationError {
            kind,
            name: name.to_string(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Checks every object against the others; empty when everything is consistent.
pub fn validate(objects: &[Object]) -> Vec<ValidationError> {
    let mut e = Errors(Vec::new());
    let mut eip_addresses: BTreeMap<(String, IpAddr), String> = BTreeMap::new();
    let vpcs: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Vpc(v) => Some(v.name_any()),
            _ => None,
        })
        .chain(std::iter::once("default".to_string()))
        .collect();
    let subnets: BTreeMap<String, &Subnet> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Subnet(s) => Some((s.name_any(), s)),
            _ => None,
        })
        .collect();
    let eips: BTreeMap<String, &Eip> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Eip(x) => Some((x.name_any(), x)),
            _ => None,
        })
        .collect();
    // Parsed CIDRs of each subnet, for overlap and containment checks.
    let mut parsed: BTreeMap<String, Vec<IpNetwork>> = BTreeMap::new();

    for (name, s) in &subnets {
        let k = "Subnet";
        let mut nets = Vec::new();
        if s.spec.cidrs.is_empty() || s.spec.cidrs.len() > 2 {
            e.add(k, name, "spec.cidrs", "give one IPv4 and/or one IPv6 CIDR");
        }
        for (i, c) in s.spec.cidrs.iter().enumerate() {
            match c.parse::<IpNetwork>() {
                Ok(n) if n.network() != n.ip() => e.add(
                    k,
                    name,
                    format!("spec.cidrs[{i}]"),
                    format!(
                        "{c} has host bits set (did you mean {}/{}?)",
                        n.network(),
                        n.prefix()
                    ),
                ),
                Ok(n) => {
                    if nets.iter().any(|m: &IpNetwork| m.is_ipv4() == n.is_ipv4()) {
                        e.add(
                            k,
                            name,
                            format!("spec.cidrs[{i}]"),
                            "a second CIDR of the same family",
                        );
                    }
                    nets.push(n);
                }
                Err(err) => e.add(
                    k,
                    name,
                    format!("spec.cidrs[{i}]"),
                    format!("{c:?} is not a CIDR: {err}"),
                ),
            }
        }
        if s.spec.external.is_none() && !vpcs.contains(&s.spec.vpc) {
            e.add(k, name, "spec.vpc", format!("unknown VPC {:?}", s.spec.vpc));
        }
        let gateways: Vec<&str> = s
            .spec
            .gateway
            .as_deref()
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for g in &gateways {
            match g.parse::<IpAddr>() {
                Err(_) => e.add(
                    k,
                    name,
                    "spec.gateway",
                    format!("{g:?} is not an IP address"),
                ),
                Ok(ip) => {
                    if !nets.iter().any(|n| n.contains(ip)) {
                        let cidrs = s.spec.cidrs.join(", ");
                        e.add(k, name, "spec.gateway", format!("{ip} is outside {cidrs}"));
                    }
                }
            }
        }
        for n in &nets {
            let gw = gateways
                .iter()
                .filter_map(|g| g.parse::<IpAddr>().ok())
                .find(|g| n.contains(*g));
            let excl: Vec<&str> = s.spec.exclude_ips.iter().map(String::as_str).collect();
            if let Err(err) = Pool::new(*n, gw, &excl) {
                if !matches!(err, crate::ipam::IpamError::OutsideCidr { .. }) {
                    e.add(k, name, "spec.excludeIps", err.to_string());
                }
            }
        }
        parsed.insert(name.clone(), nets);
    }

    // Overlapping CIDRs inside one VPC (across VPCs they are the point of VPCs).
    let names: Vec<&String> = subnets.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let (sa, sb) = (subnets[*a], subnets[*b]);
            if sa.spec.external.is_some()
                || sb.spec.external.is_some()
                || sa.spec.vpc != sb.spec.vpc
            {
                continue;
            }
            for na in &parsed[*a] {
                for nb in &parsed[*b] {
                    if na.is_ipv4() == nb.is_ipv4()
                        && (na.contains(nb.network()) || nb.contains(na.network()))
                    {
                        e.add(
                            "Subnet",
                            b,
                            "spec.cidrs",
                            format!("{nb} overlaps {na} of Subnet {a} in VPC {}", sa.spec.vpc),
                        );
                    }
                }
            }
        }
    }

    let is_external = |s: &str| subnets.get(s).is_some_and(|s| s.spec.external.is_some());
    for o in objects {
        match o {
            Object::Vpc(v) => {
                let name = v.name_any();
                if let Some(x) = &v.spec.external_subnet {
                    if !is_external(x) {
                        e.add(
                            "Vpc",
                            &name,
                            "spec.externalSubnet",
                            format!("{x:?} is not an external Subnet (one with spec.external)"),
                        );
                    }
                }
                for (i, r) in v.spec.static_routes.iter().enumerate() {
                    if r.cidr.parse::<IpNetwork>().is_err() {
                        e.add(
                            "Vpc",
                            &name,
                            format!("spec.staticRoutes[{i}].cidr"),
                            format!("{:?} is not a CIDR", r.cidr),
                        );
                    }
                    if r.next_hop.parse::<IpAddr>().is_err() {
                        e.add(
                            "Vpc",
                            &name,
                            format!("spec.staticRoutes[{i}].nextHop"),
                            format!("{:?} is not an IP address", r.next_hop),
                        );
                    }
                }
                for (i, p) in v.spec.policy_routes.iter().enumerate() {
                    if !(0..=32767).contains(&p.priority) {
                        e.add(
                            "Vpc",
                            &name,
                            format!("spec.policyRoutes[{i}].priority"),
                            format!("{} is outside 0..=32767", p.priority),
                        );
                    }
                    match (&p.action, &p.next_hop) {
                        (PolicyAction::Reroute, None) => e.add(
                            "Vpc",
                            &name,
                            format!("spec.policyRoutes[{i}].nextHop"),
                            "reroute needs a nextHop",
                        ),
                        (_, Some(h)) if h.parse::<IpAddr>().is_err() => e.add(
                            "Vpc",
                            &name,
                            format!("spec.policyRoutes[{i}].nextHop"),
                            format!("{h:?} is not an IP address"),
                        ),
                        _ => {}
                    }
                }
            }
            Object::Eip(x) => {
                let name = x.name_any();
                if !vpcs.contains(&x.spec.vpc) {
                    e.add(
                        "Eip",
                        &name,
                        "spec.vpc",
                        format!("unknown VPC {:?}", x.spec.vpc),
                    );
                }
                if !is_external(&x.spec.external_subnet) {
                    e.add(
                        "Eip",
                        &name,
                        "spec.externalSubnet",
                        format!("{:?} is not an external Subnet", x.spec.external_subnet),
                    );
                } else if let Some(a) = &x.spec.address {
                    match a.parse::<IpAddr>() {
                        Err(_) => e.add(
                            "Eip",
                            &name,
                            "spec.address",
                            format!("{a:?} is not an IP address"),
                        ),
                        Ok(ip)
                            if !parsed[&x.spec.external_subnet]
                                .iter()
                                .any(|n| n.contains(ip)) =>
                        {
                            e.add(
                                "Eip",
                                &name,
                                "spec.address",
                                format!(
                                    "{ip} is outside external Subnet {}",
                                    x.spec.external_subnet
                                ),
                            )
                        }
                        Ok(ip) => {
                            if let Some(other) = eip_addresses
                                .insert((x.spec.external_subnet.clone(), ip), name.clone())
                            {
                                e.add(
                                    "Eip",
                                    &name,
                                    "spec.address",
                                    format!("{ip} is also requested by Eip {other}"),
                                )
                            }
                        }
                    }
                }
            }
            Object::Fip(f) => {
                let name = f.name_any();
                if !eips.contains_key(&f.spec.eip) {
                    e.add(
                        "Fip",
                        &name,
                        "spec.eip",
                        format!("unknown Eip {:?}", f.spec.eip),
                    );
                }
                match (&f.spec.pod, &f.spec.ip) {
                    (Some(_), Some(_)) | (None, None) => {
                        e.add("Fip", &name, "spec", "give exactly one of pod and ip")
                    }
                    (Some(p), None) if p.split('/').filter(|s| !s.is_empty()).count() != 2 => e
                        .add(
                            "Fip",
                            &name,
                            "spec.pod",
                            format!("{p:?} is not namespace/name"),
                        ),
                    (None, Some(ip)) if ip.parse::<IpAddr>().is_err() => e.add(
                        "Fip",
                        &name,
                        "spec.ip",
                        format!("{ip:?} is not an IP address"),
                    ),
                    _ => {}
                }
            }
            Object::SnatRule(r) => {
                let name = r.name_any();
                let eip = eips.get(&r.spec.eip);
                if eip.is_none() {
                    e.add(
                        "SnatRule",
                        &name,
                        "spec.eip",
                        format!("unknown Eip {:?}", r.spec.eip),
                    );
                }
                match (&r.spec.subnet, &r.spec.cidr) {
                    (Some(_), Some(_)) | (None, None) => e.add(
                        "SnatRule",
                        &name,
                        "spec",
                        "give exactly one of subnet and cidr",
                    ),
                    (Some(s), None) => match (subnets.get(s), eip) {
                        (None, _) => e.add(
                            "SnatRule",
                            &name,
                            "spec.subnet",
                            format!("unknown Subnet {s:?}"),
                        ),
                        (Some(sub), Some(eip)) if sub.spec.vpc != eip.spec.vpc => e.add(
                            "SnatRule",
                            &name,
                            "spec.subnet",
                            format!(
                                "Subnet {s} is in VPC {}, Eip {} in VPC {}",
                                sub.spec.vpc,
                                eip.name_any(),
                                eip.spec.vpc
                            ),
                        ),
                        _ => {}
                    },
                    (None, Some(c)) if c.parse::<IpNetwork>().is_err() => e.add(
                        "SnatRule",
                        &name,
                        "spec.cidr",
                        format!("{c:?} is not a CIDR"),
                    ),
                    _ => {}
                }
            }
            Object::DnatRule(d) => {
                let name = d.name_any();
                if !eips.contains_key(&d.spec.eip) {
                    e.add(
                        "DnatRule",
                        &name,
                        "spec.eip",
                        format!("unknown Eip {:?}", d.spec.eip),
                    );
                }
                if d.spec.internal_ip.parse::<IpAddr>().is_err() {
                    e.add(
                        "DnatRule",
                        &name,
                        "spec.internalIp",
                        format!("{:?} is not an IP address", d.spec.internal_ip),
                    );
                }
                for (f, p) in [
                    ("spec.externalPort", d.spec.external_port),
                    ("spec.internalPort", d.spec.internal_port),
                ] {
                    if p == 0 {
                        e.add("DnatRule", &name, f, "port 0");
                    }
                }
            }
            Object::Subnet(_) => {}
        }
    }
    let mut out = e.0;
    out.sort();
    out.dedup();
    out
}

/// Checks pods against the objects: a static address (`ovnvpc.io/ip_address`) that is not
/// an address, or that another pod of the same subnet also requests.
pub fn validate_pods(
    objects: &[Object],
    pods: &[k8s_openapi::api::core::v1::Pod],
) -> Vec<ValidationError> {
    let mut e = Errors(Vec::new());
    let claims = crate::translate::Claims::new(objects.iter().filter_map(|o| match o {
        Object::Subnet(s) => Some(s),
        _ => None,
    }));
    let mut wanted: BTreeMap<(String, IpAddr), String> = BTreeMap::new();
    let mut sorted: Vec<_> = pods.iter().collect();
    sorted.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    for p in sorted {
        let Some(list) = p.annotations().get(crate::translate::IP_ANNOTATION) else {
            continue;
        };
        let name = format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.name_any()
        );
        let field = format!("metadata.annotations[{}]", crate::translate::IP_ANNOTATION);
        for a in list.split(',').map(str::trim) {
            let Ok(ip) = a.parse::<IpAddr>() else {
                e.add("Pod", &name, &field, format!("{a:?} is not an IP address"));
                continue;
            };
            let Ok(subnet) = claims.choose(p) else {
                continue;
            };
            if let Some(other) = wanted.insert((subnet.to_string(), ip), name.clone()) {
                e.add(
                    "Pod",
                    &name,
                    &field,
                    format!("{ip} is also requested by Pod {other} in Subnet {subnet}"),
                );
            }
        }
    }
    e.0
}
