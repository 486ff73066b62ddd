//! The iptables engine of the node shim, after Calico Felix's `iptables/table.go`: desired
//! chains and rules per table, `iptables-save` parsed as the actual state, a plan computed by
//! plain functions ([`plan_table`]), and one `iptables-restore --noflush --wait` transaction per
//! table ([`Iptables::reconcile`]).
//!
//! Rules of the game (shared/DESIGN.md, "The node shim"): every rule of ours carries a comment
//! tag (`ovn-vpc:<hash>`) and is identified by it, never by a position; chains we own are
//! rewritten wholesale when their content differs; in built-in chains we only delete by full
//! rule spec, remove duplicates of our jump, and keep the jump above kube-proxy's
//! `KUBE-SERVICES` jump when that exists (anywhere otherwise) without ever moving a jump that is
//! already placed well; foreign rules are never touched; nothing is written when actual ==
//! desired.

mod backend;
mod exec;
mod plan;
mod restore;
mod save;
#[cfg(test)]
mod sim;

pub use backend::{Backend, Family};
pub(crate) use exec::run_tool;
pub use plan::{plan_removal, plan_table, DesiredChain, DesiredTable, Jump, Rule};
pub use restore::{Iptables, Reconciled};
pub use save::{parse_save, SavedChain, SavedRule, SavedTable};

/// The prefix of the comment tag every rule of ours carries.
pub const TAG_PREFIX: &str = "ovn-vpc:";

/// The chain kube-proxy jumps to from PREROUTING, OUTPUT and FORWARD; our jumps go above it.
pub const KUBE_SERVICES: &str = "KUBE-SERVICES";

/// Why an iptables read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// `iptables-save` printed a line this parser does not understand.
    #[error("iptables-save line {line} ({why}): {text}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// iptables-nft-save cannot show the table (it was made by `nft` or holds rules it cannot
    /// express): writing into it blind could break the rules we cannot see.
    #[error("table {table} is not readable by this iptables backend: {message}")]
    Incompatible {
        /// The table.
        table: String,
        /// What iptables-save said.
        message: String,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program exited non-zero.
    #[error("{command} failed: {stderr}")]
    Tool {
        /// The command line.
        command: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
}

/// The tag of a rule: [`TAG_PREFIX`] and a 64-bit FNV-1a hash of its parts (each followed by a
/// NUL), in hex. Stable across builds and Rust versions (unlike `DefaultHasher`), so a new
/// release recognises the rules of the previous one.
pub(crate) fn tag_of(parts: &[&str]) -> String {
    use std::hash::Hasher as _;
    let mut h = fnv::FnvHasher::default();
    for p in parts {
        h.write(p.as_bytes());
        h.write_u8(0);
    }
    format!("{TAG_PREFIX}{:016x}", h.finish())
}
