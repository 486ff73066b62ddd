//! The node shim's ipsets: pod CIDRs as `hash:net` sets, so the node rules stay a handful of
//! rules however many subnets there are (a set lookup is a hash probe; 1,000 CIDRs as rules
//! are 1,000 linear matches per packet and 1,000 lines for every iptables-save).
//!
//! Same shape as the iptables engine: `ipset save` parsed as the actual state, a plan computed
//! by plain functions ([`plan_sets`], [`plan_set_removal`]), one `ipset restore -exist`
//! transaction to write it. Only sets named here are ever touched. ipsets are per network
//! namespace and independent of the iptables backend: `-m set` works with legacy and nft alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ipnetwork::IpNetwork;

use super::iptables::{run_tool, Family, IptablesError};

/// The only set type we create.
pub const SET_TYPE: &str = "hash:net";

/// One set of ours: a name, a family and its CIDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSet {
    /// The set's name (at most 31 bytes).
    pub name: String,
    /// `inet` or `inet6`.
    pub family: Family,
    /// Members as `ipset save` prints them (network address, `/len` unless a host route).
    pub members: BTreeSet<String>,
}

impl DesiredSet {
    /// A set of these CIDRs; host bits are cleared, and CIDRs of the other family are an error.
    pub fn new(
        name: &str,
        family: Family,
        cidrs: impl IntoIterator<Item = IpNetwork>,
    ) -> Result<DesiredSet, String> {
        let mut members = BTreeSet::new();
        for c in cidrs {
            if family_of(&c) != family {
                return Err(format!("{c} is not an {} CIDR (set {name})", inet(family)));
            }
            if c.prefix() == 0 {
                // hash:net refuses /0; a default route is not a pod CIDR anyway.
                return Err(format!("{c}: a /0 cannot be a member of set {name}"));
            }
            members.insert(render(&c));
        }
        Ok(DesiredSet {
            name: name.to_string(),
            family,
            members,
        })
    }
}

/// One set as `ipset save` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSet {
    /// Its type (`hash:net`).
    pub kind: String,
    /// Its family (`inet`, `inet6`), empty when not printed.
    pub family: String,
    /// Its members, normalized as [`DesiredSet::members`].
    pub members: BTreeSet<String>,
}

fn family_of(c: &IpNetwork) -> Family {
    match c {
        IpNetwork::V4(_) => Family::V4,
        IpNetwork::V6(_) => Family::V6,
    }
}

fn inet(f: Family) -> &'static str {
    match f {
        Family::V4 => "inet",
        Family::V6 => "inet6",
    }
}

/// `10.16.0.0/16`, `fd00::/64`, and a host route without its length, as ipset prints them.
fn render(c: &IpNetwork) -> String {
    let net = IpNetwork::new(c.network(), c.prefix()).unwrap_or(*c);
    let max = match c {
        IpNetwork::V4(_) => 32,
        IpNetwork::V6(_) => 128,
    };
    if net.prefix() == max {
        net.ip().to_string()
    } else {
        format!("{}/{}", net.ip(), net.prefix())
    }
}

fn normalize(member: &str) -> String {
    match member.parse::<IpNetwork>() {
        Ok(c) => render(&c),
        Err(_) => member.to_string(),
    }
}

/// Parses `ipset save` output (every set of the namespace) into the sets named in `wanted`.
pub fn parse_ipset_save(text: &str, wanted: &[&str]) -> BTreeMap<String, SavedSet> {
    let mut out: BTreeMap<String, SavedSet> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("create"), Some(name)) if wanted.contains(&name) => {
                let kind = words.next().unwrap_or_default().to_string();
                let mut family = String::new();
                while let Some(w) = words.next() {
                    if w == "family" {
                        family = words.next().unwrap_or_default().to_string();
                    }
                }
                out.insert(
                    name.to_string(),
                    SavedSet {
                        kind,
                        family,
                        members: BTreeSet::new(),
                    },
                );
            }
            (Some("add"), Some(name)) => {
                if let (Some(set), Some(m)) = (out.get_mut(name), words.next()) {
                    set.members.insert(normalize(m));
                }
            }
            _ => {}
        }
    }
    out
}

/// Parses `ipset list -t` (headers only): the number of entries of every set, by name.
pub fn parse_ipset_counts(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut name: Option<&str> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Name: ") {
            name = Some(n.trim());
        } else if let (Some(n), Some(c)) = (name, line.strip_prefix("Number of entries: ")) {
            if let Ok(c) = c.trim().parse() {
                out.insert(n.to_string(), c);
            }
        }
    }
    out
}

