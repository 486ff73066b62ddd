//! The controller's Prometheus metrics, kept and rendered by `prometheus-client` (OpenMetrics
//! text). The series names are those of the previous hand-rendered text, so dashboards keep
//! working: a counter is registered without its `_total` suffix, which the encoder appends to
//! its sample, and a help text without its final period, which the encoder adds.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    error: String,
}

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    reconcile_latency: Family<KindLabel, Histogram>,
    txn_latency: Histogram,
    transactions: Counter,
    syncs: Counter,
    replica_rows: Gauge,
    replica_bytes: Gauge,
    triggers_lagged: Counter,
    triggers_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            reconciles: Family::default(),
            errors: Family::default(),
            reconcile_latency: Family::new_with_constructor(latency_histogram),
            txn_latency: latency_histogram(),
            transactions: Counter::default(),
            syncs: Counter::default(),
            replica_rows: Gauge::default(),
            replica_bytes: Gauge::default(),
            triggers_lagged: Counter::default(),
            triggers_lost: Counter::default(),
        };
        // In the order of the previous hand-rendered text.
        let r = &mut m.registry;
        r.register(
            "ovn_vpc_reconciles",
            "Reconciles run, by kind",
            m.reconciles.clone(),
        );
        r.register(
            "ovn_vpc_reconcile_errors",
            "Reconciles that failed, by kind and error",
            m.errors.clone(),
        );
        r.register(
            "ovn_vpc_reconcile_duration_seconds",
            "Reconcile latency, by kind",
            m.reconcile_latency.clone(),
        );
        r.register(
            "ovn_vpc_ovsdb_transaction_duration_seconds",
            "Northbound write transaction latency",
            m.txn_latency.clone(),
        );
        let counters = [
            (
                "ovn_vpc_ovsdb_transactions",
                "Northbound write transactions",
                &m.transactions,
            ),
            (
                "ovn_vpc_syncs",
                "Whole-world syncs (translate + diff)",
                &m.syncs,
            ),
            (
                "ovn_vpc_status_triggers_lagged",
                "Times status triggers were dropped by a lagging channel (each answered by \
                 reconciling every object again)",
                &m.triggers_lagged,
            ),
            (
                "ovn_vpc_status_triggers_lost",
                "Status triggers dropped by a lagging channel",
                &m.triggers_lost,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        let gauges = [
            (
                "ovn_vpc_replica_rows",
                "Rows in the Northbound replica",
                &m.replica_rows,
            ),
            (
                "ovn_vpc_replica_bytes",
                "Approximate memory of the Northbound replica",
                &m.replica_bytes,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        m
    }
}

fn kind(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

impl Metrics {
    /// A reconcile of `kind` finished after `took`; `error` is its error label when it failed.
    pub fn reconciled(&self, kind_: &str, took: Duration, error: Option<&str>) {
        let labels = kind(kind_);
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(e) = error {
            let labels = ErrorLabels {
                kind: labels.kind,
                error: e.to_string(),
            };
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// An OVSDB write transaction took `took`.
    pub fn transaction(&self, took: Duration) {
        self.transactions.inc();
        self.txn_latency.observe(took.as_secs_f64());
    }

    /// A sync of the whole world ran; the replica holds `rows` rows, about `bytes` bytes.
    pub fn synced(&self, rows: usize, bytes: usize) {
        self.syncs.inc();
        self.replica_rows.set(saturating_i64(rows));
        self.replica_bytes.set(saturating_i64(bytes));
    }

    /// The status trigger channel lagged and `lost` triggers were dropped (every object was
    /// reconciled again instead).
    pub fn triggers_lagged(&self, lost: u64) {
        self.triggers_lagged.inc();
        self.triggers_lost.inc_by(lost);
    }

    /// Times the status trigger channel lagged (each followed by a full re-reconcile).
    pub fn lagged(&self) -> u64 {
        self.triggers_lagged.get()
    }

    /// OVSDB write transactions sent so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.get()
    }

    /// Reconciles of `kind` so far.
    pub fn reconciles(&self, kind_: &str) -> u64 {
        self.reconciles.get(&kind(kind_)).map_or(0, |c| c.get())
    }

    /// The OpenMetrics text exposition format (`# EOF` included).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and every name and label here is well-formed.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        m.triggers_lagged(7);
        let text = m.render();
        for want in [
            "ovn_vpc_reconciles_total{kind=\"Subnet\"} 2\n",
            "ovn_vpc_reconcile_errors_total{kind=\"Subnet\",error=\"kube\"} 1\n",
            // The encoder puts `le` first; label order does not matter to a scraper.
            "ovn_vpc_reconcile_duration_seconds_bucket{le=\"0.005\",kind=\"Subnet\"} 1\n",
            "ovn_vpc_reconcile_duration_seconds_bucket{le=\"+Inf\",kind=\"Subnet\"} 2\n",
            "ovn_vpc_ovsdb_transaction_duration_seconds_bucket{le=\"30.0\"} 1\n",
            "ovn_vpc_reconcile_duration_seconds_count{kind=\"Subnet\"} 2\n",
            "ovn_vpc_ovsdb_transaction_duration_seconds_count 1\n",
            "ovn_vpc_replica_rows 12\n",
            "ovn_vpc_replica_bytes 3400\n",
            "ovn_vpc_ovsdb_transactions_total 1\n",
            "ovn_vpc_syncs_total 1\n",
            "ovn_vpc_status_triggers_lagged_total 1\n",
            "ovn_vpc_status_triggers_lost_total 7\n",
            "# TYPE ovn_vpc_reconcile_duration_seconds histogram\n",
            "# TYPE ovn_vpc_replica_rows gauge\n",
            "# HELP ovn_vpc_reconciles Reconciles run, by kind.\n",
            "# HELP ovn_vpc_status_triggers_lagged Times status triggers were dropped by a \
             lagging channel (each answered by reconciling every object again).\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(m.reconciles("Subnet"), 2);
        assert_eq!(m.reconciles("Vpc"), 0);
        assert_eq!((m.transactions(), m.lagged()), (1, 1));
    }
}
