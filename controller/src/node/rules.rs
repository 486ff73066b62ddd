//! The node rules, derived from Subnets (no I/O): what `ovn-vpc node` keeps in place.
//!
//! Only the default VPC is routed through the node (custom VPCs reach the outside through
//! their own NAT gateways in OVN), so only its subnets count; external (localnet) subnets hold
//! no pods and are left out. Per family:
//!
//! - ipset `ovnvpc-subnets4|6`: every pod CIDR of the default VPC; `ovnvpc-nat4|6`: those of
//!   subnets with `natOutgoing`.
//! - nat `OVN-PREROUTING`: packets that enter from the overlay port (`ovn0`, the node's port on
//!   the join switch) from a pod CIDR to an address of this node (NodePort, hostPort) get mark
//!   `0x4000/0x4000`, kube-proxy's masquerade mark, so the reply comes back through the overlay
//!   (Kube-OVN's `OVN-PREROUTING` rule, without its services set, which a Subnet cannot tell).
//! - nat `OVN-POSTROUTING`: masquerade from a `natOutgoing` pod CIDR to anything that is not a
//!   pod CIDR — traffic leaving the node, never pod-to-pod.
//! - filter `OVN-FORWARD`: accept from and to pod CIDRs (a host whose FORWARD policy is DROP,
//!   as Docker leaves it, would drop forwarded pod traffic otherwise).
//!
//! The rules name sets, so their count does not grow with the number of subnets.

use ipnetwork::IpNetwork;
use kube::ResourceExt as _;

use super::ipset::DesiredSet;
use super::iptables::{DesiredTable, Family};
use crate::api::Subnet;

/// The overlay port of the node on the join switch.
pub const OVERLAY_PORT: &str = "ovn0";
/// kube-proxy's masquerade mark (`KUBE-MARK-MASQ`), set on overlay traffic to the node.
pub const MASQUERADE_MARK: &str = "0x4000/0x4000";

/// Everything of ours on a node: the ipsets and, per family, the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRules {
    /// The sets, IPv4 and IPv6 (created before and destroyed after the rules using them).
    pub sets: Vec<DesiredSet>,
    /// The IPv4 tables (`nat`, `filter`).
    pub v4: Vec<DesiredTable>,
    /// The IPv6 tables.
    pub v6: Vec<DesiredTable>,
}

/// The pod-CIDR set of a family.
pub fn subnets_set(family: Family) -> &'static str {
    match family {
        Family::V4 => "ovnvpc-subnets4",
        Family::V6 => "ovnvpc-subnets6",
    }
}

/// The natOutgoing set of a family.
pub fn nat_set(family: Family) -> &'static str {
    match family {
        Family::V4 => "ovnvpc-nat4",
        Family::V6 => "ovnvpc-nat6",
    }
}

impl NodeRules {
    /// The rules for these Subnets. A CIDR that does not parse is an error naming the subnet.
    pub fn from_subnets<'a>(
        subnets: impl IntoIterator<Item = &'a Subnet>,
    ) -> Result<NodeRules, String> {
        let mut pods: Vec<IpNetwork> = Vec::new();
        let mut nat: Vec<IpNetwork> = Vec::new();
        for s in subnets {
            let vpc = s.spec.vpc.as_str();
            if !(vpc.is_empty() || vpc == "default") || s.spec.external.is_some() {
                continue;
            }
            for c in &s.spec.cidrs {
                let cidr: IpNetwork = c
                    .trim()
                    .parse()
                    .map_err(|e| format!("Subnet/{}: CIDR {c:?}: {e}", s.name_any()))?;
                pods.push(cidr);
                if s.spec.nat_outgoing {
                    nat.push(cidr);
                }
            }
        }
        let mut sets = Vec::new();
        for f in [Family::V4, Family::V6] {
            let of = |v: &[IpNetwork]| -> Vec<IpNetwork> {
                v.iter()
                    .copied()
                    .filter(|c| c.is_ipv4() == (f == Family::V4))
                    .collect()
            };
            sets.push(DesiredSet::new(subnets_set(f), f, of(&pods))?);
            sets.push(DesiredSet::new(nat_set(f), f, of(&nat))?);
        }
        Ok(NodeRules {
            sets,
            v4: tables(Family::V4),
            v6: tables(Family::V6),
        })
    }

    /// The tables of one family.
    pub fn tables(&self, family: Family) -> &[DesiredTable] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The names of our sets.
    pub fn set_names(&self) -> Vec<&str> {
        self.sets.iter().map(|s| s.name.as_str()).collect()
    }
}

