//! Prometheus counters and histograms, rendered in the text exposition format by hand (a
//! dozen series do not justify a metrics crate and its dependency tree).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The controller's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<(String, String), u64>>,
    reconcile_latency: Mutex<BTreeMap<String, Histogram>>,
    txn_latency: Mutex<Histogram>,
    transactions: AtomicU64,
    syncs: AtomicU64,
    replica_rows: AtomicU64,
    replica_bytes: AtomicU64,
    triggers_lagged: AtomicU64,
    triggers_lost: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// A reconcile of `kind` finished after `took`; `error` is its error label when it failed.
    pub fn reconciled(&self, kind: &str, took: Duration, error: Option<&str>) {
        *lock(&self.reconciles).entry(kind.to_string()).or_default() += 1;
        lock(&self.reconcile_latency)
            .entry(kind.to_string())
            .or_default()
            .observe(took.as_secs_f64());
        if let Some(e) = error {
            *lock(&self.errors)
                .entry((kind.to_string(), e.to_string()))
                .or_default() += 1;
        }
    }

    /// An OVSDB write transaction took `took`.
    pub fn transaction(&self, took: Duration) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        lock(&self.txn_latency).observe(took.as_secs_f64());
    }

    /// A sync of the whole world ran; the replica holds `rows` rows, about `bytes` bytes.
    pub fn synced(&self, rows: usize, bytes: usize) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.replica_rows.store(rows as u64, Ordering::Relaxed);
        self.replica_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// The status trigger channel lagged and `lost` triggers were dropped (every object was
    /// reconciled again instead).
    pub fn triggers_lagged(&self, lost: u64) {
        self.triggers_lagged.fetch_add(1, Ordering::Relaxed);
        self.triggers_lost.fetch_add(lost, Ordering::Relaxed);
    }

    /// Times the status trigger channel lagged (each followed by a full re-reconcile).
    pub fn lagged(&self) -> u64 {
        self.triggers_lagged.load(Ordering::Relaxed)
    }

    /// OVSDB write transactions sent so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Reconciles of `kind` so far.
    pub fn reconciles(&self, kind: &str) -> u64 {
        lock(&self.reconciles).get(kind).copied().unwrap_or(0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ovn_vpc_reconciles_total Reconciles run, by kind.\n");
        out.push_str("# TYPE ovn_vpc_reconciles_total counter\n");
        for (k, v) in lock(&self.reconciles).iter() {
            let _ = writeln!(out, "ovn_vpc_reconciles_total{{kind=\"{k}\"}} {v}");
        }
        out.push_str(
            "# HELP ovn_vpc_reconcile_errors_total Reconciles that failed, by kind and error.\n",
        );
        out.push_str("# TYPE ovn_vpc_reconcile_errors_total counter\n");
        for ((k, e), v) in lock(&self.errors).iter() {
            let _ = writeln!(
                out,
                "ovn_vpc_reconcile_errors_total{{kind=\"{k}\",error=\"{e}\"}} {v}"
            );
        }
        out.push_str("# HELP ovn_vpc_reconcile_duration_seconds Reconcile latency, by kind.\n");
        out.push_str("# TYPE ovn_vpc_reconcile_duration_seconds histogram\n");
        for (k, h) in lock(&self.reconcile_latency).iter() {
            h.render(
                &mut out,
                "ovn_vpc_reconcile_duration_seconds",
                &format!("kind=\"{k}\""),
            );
        }
        out.push_str("# HELP ovn_vpc_ovsdb_transaction_duration_seconds Northbound write transaction latency.\n");
        out.push_str("# TYPE ovn_vpc_ovsdb_transaction_duration_seconds histogram\n");
        lock(&self.txn_latency).render(&mut out, "ovn_vpc_ovsdb_transaction_duration_seconds", "");
        let gauges = [
            (
                "ovn_vpc_ovsdb_transactions_total",
                "counter",
                "Northbound write transactions.",
                self.transactions.load(Ordering::Relaxed),
            ),
            (
                "ovn_vpc_syncs_total",
                "counter",
                "Whole-world syncs (translate + diff).",
                self.syncs.load(Ordering::Relaxed),
            ),
            (
                "ovn_vpc_status_triggers_lagged_total",
                "counter",
                "Times status triggers were dropped by a lagging channel (each answered by \
                 reconciling every object again).",
                self.triggers_lagged.load(Ordering::Relaxed),
            ),
            (
                "ovn_vpc_status_triggers_lost_total",
                "counter",
                "Status triggers dropped by a lagging channel.",
                self.triggers_lost.load(Ordering::Relaxed),
            ),
            (
                "ovn_vpc_replica_rows",
                "gauge",
                "Rows in the Northbound replica.",
                self.replica_rows.load(Ordering::Relaxed),
            ),
            (
                "ovn_vpc_replica_bytes",
                "gauge",
                "Approximate memory of the Northbound replica.",
                self.replica_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_text_format() {
        let m = Metrics::default();
        m.reconciled("Subnet", Duration::from_millis(3), None);
        m.reconciled("Subnet", Duration::from_millis(30), Some("kube"));
        m.transaction(Duration::from_millis(2));
        m.synced(12, 3400);
        let text = m.render();
        for want in [
            "ovn_vpc_reconciles_total{kind=\"Subnet\"} 2",
            "ovn_vpc_reconcile_errors_total{kind=\"Subnet\",error=\"kube\"} 1",
            "ovn_vpc_reconcile_duration_seconds_bucket{kind=\"Subnet\",le=\"0.005\"} 1",
            "ovn_vpc_reconcile_duration_seconds_bucket{kind=\"Subnet\",le=\"+Inf\"} 2",
            "ovn_vpc_ovsdb_transaction_duration_seconds_count 1",
            "ovn_vpc_replica_rows 12",
            "ovn_vpc_ovsdb_transactions_total 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
