//! The ownership convention of ovn-vpc's rows (DESIGN.md): every row ovn-vpc creates carries
//! `external_ids:ovn-vpc/owner` = `Kind/name` (cluster-scoped objects) or `Kind/namespace/name`
//! (namespaced ones), and `external_ids:ovn-vpc/key`, unique among our rows of its table. Rows
//! without the owner tag are never modified or deleted. The generic `ovn-nb` crate takes this
//! as an [`ovn_nb::Identity`].

/// The `external_ids` key naming the object a row belongs to.
pub const OWNER_KEY: &str = "ovn-vpc/owner";

/// The `external_ids` key identifying a row of ours within its table.
pub const KEY_KEY: &str = "ovn-vpc/key";

/// ovn-vpc's identity for the diff, the effects analysis and transactions built with
/// `ovn_nb::ops`.
pub const IDENTITY: ovn_nb::Identity = ovn_nb::Identity::new(OWNER_KEY, KEY_KEY, "ovn-vpc/");
