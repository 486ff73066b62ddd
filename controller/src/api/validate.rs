//! Validation of a set of objects, before anything is applied: each error names the object and
//! the field, and says what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube::ResourceExt;

use super::names::{one_line, truncated, NameRule};
use super::types::{DnatRule, Eip, Fip, PolicyAction, RoutePolicy, SnatRule, Subnet, Vpc};
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

impl Object {
    /// The kind (`Subnet`).
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Vpc(_) => "Vpc",
            Object::Subnet(_) => "Subnet",
            Object::Eip(_) => "Eip",
            Object::Fip(_) => "Fip",
            Object::SnatRule(_) => "SnatRule",
            Object::DnatRule(_) => "DnatRule",
        }
    }

    /// The object's name.
    pub fn name(&self) -> String {
        match self {
            Object::Vpc(o) => o.name_any(),
            Object::Subnet(o) => o.name_any(),
            Object::Eip(o) => o.name_any(),
            Object::Fip(o) => o.name_any(),
            Object::SnatRule(o) => o.name_any(),
            Object::DnatRule(o) => o.name_any(),
        }
    }

    /// The rule its name follows: Vpc and Subnet names become parts of OVN port names
    /// (`<vpc>-<subnet>`), so they are labels (no `.`, which pod port names `<pod>.<namespace>`
    /// use); the others are subdomains, as Kubernetes has them.
    fn name_rule(&self) -> NameRule {
        match self {
            Object::Vpc(_) | Object::Subnet(_) => NameRule::Label,
            _ => NameRule::Subdomain,
        }
    }
}