/// The shape the node rules avoid, for benchmarks and tests that compare with it: the nat and
/// filter tables with one masquerade and two FORWARD accepts per CIDR (3×N rules).
pub fn per_cidr_tables(cidrs: &[&str]) -> Vec<DesiredTable> {
    let masq: Vec<String> = cidrs
        .iter()
        .map(|c| format!("-s {c} ! -d {c} -j MASQUERADE"))
        .collect();
    let fwd: Vec<String> = cidrs
        .iter()
        .flat_map(|c| [format!("-s {c} -j ACCEPT"), format!("-d {c} -j ACCEPT")])
        .collect();
    let masq: Vec<&str> = masq.iter().map(String::as_str).collect();
    let fwd: Vec<&str> = fwd.iter().map(String::as_str).collect();
    vec![
        DesiredTable::node_nat(&[], &masq),
        DesiredTable::node_filter(&fwd),
    ]
}

fn tables(f: Family) -> Vec<DesiredTable> {
    let pods = subnets_set(f);
    let nat = nat_set(f);
    let mark = format!(
        "-i {OVERLAY_PORT} -m set --match-set {pods} src -m addrtype --dst-type LOCAL -j MARK --set-xmark {MASQUERADE_MARK}"
    );
    let masquerade =
        format!("-m set --match-set {nat} src -m set ! --match-set {pods} dst -j MASQUERADE");
    let from_pods = format!("-m set --match-set {pods} src -j ACCEPT");
    let to_pods = format!("-m set --match-set {pods} dst -j ACCEPT");
    vec![
        DesiredTable::node_nat(&[&mark], &[&masquerade]),
        DesiredTable::node_filter(&[&from_pods, &to_pods]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(name: &str, yaml: &str) -> Subnet {
        Subnet::new(name, serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn default_vpc_subnets_fill_the_sets() {
        let subnets = [
            subnet(
                "a",
                "cidrs: [10.16.0.0/16, 'fd00:10:16::/64']\nnatOutgoing: true",
            ),
            subnet("b", "vpc: default\ncidrs: [10.17.0.0/16]"),
            subnet("c", "vpc: vpc-a\ncidrs: [10.16.0.0/24]\nnatOutgoing: true"),
            subnet(
                "ext",
                "cidrs: [172.20.0.0/24]\nexternal: {physicalNetwork: ext}\nnatOutgoing: true",
            ),
        ];
        let r = NodeRules::from_subnets(&subnets).unwrap();
        let members = |name: &str| -> Vec<String> {
            r.sets
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .members
                .iter()
                .cloned()
                .collect()
        };
        assert_eq!(members("ovnvpc-subnets4"), ["10.16.0.0/16", "10.17.0.0/16"]);
        assert_eq!(members("ovnvpc-nat4"), ["10.16.0.0/16"]);
        assert_eq!(members("ovnvpc-subnets6"), ["fd00:10:16::/64"]);
        assert_eq!(members("ovnvpc-nat6"), ["fd00:10:16::/64"]);
    }

    #[test]
    fn rules_name_sets_so_their_count_is_fixed() {
        let many: Vec<Subnet> = (0..1000)
            .map(|i| {
                subnet(
                    &format!("s{i}"),
                    &format!(
                        "cidrs: [10.{}.{}.0/24]\nnatOutgoing: true",
                        i / 256,
                        i % 256
                    ),
                )
            })
            .collect();
        let r = NodeRules::from_subnets(&many).unwrap();
        let none = NodeRules::from_subnets(&[]).unwrap();
        assert_eq!(r.v4, none.v4, "the rules do not depend on the subnets");
        assert_eq!(r.sets[0].members.len(), 1000);
        let nat = &r.v4[0];
        assert_eq!(nat.name, "nat");
        let post = &nat.chains[1];
        assert_eq!(post.name, "OVN-POSTROUTING");
        assert_eq!(
            post.rules[0].spec,
            "-m set --match-set ovnvpc-nat4 src -m set ! --match-set ovnvpc-subnets4 dst -j MASQUERADE"
        );
        assert!(nat.chains[0].rules[0].spec.contains("-i ovn0"));
        assert!(r.v6[1].chains[0].rules[0].spec.contains("ovnvpc-subnets6"));
        assert_eq!(r.v4[1].name, "filter");
    }

    #[test]
    fn a_bad_cidr_names_the_subnet() {
        let e = NodeRules::from_subnets(&[subnet("bad", "cidrs: [10.16.0.0/33]")]).unwrap_err();
        assert!(e.contains("Subnet/bad"), "{e}");
    }
}
