//! The refresh loop: every interval, our ipsets and each table of each family are reconciled
//! (a read, and a write only when something of ours is missing, misplaced or duplicated), so a
//! deleted jump, a flushed chain or a flushed table is put back within one interval. Between
//! passes, a canary poll reads only the chains we own (`iptables -S CHAIN`, not the whole
//! table, as kube-proxy polls its `KUBE-PROXY-CANARY` chains) and the headers of our ipsets,
//! and runs a pass at once when one
//! vanished or lost its rules: that is how a flushed chain or table comes back within about a
//! second while the full refresh stays at its interval. Synchronous on purpose: it owns a
//! thread of the shim.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ipset::{DesiredSet, Ipset};
use super::iptables::{DesiredTable, Family, Iptables};

/// Default of `--refresh-interval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Default of `--canary-interval`: a flushed chain or table is back within about a second.
pub const DEFAULT_CANARY_INTERVAL: Duration = Duration::from_millis(500);

/// What a refresh loop did until it was stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Completed passes over all tables.
    pub passes: u64,
    /// `iptables-restore` and `ipset restore` transactions written.
    pub writes: u64,
    /// Passes started early because the canary poll found a chain of ours gone or emptied.
    pub canary_repairs: u64,
    /// Reconciles that failed (after their own retries); the loop carries on.
    pub errors: u64,
    /// The last error, for logs.
    pub last_error: Option<String>,
}

/// Reconciles our ipsets and tables every `interval` until stopped, with a canary poll between.
#[derive(Debug, Clone)]
pub struct Refresh {
    families: Vec<(Iptables, Vec<DesiredTable>)>,
    sets: Option<(Ipset, Vec<DesiredSet>)>,
    interval: Duration,
    canary_interval: Option<Duration>,
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

impl Refresh {
    /// A refresh of these tables, every [`DEFAULT_REFRESH_INTERVAL`], with the canary poll
    /// every [`DEFAULT_CANARY_INTERVAL`].
    pub fn new(ipt: Iptables, tables: Vec<DesiredTable>) -> Refresh {
        Refresh {
            families: vec![(ipt, tables)],
            sets: None,
            interval: DEFAULT_REFRESH_INTERVAL,
            canary_interval: Some(DEFAULT_CANARY_INTERVAL),
        }
    }

    /// Also these tables through `ipt` (the other family).
    pub fn family(mut self, ipt: Iptables, tables: Vec<DesiredTable>) -> Refresh {
        self.families.push((ipt, tables));
        self
    }

    /// Also these ipsets, reconciled before the rules that use them and removed after them.
    pub fn ipsets(mut self, ipset: Ipset, sets: Vec<DesiredSet>) -> Refresh {
        self.sets = Some((ipset, sets));
        self
    }

    /// Sets the interval (`--refresh-interval`).
    pub fn interval(mut self, interval: Duration) -> Refresh {
        self.interval = interval;
        self
    }

    /// Sets the canary poll interval; `None` turns the poll off (only the full refresh heals).
    pub fn canary_interval(mut self, every: Option<Duration>) -> Refresh {
        self.canary_interval = every;
        self
    }

    /// One pass: the ipsets, then every table of every family.
    pub fn pass(&self, stats: &mut RefreshStats) {
        let mut failed = |what: String, e: &dyn std::fmt::Display| {
            tracing::warn!(%what, error = %e, "reconcile failed");
            stats.errors += 1;
            stats.last_error = Some(format!("{what}: {e}"));
        };
        let mut writes = 0u64;
        if let Some((ipset, sets)) = &self.sets {
            match ipset.reconcile(sets) {
                Ok(w) => writes += u64::from(w),
                Err(e) => failed("ipsets".into(), &e),
            }
        }
        for (ipt, tables) in &self.families {
            for (t, r) in tables.iter().zip(ipt.reconcile_all(tables)) {
                match r {
                    Ok(done) => writes += u64::from(done.writes),
                    Err(e) => failed(format!("{} {}", family_name(ipt.family()), t.name), &e),
                }
            }
        }
        stats.writes += writes;
        stats.passes += 1;
    }