/// One problem with one field of one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidationError {
    /// The kind (`Subnet`).
    pub kind: &'static str,
    /// The object's name (`namespace/name` for pods).
    pub name: String,
    /// The field path (`spec.gateway`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A name that breaks the rules (a newline, a NUL, 300 characters) is shown quoted and
        // cut, so one error stays one line.
        let slashes = if self.kind == "Pod" { 1 } else { 0 };
        let plain = self.name.len() <= 253 + 64
            && self.name.matches('/').count() <= slashes
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-./".contains(c));
        if plain {
            write!(f, "{}/{}", self.kind, self.name)?;
        } else {
            write!(f, "{}/{:?}", self.kind, truncated(&self.name))?;
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

pub(super) struct Errors(pub(super) Vec<ValidationError>);

impl Errors {
    pub(super) fn add(
        &mut self,
        kind: &'static str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        // Messages quote values with `{:?}`, but some carry a name or a parser's words as
        // they came: a control character there is escaped, so an error stays one line and a
        // NUL never reaches a terminal or a status.
        let message = one_line(&message.into());
        self.0.push(ValidationError {
            kind,
            name: name.to_string(),
            field: field.into(),
            message,
        });
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn net_family(n: &IpNetwork) -> &'static str {
    family(n.ip())
}

/// What a special address of a subnet is, for a message: `network address of 10.0.0.0/24`.
fn special(n: &IpNetwork, ip: IpAddr) -> Option<String> {
    if ip == n.network() {
        let what = if n.is_ipv4() {
            "network address"
        } else {
            "subnet-router anycast address"
        };
        return Some(format!("the {what} of {n}"));
    }
    if let IpNetwork::V4(v) = n {
        if ip == IpAddr::V4(v.broadcast()) {
            return Some(format!("the broadcast address of {n}"));
        }
    }
    None
}

/// The longest prefix a subnet may have: room for the gateway and one pod beside the
/// addresses no host may take (IPv4: network and broadcast; IPv6: subnet-router anycast).
fn longest_prefix(n: &IpNetwork) -> u8 {
    if n.is_ipv4() {
        30
    } else {
        126
    }
}

/// A CIDR a subnet can have: no host bits, not the default route, not too long.
fn usable(n: &IpNetwork) -> bool {
    n.network() == n.ip() && n.prefix() > 0 && n.prefix() <= longest_prefix(n)
}

/// The parsed addresses of one subnet: its CIDRs, the gateway of each, and the pools (with
/// gateway and `excludeIps` reserved) where they could be built.
#[derive(Debug)]
pub(super) struct SubnetAddrs {
    pub(super) nets: Vec<IpNetwork>,
    pub(super) gateways: Vec<IpAddr>,
    pub(super) pools: Vec<Pool>,
}

impl SubnetAddrs {
    /// The CIDRs of `s` that are usable (see [`usable`]), each with its gateway: the given one,
    /// else the first address after the network address, as translation has it.
    pub(super) fn of(s: &Subnet) -> SubnetAddrs {
        let given: Vec<IpAddr> = s
            .spec
            .gateway
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter_map(|g| g.trim().parse().ok())
            .collect();
        let excl: Vec<&str> = s.spec.exclude_ips.iter().map(String::as_str).collect();
        let mut out = SubnetAddrs {
            nets: Vec::new(),
            gateways: Vec::new(),
            pools: Vec::new(),
        };
        for n in s
            .spec
            .cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNetwork>().ok())
        {
            if !usable(&n) {
                continue;
            }
            let gw = given
                .iter()
                .copied()
                .find(|g| n.contains(*g))
                .unwrap_or_else(|| match n {
                    // No overflow: a usable prefix leaves host bits.
                    IpNetwork::V4(v) => IpAddr::V4((u32::from(v.network()) + 1).into()),
                    IpNetwork::V6(v) => IpAddr::V6((u128::from(v.network()) + 1).into()),
                });
            if let Ok(p) = Pool::new(n, Some(gw), &excl) {
                out.pools.push(p);
            }
            out.nets.push(n);
            out.gateways.push(gw);
        }
        out
    }

    /// Why `ip` cannot be requested here (outside, gateway, network, broadcast, excluded).
    pub(super) fn refuse(&self, ip: IpAddr, subnet: &str) -> Option<String> {
        let Some(n) = self.nets.iter().find(|n| n.contains(ip)) else {
            let cidrs: Vec<String> = self.nets.iter().map(|n| n.to_string()).collect();
            return Some(format!(
                "{ip} is outside Subnet {subnet} ({})",
                cidrs.join(", ")
            ));
        };
        if self.gateways.contains(&ip) {
            return Some(format!("{ip} is the gateway of Subnet {subnet}"));
        }
        if let Some(what) = special(n, ip) {
            return Some(format!("{ip} is {what}"));
        }
        if self
            .pools
            .iter()
            .any(|p| p.cidr() == *n && p.is_reserved(ip))
        {
            return Some(format!(
                "{ip} is excluded (spec.excludeIps) in Subnet {subnet}"
            ));
        }
        None
    }
}

/// Checks a policy route's `match`: one line, balanced quotes, parentheses and braces (OVN's
/// parser would refuse it later, in northd's log, not in our answer).
fn check_match(m: &str) -> Result<(), String> {
    if m.trim().is_empty() {
        return Err("the match is empty".into());
    }
    if let Some(c) = m.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "contains the control character {c:?}; a match is one line of text"
        ));
    }
    let mut open: Vec<char> = Vec::new();
    let mut chars = m.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    None => return Err("a string (\") is not closed".into()),
                    Some('\\') => {
                        chars.next();
                    }
                    Some('"') => break,
                    Some(_) => {}
                }
            },
            '(' | '{' => open.push(c),
            ')' | '}' => {
                let want = if c == ')' { '(' } else { '{' };
                if open.pop() != Some(want) {
                    return Err(format!("an unbalanced {c:?}"));
                }
            }
            _ => {}
        }
    }
    match open.last() {
        Some(c) => Err(format!("{c:?} is not closed")),
        None => Ok(()),
    }
}

/// A free-form string written into OVN as is: no control characters (a NUL resets the
/// connection), nothing empty.
fn check_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{:?} contains {c:?}: no whitespace or control characters",
            truncated(s)
        ));
    }
    Ok(())
}

