//! The node shim (`ovn-vpc node`): the host iptables rules the overlay needs, kept in place
//! beside Calico, kube-proxy and Cilium without fighting them (shared/DESIGN.md, "The node
//! shim"): the iptables engine, the ipsets, the rules derived from Subnets, the refresh loop
//! with its canary poll, the health endpoints, and [`chassis::configure`] (the chassis'
//! `ovn-remote`, encapsulation and bridge mappings).
//!
//! ```no_run
//! use ovn_vpc::node::{Backend, DesiredTable, Family, Iptables};
//! let nat = DesiredTable::node_nat(&[], &["-s 10.16.0.0/16 ! -d 10.16.0.0/16 -j MASQUERADE"]);
//! let ipt = Iptables::new(Backend::Nft, Family::V4);
//! let done = ipt.reconcile(&nat)?;
//! println!("{} write(s)", done.writes);
//! # Ok::<(), ovn_vpc::node::IptablesError>(())
//! ```

pub mod chassis;
mod duration;
mod health;
mod ipset;
mod iptables;
mod refresh;
mod rules;

pub use duration::parse_duration;
pub use health::{serve as serve_health, Probe};
pub use ipset::{
    parse_ipset_counts, parse_ipset_save, plan_set_removal, plan_sets, DesiredSet, Ipset, SavedSet,
    SET_TYPE,
};
pub use refresh::{Refresh, RefreshStats, DEFAULT_CANARY_INTERVAL, DEFAULT_REFRESH_INTERVAL};
pub use rules::{nat_set, per_cidr_tables, subnets_set, NodeRules, MASQUERADE_MARK, OVERLAY_PORT};

pub use iptables::{
    parse_save, plan_removal, plan_table, Backend, DesiredChain, DesiredTable, Family, Iptables,
    IptablesError, Jump, Reconciled, Rule, SavedChain, SavedRule, SavedTable, KUBE_SERVICES,
    TAG_PREFIX,
};

/// The refresh of everything in `rules` — the ipsets and both families' tables — through
/// `backend`, in this network namespace or in `netns` (`ip netns exec`, for tests).
pub fn node_refresh(rules: &NodeRules, backend: Backend, netns: Option<&str>) -> Refresh {
    let ipt = |f: Family| {
        let i = Iptables::new(backend, f);
        match netns {
            Some(ns) => i.in_netns(ns),
            None => i,
        }
    };
    let ipset = match netns {
        Some(ns) => Ipset::new().in_netns(ns),
        None => Ipset::new(),
    };
    Refresh::new(ipt(Family::V4), rules.v4.clone())
        .family(ipt(Family::V6), rules.v6.clone())
        .ipsets(ipset, rules.sets.clone())
}
