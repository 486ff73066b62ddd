//! `ovn-vpc controller`: the reconcile engine of [`crate::translate`] run inside a cluster.
//!
//! Reflectors keep a cache of every kind the translation reads (our kinds, Pods, Namespaces,
//! Nodes); one `kube::runtime::Controller` per kind gives per-object serialization and
//! backoff. Every reconcile goes through [`Engine::sync`], which translates the whole cached
//! world, diffs it against the Northbound replica and commits the difference in one
//! transaction (none when nothing changed). Syncs are serialized and coalesced: reconciles
//! that queue up behind a running sync are covered by the next one.
//!
//! Only the holder of the `coordination.k8s.io` Lease writes ([`leader`]); every write (OVN
//! transaction, status, annotation, IP object, finalizer, event) checks it first.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let opts = ovn_vpc::runtime::Options::new("tcp:127.0.0.1:6641");
//! ovn_vpc::runtime::run(opts).await
//! # }
//! ```

mod engine;
mod error;
mod http;
pub mod leader;
mod metrics;
mod objects;
mod pods;
mod run;
mod status;
mod stores;
mod uninstall;
mod world;

pub use engine::{Engine, Outcome};
pub use error::Error;
pub use http::serve;
pub use leader::{Leadership, LeaseElector};
pub use metrics::Metrics;
pub use objects::{error_policy, reconcile_object, OurKind, FINALIZER};
pub use pods::{
    allocation_annotations, ip_name, reconcile_ip, reconcile_pod, ALLOCATED_ANNOTATION,
    CIDR_ANNOTATION, GATEWAY_ANNOTATION, LOGICAL_SWITCH_ANNOTATION,
};
pub use run::{kube_client, run, run_with_client, Options};
pub use stores::{put, remove, Cache, Listed, Stores, Writers};
pub use uninstall::{remove_finalizers, stop_controller};

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The OVN side and the caches.
    pub engine: Arc<Engine>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Whether this replica may write.
    pub leader: Leadership,
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    /// A context around an engine.
    pub fn new(client: kube::Client, engine: Arc<Engine>) -> Context {
        let recorder = Recorder::new(client.clone(), "ovn-vpc-controller".into());
        Context {
            metrics: engine.metrics().clone(),
            leader: engine.leadership().clone(),
            client,
            engine,
            recorder,
            failures: Default::default(),
        }
    }

    /// Exponential backoff per object: 500 ms doubling to 5 min; reset by a success.
    pub(crate) fn backoff(&self, object: &str) -> std::time::Duration {
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = f.entry(object.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let ms = 500u64.saturating_mul(1u64 << (*n - 1).min(10));
        std::time::Duration::from_millis(ms.min(300_000))
    }

    /// What every error policy does: log, publish a Warning Event for a failure (waits have
    /// theirs already), and requeue with the object's backoff. A follower just waits.
    pub(crate) fn failed<K>(self: &Arc<Self>, obj: &K, key: &str, e: &Error) -> Action
    where
        K: kube::Resource<DynamicType = ()>,
    {
        if matches!(e, Error::NotLeader) {
            return Action::await_change();
        }
        tracing::warn!(object = %key, error = %e, "reconcile failed");
        if !matches!(e, Error::Waiting(_)) {
            let ctx = self.clone();
            let reference = obj.object_ref(&());
            let note = e.to_string();
            tokio::spawn(async move {
                let event = kube::runtime::events::Event {
                    type_: kube::runtime::events::EventType::Warning,
                    reason: "ReconcileFailed".into(),
                    note: Some(note),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                if ctx.leader.is_leader() {
                    let _ = ctx.recorder.publish(&event, &reference).await;
                }
            });
        }
        Action::requeue(self.backoff(key))
    }

    pub(crate) fn succeeded(&self, object: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(object);
    }
}
