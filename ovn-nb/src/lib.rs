//! Typed OVN model generated from `schemas/`: one Rust type per table of `OVN_Northbound`
//! ([`nb`]), `Open_vSwitch` ([`vswitch`]) and `_Server` ([`server`]), with conversions to and
//! from OVSDB rows ([`Table`]).
//!
//! ```
//! use ovn_nb::{nb::LogicalSwitch, Table};
//! let sw = LogicalSwitch { name: "sw0".into(), ..Default::default() };
//! let row = sw.to_row();
//! assert_eq!(LogicalSwitch::from_row(&row).unwrap(), sw);
//! assert_eq!(LogicalSwitch::TABLE, "Logical_Switch");
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod diff;
pub mod effects;
mod generated;
mod identity;
mod model;
pub mod ops;

pub use generated::{nb, server, vswitch};
pub use identity::Identity;
pub use model::{read, AtomValue, ColumnEnum, ColumnValue, ModelError, Ref, RefTarget, Table};
