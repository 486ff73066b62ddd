//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! read the Lease, take it when it is free, ours, or has not been renewed for its whole
//! duration *as observed locally* (so clock skew between replicas does not matter), and write
//! it back with its `resourceVersion` so that two candidates cannot both win.
//!
//! The holder considers itself leader only until `renew_deadline` (two thirds of the lease
//! duration) after the start of its last successful renewal: it stops writing before anyone
//! else can take over, even when it cannot reach the API server to learn that it lost. Seeing
//! another holder revokes leadership at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Error;

/// Whether this replica may write now. Cheap to clone; every clone sees the same state.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    until: Mutex<Option<Instant>>,
    changed: watch::Sender<bool>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    fn new(until: Option<Instant>) -> Leadership {
        let (changed, _) = watch::channel(until.is_some());
        Leadership {
            inner: Arc::new(Inner {
                until: Mutex::new(until),
                changed,
            }),
        }
    }

    /// Always the leader (one replica, `--no-leader-election`).
    pub fn always() -> Leadership {
        Leadership::new(Some(
            Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
        ))
    }

    /// Not the leader until a [`LeaseElector`] grants it.
    pub fn none() -> Leadership {
        Leadership::new(None)
    }

    /// True while the last renewal is fresh enough.
    pub fn is_leader(&self) -> bool {
        self.until().is_some_and(|u| Instant::now() < u)
    }

    /// `Err(NotLeader)` unless [`Self::is_leader`]: call right before every write.
    pub fn check(&self) -> Result<(), Error> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Stops writing now (shutdown); the elector then hands the Lease over.
    pub fn revoke_now(&self) {
        self.set(None);
    }

    /// Changes of leadership as the elector sees them (`true` when it became leader).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.changed.subscribe()
    }

    fn until(&self) -> Option<Instant> {
        *self
            .inner
            .until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, until: Option<Instant>) {
        *self
            .inner
            .until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
        let leader = until.is_some();
        self.inner.changed.send_if_modified(|v| {
            let changed = *v != leader;
            *v = leader;
            changed
        });
    }
}

/// Holder and renew time of the Lease as last read, and when we first saw them.
struct Observed {
    holder: String,
    renew: Option<Timestamp>,
    at: Instant,
}

/// Competes for one Lease.
pub struct LeaseElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    leadership: Leadership,
    observed: Option<Observed>,
}

impl LeaseElector {
    /// A candidate `identity` (the pod name) for the Lease `name` of `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> LeaseElector {
        LeaseElector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            leadership: Leadership::none(),
            observed: None,
        }
    }

    /// The leadership this elector grants and revokes.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// How long a renewal keeps us leader: two thirds of the lease duration.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// One round: take or renew the Lease if we may. Returns whether we lead now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let start = Instant::now();
        let now = Timestamp::now();
        let current = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => {
                // Unknown: leadership lapses by itself at its deadline.
                return Err(e);
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            let created = self.api.create(&PostParams::default(), &lease).await;
            return self.settle(created, start);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renew = spec.renew_time.as_ref().map(|t| t.0);
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew != renew);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew,
                at: start,
            });
        }
        let their_duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.duration);
        let observed_at = self.observed.as_ref().map(|o| o.at).unwrap_or(start);
        let ours = holder == self.identity;
        let free = holder.is_empty() || observed_at + their_duration <= start;
        if !ours && !free {
            self.revoke();
            return Ok(false);
        }
        let mut new_spec = spec;
        if !ours {
            new_spec.acquire_time = Some(MicroTime(now));
            new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(self.duration.as_secs().max(1) as i32);
        new_spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(new_spec);
        // The resourceVersion read above makes this a compare-and-swap.
        let replaced = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.settle(replaced, start)
    }

    /// A write of the Lease that succeeded makes us leader; a conflict means someone else
    /// wrote it first.
    fn settle(
        &mut self,
        written: Result<Lease, kube::Error>,
        start: Instant,
    ) -> Result<bool, kube::Error> {
        match written {
            Ok(_) => {
                self.grant(start);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.revoke();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Competes, a round every `retry`, until `shutdown` resolves; then gives the Lease up.
    pub async fn run(mut self, retry: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(leader) => tracing::debug!(leader, lease = %self.name, "lease round"),
                Err(e) => tracing::warn!(error = %e, lease = %self.name, "lease round failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = &mut shutdown => {
                    self.release().await;
                    return;
                }
            }
        }
    }

    /// Stops writing at once, then clears the holder of the Lease if it is still ours, so the
    /// standby takes over without waiting for the lease to expire (a rolling update).
    pub async fn release(&mut self) {
        let held = self.leadership.is_leader();
        self.revoke();
        if !held {
            return;
        }
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.spec = Some(spec);
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(identity = %self.identity, lease = %self.name, "released the lease")
            }
            Err(e) => tracing::warn!(error = %e, lease = %self.name, "releasing the lease failed"),
        }
    }

    fn grant(&mut self, start: Instant) {
        if !self.leadership.is_leader() {
            tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
        }
        self.observed = None;
        self.leadership.set(Some(start + self.renew_deadline()));
    }

    fn revoke(&mut self) {
        if self.leadership.is_leader() {
            tracing::warn!(identity = %self.identity, lease = %self.name, "lost the lease");
        }
        self.leadership.set(None);
    }
}
