//! The node shim (`ovn-vpc node`): the host iptables rules the overlay needs, kept in place
//! beside Calico, kube-proxy and Cilium without fighting them (shared/DESIGN.md, "The node
//! shim"). So far: the iptables engine and its periodic refresh, and [`chassis::configure`]
//! (the chassis' `ovn-remote`, encapsulation and bridge mappings).
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
mod iptables;
mod refresh;

pub use duration::parse_duration;
pub use refresh::{Refresh, RefreshStats, DEFAULT_REFRESH_INTERVAL};

pub use iptables::{
    parse_save, plan_removal, plan_table, Backend, DesiredChain, DesiredTable, Family, Iptables,
    IptablesError, Jump, Reconciled, Rule, SavedChain, SavedRule, SavedTable, KUBE_SERVICES,
    TAG_PREFIX,
};