    /// Whether every chain of ours still holds its rules and every set of ours its number of
    /// entries (the canary poll; reads only, one chain or the set headers at a time).
    pub fn canaries_intact(&self) -> bool {
        let sets = self
            .sets
            .as_ref()
            .is_none_or(|(ipset, sets)| ipset.counts_intact(sets));
        sets && self.families.iter().all(|(ipt, tables)| {
            tables
                .iter()
                .all(|t| t.chains.iter().all(|c| ipt.chain_intact(&t.name, c)))
        })
    }

    /// What is not in working order, read from iptables and ipset (never "the last write
    /// succeeded"): empty exactly when every set holds its members and every table holds our
    /// rules with each jump once and above `KUBE-SERVICES`. What `/readyz` reports.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((ipset, sets)) = &self.sets {
            match ipset.check(sets) {
                Ok(p) => out.extend(p),
                Err(e) => out.push(format!("ipsets: {e}")),
            }
        }
        for (ipt, tables) in &self.families {
            let family = family_name(ipt.family());
            match ipt.check_all(tables) {
                Ok(bad) => out.extend(bad.iter().map(|t| {
                    format!(
                        "{family} {}: rules of ours missing, duplicated or below KUBE-SERVICES",
                        t.name
                    )
                })),
                Err(e) => out.push(format!("{family}: {e}")),
            }
        }
        out
    }

    /// Removes everything of ours (`--cleanup`): the rules of every table, then the ipsets.
    /// Returns the transactions written, or every error met (the rest is still attempted).
    pub fn cleanup(&self) -> Result<u64, Vec<String>> {
        let mut writes = 0u64;
        let mut errors = Vec::new();
        for (ipt, tables) in &self.families {
            for t in tables {
                match ipt.remove(t) {
                    Ok(done) => writes += u64::from(done.writes),
                    Err(e) => errors.push(format!("{} {}: {e}", family_name(ipt.family()), t.name)),
                }
            }
        }
        if let Some((ipset, sets)) = &self.sets {
            let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
            match ipset.remove(&names) {
                Ok(w) => writes += u64::from(w),
                Err(e) => errors.push(format!("ipsets: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(writes)
        } else {
            Err(errors)
        }
    }

    /// Runs passes every interval until `stop` is set (checked at least every 50 ms), polling
    /// the canaries in between.
    pub fn run_until(&self, stop: &AtomicBool) -> RefreshStats {
        self.run_beating(stop, &AtomicU64::new(0))
    }

    /// [`Refresh::run_until`], storing the Unix time in milliseconds into `beat` after every
    /// pass and every canary poll (`/healthz` tells a loop stuck on a lock from a live one).
    pub fn run_beating(&self, stop: &AtomicBool, beat: &AtomicU64) -> RefreshStats {
        let mut stats = RefreshStats::default();
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        while !stop.load(Ordering::Relaxed) {
            let next = Instant::now() + self.interval;
            self.pass(&mut stats);
            beat.store(now_ms(), Ordering::Relaxed);
            let mut canary_due = self.canary_interval.map(|c| Instant::now() + c);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                if let (Some(due), Some(every)) = (canary_due, self.canary_interval) {
                    if now >= due {
                        if !self.canaries_intact() {
                            tracing::info!("a chain of ours vanished or was flushed; repairing");
                            stats.canary_repairs += 1;
                            self.pass(&mut stats);
                        }
                        beat.store(now_ms(), Ordering::Relaxed);
                        canary_due = Some(Instant::now() + every);
                        continue;
                    }
                }
                let wake = canary_due.map_or(next, |d| d.min(next));
                std::thread::sleep((wake - now).min(Duration::from_millis(50)));
            }
        }
        stats
    }
}