/// The `ipset restore -exist` input that makes `actual` hold `desired`, or `None` when it
/// already does. A set of ours with another type or family is an error: it can be neither
/// swapped (ipset refuses to swap sets of different types) nor destroyed while a rule uses it.
pub fn plan_sets(
    desired: &[DesiredSet],
    actual: &BTreeMap<String, SavedSet>,
) -> Result<Option<String>, String> {
    let mut out = String::new();
    for d in desired {
        let have = match actual.get(&d.name) {
            Some(a) => {
                if a.kind != SET_TYPE || a.family != inet(d.family) {
                    return Err(format!(
                        "ipset {} exists as {} family {}; want {SET_TYPE} family {} (destroy it by hand)",
                        d.name, a.kind, a.family, inet(d.family)
                    ));
                }
                &a.members
            }
            None => {
                let _ = writeln!(
                    out,
                    "create {} {SET_TYPE} family {}",
                    d.name,
                    inet(d.family)
                );
                &BTreeSet::new()
            }
        };
        for m in have.difference(&d.members) {
            let _ = writeln!(out, "del {} {m}", d.name);
        }
        for m in d.members.difference(have) {
            let _ = writeln!(out, "add {} {m}", d.name);
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The `ipset restore -exist` input that destroys those of `names` that exist, or `None`.
/// Run after the rules that use them are gone (a set in use cannot be destroyed).
pub fn plan_set_removal(names: &[&str], actual: &BTreeMap<String, SavedSet>) -> Option<String> {
    let out: String = names
        .iter()
        .filter(|n| actual.contains_key(**n))
        .map(|n| format!("destroy {n}\n"))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// The `ipset` tool, in the current network namespace or a named one.
#[derive(Debug, Clone, Default)]
pub struct Ipset {
    netns: Option<String>,
}

impl Ipset {
    /// The host's (this namespace's) ipsets.
    pub fn new() -> Ipset {
        Ipset::default()
    }

    /// The ipsets of network namespace `name` (`ip netns exec NAME ipset ...`).
    pub fn in_netns(mut self, name: &str) -> Ipset {
        self.netns = Some(name.to_string());
        self
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
        run_tool("ipset", args, self.netns.as_deref(), None, stdin)
    }

    /// Reads the sets named in `names` (`ipset save`).
    pub fn save(&self, names: &[&str]) -> Result<BTreeMap<String, SavedSet>, IptablesError> {
        Ok(parse_ipset_save(&self.run(&["save"], None)?, names))
    }

    fn restore(&self, input: &str) -> Result<(), IptablesError> {
        tracing::debug!(%input, "ipset restore");
        self.run(&["restore", "-exist"], Some(input)).map(|_| ())
    }

    /// Makes our sets hold exactly their members; returns the transactions written (0 or 1).
    /// `-exist` makes a member another writer added or removed meanwhile harmless.
    pub fn reconcile(&self, desired: &[DesiredSet]) -> Result<u32, IptablesError> {
        let names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
        let actual = self.save(&names)?;
        match plan_sets(desired, &actual).map_err(|e| IptablesError::Tool {
            command: "ipset reconcile".into(),
            stderr: e,
        })? {
            None => Ok(0),
            Some(plan) => self.restore(&plan).map(|()| 1),
        }
    }

    /// Whether each of our sets exists with as many entries as desired, read from the headers
    /// alone (`ipset list -t`, one call, no members): the canary poll's view of the sets.
    pub fn counts_intact(&self, desired: &[DesiredSet]) -> bool {
        self.run(&["list", "-t"], None).is_ok_and(|text| {
            let counts = parse_ipset_counts(&text);
            desired
                .iter()
                .all(|d| counts.get(&d.name) == Some(&d.members.len()))
        })
    }

    /// Problems with our sets (missing, or members differ): empty when they are as desired.
    pub fn check(&self, desired: &[DesiredSet]) -> Result<Vec<String>, IptablesError> {
        let names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
        let actual = self.save(&names)?;
        Ok(desired
            .iter()
            .filter_map(|d| match actual.get(&d.name) {
                None => Some(format!("ipset {} missing", d.name)),
                Some(a) if a.members != d.members => Some(format!(
                    "ipset {} holds {} member(s), want {}",
                    d.name,
                    a.members.len(),
                    d.members.len()
                )),
                Some(_) => None,
            })
            .collect())
    }

    /// Destroys those of our sets that exist; returns the transactions written (0 or 1).
    pub fn remove(&self, names: &[&str]) -> Result<u32, IptablesError> {
        match plan_set_removal(names, &self.save(names)?) {
            None => Ok(0),
            Some(plan) => self.restore(&plan).map(|()| 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "create cali40all-ipam hash:net family inet hashsize 1024 maxelem 1048576\nadd cali40all-ipam 192.168.0.0/16\ncreate ovnvpc-nat4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x8dddd29d\nadd ovnvpc-nat4 10.16.0.0/16\nadd ovnvpc-nat4 10.17.0.5\ncreate ovnvpc-nat6 hash:net family inet6 hashsize 1024 maxelem 65536\nadd ovnvpc-nat6 fd00:10:16::/64\n";

    fn cidrs(s: &[&str]) -> Vec<IpNetwork> {
        s.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn save_is_parsed_for_our_sets_only() {
        let sets = parse_ipset_save(SAVE, &["ovnvpc-nat4", "ovnvpc-nat6", "ovnvpc-x"]);
        assert_eq!(sets.len(), 2);
        let v4 = &sets["ovnvpc-nat4"];
        assert_eq!((v4.kind.as_str(), v4.family.as_str()), ("hash:net", "inet"));
        assert_eq!(
            v4.members.iter().collect::<Vec<_>>(),
            ["10.16.0.0/16", "10.17.0.5"]
        );
        assert_eq!(sets["ovnvpc-nat6"].family, "inet6");
    }

    #[test]
    fn header_counts_are_parsed() {
        let text = "Name: a\nType: hash:net\nNumber of entries: 1\nName: ovnvpc-nat4\nType: hash:net\nReferences: 1\nNumber of entries: 1000\n";
        let c = parse_ipset_counts(text);
        assert_eq!(c.get("a"), Some(&1));
        assert_eq!(c.get("ovnvpc-nat4"), Some(&1000));
    }

    #[test]
    fn members_are_normalized_like_ipset_prints_them() {
        let d = DesiredSet::new(
            "s",
            Family::V4,
            cidrs(&["10.16.3.4/16", "10.17.0.5/32", "10.18.0.0/24"]),
        )
        .unwrap();
        assert_eq!(
            d.members.iter().collect::<Vec<_>>(),
            ["10.16.0.0/16", "10.17.0.5", "10.18.0.0/24"]
        );
        let d6 = DesiredSet::new("s6", Family::V6, cidrs(&["FD00:10:16:0:0::1/64"])).unwrap();
        assert_eq!(d6.members.iter().collect::<Vec<_>>(), ["fd00:10:16::/64"]);
        assert!(DesiredSet::new("s", Family::V4, cidrs(&["fd00::/64"])).is_err());
        assert!(DesiredSet::new("s", Family::V4, cidrs(&["0.0.0.0/0"])).is_err());
    }

    #[test]
    fn plan_creates_adds_and_deletes_only_the_difference() {
        let actual = parse_ipset_save(SAVE, &["ovnvpc-nat4", "ovnvpc-subnets4"]);
        let desired = [
            DesiredSet::new(
                "ovnvpc-nat4",
                Family::V4,
                cidrs(&["10.16.0.0/16", "10.20.0.0/16"]),
            )
            .unwrap(),
            DesiredSet::new("ovnvpc-subnets4", Family::V4, cidrs(&["10.16.0.0/16"])).unwrap(),
        ];
        let plan = plan_sets(&desired, &actual).unwrap().unwrap();
        assert_eq!(
            plan,
            "del ovnvpc-nat4 10.17.0.5\nadd ovnvpc-nat4 10.20.0.0/16\n\
             create ovnvpc-subnets4 hash:net family inet\nadd ovnvpc-subnets4 10.16.0.0/16\n"
        );
        assert!(!plan.contains("cali"));
    }

    #[test]
    fn equal_sets_plan_nothing() {
        let actual = parse_ipset_save(SAVE, &["ovnvpc-nat4"]);
        let d = DesiredSet::new(
            "ovnvpc-nat4",
            Family::V4,
            cidrs(&["10.16.0.0/16", "10.17.0.5/32"]),
        )
        .unwrap();
        assert_eq!(plan_sets(&[d], &actual), Ok(None));
    }

    #[test]
    fn a_set_of_ours_with_another_type_is_an_error() {
        let actual = parse_ipset_save(
            "create ovnvpc-nat4 hash:ip family inet hashsize 1024\n",
            &["ovnvpc-nat4"],
        );
        let d = DesiredSet::new("ovnvpc-nat4", Family::V4, []).unwrap();
        let e = plan_sets(&[d], &actual).unwrap_err();
        assert!(e.contains("hash:ip"), "{e}");
    }

    #[test]
    fn removal_destroys_only_existing_sets_of_ours() {
        let actual = parse_ipset_save(SAVE, &["ovnvpc-nat4", "ovnvpc-subnets4"]);
        assert_eq!(
            plan_set_removal(&["ovnvpc-nat4", "ovnvpc-subnets4"], &actual),
            Some("destroy ovnvpc-nat4\n".into())
        );
        assert_eq!(plan_set_removal(&["ovnvpc-x"], &actual), None);
    }
}