/// Checks every object against the others; empty when everything is consistent.
pub fn validate(objects: &[Object]) -> Vec<ValidationError> {
    let mut e = Errors(Vec::new());
    // Names first: an owner key or a port name is built from them.
    let mut seen: BTreeSet<(&str, String)> = BTreeSet::new();
    for o in objects {
        let (kind, name) = (o.kind(), o.name());
        if let Err(m) = o.name_rule().check(&name) {
            e.add(kind, &name, "metadata.name", m);
        }
        if !seen.insert((kind, name.clone())) {
            e.add(
                kind,
                &name,
                "metadata.name",
                format!(
                    "{kind} {:?} is given twice; each object may appear once",
                    truncated(&name)
                ),
            );
        }
    }
    let vpcs: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Vpc(v) => Some(v.name_any()),
            _ => None,
        })
        .chain(std::iter::once("default".to_string()))
        .collect();
    let mut subnets: BTreeMap<String, &Subnet> = BTreeMap::new();
    let mut eips: BTreeMap<String, &Eip> = BTreeMap::new();
    for o in objects {
        match o {
            Object::Subnet(s) => {
                subnets.entry(s.name_any()).or_insert(s);
            }
            Object::Eip(x) => {
                eips.entry(x.name_any()).or_insert(x);
            }
            _ => {}
        }
    }
    // Parsed CIDRs of each subnet, for overlap and containment checks.
    let mut parsed: BTreeMap<String, Vec<IpNetwork>> = BTreeMap::new();
    for (name, s) in &subnets {
        let nets = check_subnet(&mut e, name, s, &vpcs);
        parsed.insert(name.clone(), nets);
    }
    check_overlaps(&mut e, &subnets, &parsed);
    check_port_names(&mut e, objects, &subnets);

    let is_external = |s: &str| subnets.get(s).is_some_and(|s| s.spec.external.is_some());
    let mut eip_addresses: BTreeMap<(String, IpAddr), String> = BTreeMap::new();
    let mut fip_of_eip: BTreeMap<String, String> = BTreeMap::new();
    let mut forwarded: BTreeMap<(String, &'static str, u16), String> = BTreeMap::new();
    // Every Eip is IPv4 (an IPv6 address is refused below; allocation takes IPv4): what sits
    // behind it must be IPv4 too.
    let behind_eip =
        |e: &mut Errors, kind: &'static str, name: &str, field: &str, eip: &str, ip: IpAddr| {
            if ip.is_ipv6() && eips.contains_key(eip) {
                e.add(
                    kind,
                    name,
                    field,
                    format!("{ip} is IPv6, but Eip {eip} is IPv4 and NAT maps IPv4 to IPv4"),
                );
            }
        };
    for o in objects {
        match o {
            Object::Vpc(v) => check_vpc(&mut e, v, &is_external),
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
                    let xname = &x.spec.external_subnet;
                    let mut bad = |m: String| e.add("Eip", &name, "spec.address", m);
                    match a.parse::<IpAddr>() {
                        Err(_) => bad(format!("{:?} is not an IP address", truncated(a))),
                        Ok(ip) if ip.is_ipv6() => bad(format!(
                            "{ip}: IPv6 Eips are not supported (NAT and port forwarding here are \
                             IPv4)"
                        )),
                        Ok(ip) if !parsed[xname].iter().any(|n| n.contains(ip)) => {
                            bad(format!("{ip} is outside external Subnet {xname}"))
                        }
                        Ok(ip) => {
                            let addrs = SubnetAddrs::of(subnets[xname]);
                            if let Some(why) = addrs.refuse(ip, xname) {
                                bad(format!("{why}: it cannot be an Eip"));
                            } else if let Some(other) =
                                eip_addresses.insert((xname.clone(), ip), name.clone())
                            {
                                bad(format!("{ip} is also requested by Eip {other}"));
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
                        format!("unknown Eip {:?}", truncated(&f.spec.eip)),
                    );
                } else if let Some(other) = fip_of_eip.insert(f.spec.eip.clone(), name.clone()) {
                    e.add(
                        "Fip",
                        &name,
                        "spec.eip",
                        format!(
                            "Eip {} already has Fip {other}; an Eip maps to one Fip",
                            f.spec.eip
                        ),
                    );
                }
                match (&f.spec.pod, &f.spec.ip) {
                    (Some(_), Some(_)) | (None, None) => {
                        e.add("Fip", &name, "spec", "give exactly one of pod and ip")
                    }
                    (Some(p), None) => match p.split_once('/') {
                        Some((ns, pod)) => {
                            if let Err(m) = NameRule::Label.check(ns) {
                                e.add("Fip", &name, "spec.pod", format!("namespace {m}"));
                            }
                            if let Err(m) = NameRule::Subdomain.check(pod) {
                                e.add("Fip", &name, "spec.pod", format!("pod {m}"));
                            }
                        }
                        None => e.add(
                            "Fip",
                            &name,
                            "spec.pod",
                            format!("{:?} is not namespace/name", truncated(p)),
                        ),
                    },
                    (None, Some(ip)) => match ip.parse::<IpAddr>() {
                        Err(_) => e.add(
                            "Fip",
                            &name,
                            "spec.ip",
                            format!("{:?} is not an IP address", truncated(ip)),
                        ),
                        Ok(ip) => behind_eip(&mut e, "Fip", &name, "spec.ip", &f.spec.eip, ip),
                    },
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
                        format!("unknown Eip {:?}", truncated(&r.spec.eip)),
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
                            format!("unknown Subnet {:?}", truncated(s)),
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
                    (None, Some(c)) => match c.parse::<IpNetwork>() {
                        Err(_) => e.add(
                            "SnatRule",
                            &name,
                            "spec.cidr",
                            format!("{:?} is not a CIDR", truncated(c)),
                        ),
                        Ok(n) => {
                            behind_eip(&mut e, "SnatRule", &name, "spec.cidr", &r.spec.eip, n.ip())
                        }
                    },
                }
            }
            Object::DnatRule(d) => {
                let name = d.name_any();
                if !eips.contains_key(&d.spec.eip) {
                    e.add(
                        "DnatRule",
                        &name,
                        "spec.eip",
                        format!("unknown Eip {:?}", truncated(&d.spec.eip)),
                    );
                }
                match d.spec.internal_ip.parse::<IpAddr>() {
                    Err(_) => e.add(
                        "DnatRule",
                        &name,
                        "spec.internalIp",
                        format!("{:?} is not an IP address", truncated(&d.spec.internal_ip)),
                    ),
                    Ok(ip) => behind_eip(
                        &mut e,
                        "DnatRule",
                        &name,
                        "spec.internalIp",
                        &d.spec.eip,
                        ip,
                    ),
                }
                for (f, p) in [
                    ("spec.externalPort", d.spec.external_port),
                    ("spec.internalPort", d.spec.internal_port),
                ] {
                    if p == 0 {
                        e.add("DnatRule", &name, f, "port 0");
                    }
                }
                let proto = match d.spec.protocol {
                    super::Protocol::Tcp => "tcp",
                    super::Protocol::Udp => "udp",
                };
                if let Some(other) = forwarded.insert(
                    (d.spec.eip.clone(), proto, d.spec.external_port),
                    name.clone(),
                ) {
                    e.add(
                        "DnatRule",
                        &name,
                        "spec.externalPort",
                        format!(
                            "{proto} port {} of Eip {} is also forwarded by DnatRule {other}",
                            d.spec.external_port, d.spec.eip
                        ),
                    );
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

/// One subnet's own fields; returns its parsed CIDRs.
fn check_subnet(e: &mut Errors, name: &str, s: &Subnet, vpcs: &BTreeSet<String>) -> Vec<IpNetwork> {
    let k = "Subnet";
    let mut nets: Vec<IpNetwork> = Vec::new();
    if s.spec.cidrs.is_empty() || s.spec.cidrs.len() > 2 {
        e.add(k, name, "spec.cidrs", "give one IPv4 and/or one IPv6 CIDR");
    }
    for (i, c) in s.spec.cidrs.iter().enumerate() {
        let field = format!("spec.cidrs[{i}]");
        let n = match c.parse::<IpNetwork>() {
            Ok(n) => n,
            Err(err) => {
                e.add(
                    k,
                    name,
                    field,
                    format!("{:?} is not a CIDR: {err}", truncated(c)),
                );
                continue;
            }
        };
        if n.network() != n.ip() {
            e.add(
                k,
                name,
                field,
                format!(
                    "{c} has host bits set (did you mean {}/{}?)",
                    n.network(),
                    n.prefix()
                ),
            );
            continue;
        }
        let longest = longest_prefix(&n);
        if n.prefix() == 0 {
            e.add(
                k,
                name,
                field,
                format!("{n} is the default route, not a subnet"),
            );
            continue;
        }
        if n.prefix() > longest {
            e.add(
                k,
                name,
                field,
                format!(
                    "{n} leaves no room for a gateway and a pod ({} subnets need a prefix of \
                     /{longest} or shorter)",
                    net_family(&n)
                ),
            );
            continue;
        }
        if nets.iter().any(|m| m.is_ipv4() == n.is_ipv4()) {
            e.add(k, name, field, "a second CIDR of the same family");
            continue;
        }
        nets.push(n);
    }
    if s.spec.external.is_none() && !vpcs.contains(&s.spec.vpc) {
        e.add(
            k,
            name,
            "spec.vpc",
            format!("unknown VPC {:?}", truncated(&s.spec.vpc)),
        );
    }
    for (i, ns) in s.spec.namespaces.iter().enumerate() {
        if let Err(m) = NameRule::Label.check(ns) {
            e.add(k, name, format!("spec.namespaces[{i}]"), m);
        }
    }
    // Gateways: each an address of one of the CIDRs, at most one per family, not the
    // network or broadcast address.
    let mut gateways: Vec<IpAddr> = Vec::new();
    for g in s
        .spec
        .gateway
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        let Ok(ip) = g.parse::<IpAddr>() else {
            e.add(
                k,
                name,
                "spec.gateway",
                format!("{:?} is not an IP address", truncated(g)),
            );
            continue;
        };
        if gateways.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            e.add(
                k,
                name,
                "spec.gateway",
                format!(
                    "{ip} is a second {} gateway; give at most one per family",
                    family(ip)
                ),
            );
            continue;
        }
        gateways.push(ip);
        match nets.iter().find(|n| n.contains(ip)) {
            None => {
                let cidrs = s.spec.cidrs.join(", ");
                e.add(k, name, "spec.gateway", format!("{ip} is outside {cidrs}"));
            }
            Some(n) => {
                if let Some(what) = special(n, ip) {
                    e.add(
                        k,
                        name,
                        "spec.gateway",
                        format!("{ip} is {what}, which cannot be a gateway"),
                    );
                }
            }
        }
    }
    for (i, x) in s.spec.exclude_ips.iter().enumerate() {
        // Malformed entries are reported by the pool below.
        if let Ok((a, _)) = crate::ipam::parse_range(x) {
            if !nets.iter().any(|n| n.is_ipv4() == a.is_ipv4()) && !nets.is_empty() {
                e.add(
                    k,
                    name,
                    format!("spec.excludeIps[{i}]"),
                    format!(
                        "{:?} is {} and the Subnet has no {} CIDR",
                        truncated(x),
                        family(a),
                        family(a)
                    ),
                );
            }
        }
    }
    let addrs = SubnetAddrs::of(s);
    for (n, gw) in addrs.nets.iter().zip(&addrs.gateways) {
        if !nets.contains(n) {
            continue; // reported above
        }
        let excl: Vec<&str> = s.spec.exclude_ips.iter().map(String::as_str).collect();
        match Pool::new(*n, Some(*gw), &excl) {
            Err(crate::ipam::IpamError::OutsideCidr { .. }) => {} // the gateway: reported above
            Err(err) => e.add(k, name, "spec.excludeIps", err.to_string()),
            Ok(p) if p.available() == 0 => e.add(
                k,
                name,
                "spec.excludeIps",
                format!("no address of {n} is left to give out"),
            ),
            Ok(_) => {}
        }
    }
    if let Some(x) = &s.spec.external {
        if let Err(m) = check_text(&x.physical_network) {
            e.add(k, name, "spec.external.physicalNetwork", m);
        } else if x.physical_network.contains([',', ':']) {
            e.add(
                k,
                name,
                "spec.external.physicalNetwork",
                format!(
                    "{:?} contains ',' or ':', which ovn-bridge-mappings uses as separators",
                    truncated(&x.physical_network)
                ),
            );
        }
        if let Some(v) = x.vlan.filter(|v| *v > 4095) {
            e.add(
                k,
                name,
                "spec.external.vlan",
                format!("{v} is outside 0..=4095"),
            );
        }
    }
    nets
}

/// Overlapping CIDRs inside one VPC (across VPCs they are the point of VPCs).
fn check_overlaps(
    e: &mut Errors,
    subnets: &BTreeMap<String, &Subnet>,
    parsed: &BTreeMap<String, Vec<IpNetwork>>,
) {
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
}

/// The OVN port names translation builds from names (`<vpc>-<subnet>` router ports,
/// `<subnet>-<vpc>` switch ports, `<external>-localnet`) are unique in the Northbound: VPC
/// `a` with Subnet `b-c` and VPC `a-b` with Subnet `c` would both need router port `a-b-c`.
fn check_port_names(e: &mut Errors, objects: &[Object], subnets: &BTreeMap<String, &Subnet>) {
    let mut router_ports: BTreeMap<String, String> = BTreeMap::new();
    let mut switch_ports: BTreeMap<String, String> = BTreeMap::new();
    let mut claim =
        |e: &mut Errors, table: &str, port: String, kind: &'static str, name: &str, who: String| {
            let ports = if table == "router" {
                &mut router_ports
            } else {
                &mut switch_ports
            };
            if let Some(other) = ports.get(&port) {
                if *other != who {
                    e.add(
                        kind,
                        name,
                        "metadata.name",
                        format!(
                        "its {table} port would be named {port}, as that of {other}; rename one"
                    ),
                    );
                }
            } else {
                ports.insert(port, who);
            }
        };
    for (name, s) in subnets {
        let who = format!("Subnet {name}");
        if s.spec.external.is_some() {
            claim(e, "switch", format!("{name}-localnet"), "Subnet", name, who);
        } else {
            let vpc = &s.spec.vpc;
            claim(
                e,
                "router",
                format!("{vpc}-{name}"),
                "Subnet",
                name,
                who.clone(),
            );
            claim(e, "switch", format!("{name}-{vpc}"), "Subnet", name, who);
        }
    }
    for o in objects {
        let Object::Vpc(v) = o else { continue };
        let Some(x) = &v.spec.external_subnet else {
            continue;
        };
        if subnets.get(x).is_none_or(|s| s.spec.external.is_none()) {
            continue;
        }
        let vpc = v.name_any();
        let who = format!("the gateway of VPC {vpc}");
        claim(e, "router", format!("{vpc}-{x}"), "Vpc", &vpc, who.clone());
        claim(e, "switch", format!("{x}-{vpc}"), "Vpc", &vpc, who);
    }
}

fn check_vpc(e: &mut Errors, v: &Vpc, is_external: &dyn Fn(&str) -> bool) {
    let name = v.name_any();
    let k = "Vpc";
    for (i, ns) in v.spec.namespaces.iter().enumerate() {
        if let Err(m) = NameRule::Label.check(ns) {
            e.add(k, &name, format!("spec.namespaces[{i}]"), m);
        }
    }
    if let Some(x) = &v.spec.external_subnet {
        if !is_external(x) {
            e.add(
                k,
                &name,
                "spec.externalSubnet",
                format!(
                    "{:?} is not an external Subnet (one with spec.external)",
                    truncated(x)
                ),
            );
        }
    }
    let mut routes: BTreeSet<(bool, IpNetwork)> = BTreeSet::new();
    for (i, r) in v.spec.static_routes.iter().enumerate() {
        let cidr = match r.cidr.parse::<IpNetwork>() {
            Ok(n) if n.network() != n.ip() => {
                e.add(
                    k,
                    &name,
                    format!("spec.staticRoutes[{i}].cidr"),
                    format!(
                        "{} has host bits set (did you mean {}/{}?)",
                        r.cidr,
                        n.network(),
                        n.prefix()
                    ),
                );
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                e.add(
                    k,
                    &name,
                    format!("spec.staticRoutes[{i}].cidr"),
                    format!("{:?} is not a CIDR", truncated(&r.cidr)),
                );
                None
            }
        };
        match (cidr, r.next_hop.parse::<IpAddr>()) {
            (_, Err(_)) => e.add(
                k,
                &name,
                format!("spec.staticRoutes[{i}].nextHop"),
                format!("{:?} is not an IP address", truncated(&r.next_hop)),
            ),
            (Some(c), Ok(h)) if c.is_ipv4() != h.is_ipv4() => e.add(
                k,
                &name,
                format!("spec.staticRoutes[{i}].nextHop"),
                format!(
                    "{h} is {} but the route's cidr {c} is {}",
                    family(h),
                    net_family(&c)
                ),
            ),
            _ => {}
        }
        if let Some(c) = cidr {
            if !routes.insert((r.policy == RoutePolicy::Src, c)) {
                e.add(
                    k,
                    &name,
                    format!("spec.staticRoutes[{i}].cidr"),
                    format!("a second route for {c} with the same policy"),
                );
            }
        }
    }
    let mut policies: BTreeSet<(i64, &str)> = BTreeSet::new();
    for (i, p) in v.spec.policy_routes.iter().enumerate() {
        if !(0..=32767).contains(&p.priority) {
            e.add(
                k,
                &name,
                format!("spec.policyRoutes[{i}].priority"),
                format!("{} is outside 0..=32767", p.priority),
            );
        }
        if let Err(m) = check_match(&p.match_) {
            e.add(k, &name, format!("spec.policyRoutes[{i}].match"), m);
        } else if !policies.insert((p.priority, p.match_.as_str())) {
            e.add(
                k,
                &name,
                format!("spec.policyRoutes[{i}]"),
                format!(
                    "a second policy with priority {} and this match",
                    p.priority
                ),
            );
        }
        match (&p.action, &p.next_hop) {
            (PolicyAction::Reroute, None) => e.add(
                k,
                &name,
                format!("spec.policyRoutes[{i}].nextHop"),
                "reroute needs a nextHop",
            ),
            (_, Some(h)) if h.parse::<IpAddr>().is_err() => e.add(
                k,
                &name,
                format!("spec.policyRoutes[{i}].nextHop"),
                format!("{:?} is not an IP address", truncated(h)),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_matches_must_be_one_balanced_line() {
        for ok in [
            "ip4.src == 10.0.1.66",
            "ip4.dst == {10.0.0.1, 10.0.0.2} && (tcp.dst == 80 || udp)",
            "inport == \"a(b\"",
            "inport == \"q\\\"uote\"",
            "ip4\t&& tcp",
        ] {
            assert_eq!(check_match(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("inport == \"a", "not closed"),
            ("(ip4", "'(' is not closed"),
            ("ip4)", "unbalanced ')'"),
            ("{1, 2)", "unbalanced ')'"),
            ("ip4\n&& tcp", "control character '\\n'"),
            ("ip4\0", "control character '\\0'"),
        ] {
            let e = check_match(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_bad_name_is_shown_quoted_and_on_one_line() {
        let e = ValidationError {
            kind: "Subnet",
            name: "a\nb".into(),
            field: "metadata.name".into(),
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "Subnet/\"a\\nb\": metadata.name: m");
    }
}
