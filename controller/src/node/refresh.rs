//! The periodic refresh: every interval, each table is reconciled (a read, and a write only when
//! something of ours is missing or misplaced), so a deleted jump, a flushed chain or a flushed
//! table is put back within one interval. Synchronous on purpose: it owns a thread of the shim.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::iptables::{DesiredTable, Iptables};

/// Default of `--refresh-interval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// What a refresh loop did until it was stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Completed passes over all tables.
    pub passes: u64,
    /// `iptables-restore` transactions written.
    pub writes: u64,
    /// Table reconciles that failed (after their own retries); the loop carries on.
    pub errors: u64,
    /// The last error, for `/readyz` and logs.
    pub last_error: Option<String>,
}

/// Reconciles `tables` through `ipt` every `interval` until `stop` is set.
#[derive(Debug, Clone)]
pub struct Refresh {
    ipt: Iptables,
    tables: Vec<DesiredTable>,
    interval: Duration,
}

impl Refresh {
    /// A refresh of these tables, every [`DEFAULT_REFRESH_INTERVAL`].
    pub fn new(ipt: Iptables, tables: Vec<DesiredTable>) -> Refresh {
        Refresh {
            ipt,
            tables,
            interval: DEFAULT_REFRESH_INTERVAL,
        }
    }

    /// Sets the interval (`--refresh-interval`).
    pub fn interval(mut self, interval: Duration) -> Refresh {
        self.interval = interval;
        self
    }

    /// One pass over every table.
    pub fn pass(&self, stats: &mut RefreshStats) {
        for t in &self.tables {
            match self.ipt.reconcile(t) {
                Ok(done) => stats.writes += u64::from(done.writes),
                Err(e) => {
                    tracing::warn!(table = %t.name, error = %e, "iptables reconcile failed");
                    stats.errors += 1;
                    stats.last_error = Some(e.to_string());
                }
            }
        }
        stats.passes += 1;
    }

    /// Runs passes every interval until `stop` is set (checked at least every 50 ms).
    pub fn run_until(&self, stop: &AtomicBool) -> RefreshStats {
        let mut stats = RefreshStats::default();
        while !stop.load(Ordering::Relaxed) {
            let next = Instant::now() + self.interval;
            self.pass(&mut stats);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                std::thread::sleep((next - now).min(Duration::from_millis(50)));
            }
        }
        stats
    }
}
