//! The sync: cached world → translation → IP objects for new allocations → one Northbound
//! transaction. Serialized and coalesced, so a burst of reconciles costs one sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use ovn_nb::diff::{diff, Desired, Scope};
use ovsdb::Session;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::pods::ip_name;
use super::world::{pod_waits, world, World};
use super::{Error, Leadership, Metrics, Stores};
use crate::api::{Ip, IpSpec, Object, Subnet};
use crate::translate::{
    existing_allocations, pod_key, translate, Absent, Allocation, Status, SubnetUsage,
    MANAGED_TABLES, SUBNET_ANNOTATION,
};

/// What a sync found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Object key (`Subnet/a`, `Pod/ns/name`) → its state; a not-ready entry wins over a
    /// ready one for the same object.
    pub statuses: BTreeMap<String, Status>,
    /// Pod key → its allocation.
    pub allocations: BTreeMap<String, Allocation>,
    /// Subnet → address counts.
    pub usage: BTreeMap<String, SubnetUsage>,
    /// Eip → its address.
    pub eips: BTreeMap<String, IpAddr>,
    /// Operations this sync committed (0: nothing was written).
    pub operations: usize,
}

impl Outcome {
    /// The state of one object.
    pub fn status(&self, object: &str) -> Option<&Status> {
        self.statuses.get(object)
    }

    fn record(&mut self, s: Status) {
        match self.statuses.get_mut(&s.object) {
            Some(old) if !old.ready && !s.ready => {
                old.message = format!("{}; {}", old.message, s.message);
            }
            Some(old) if !old.ready => {}
            _ => {
                self.statuses.insert(s.object.clone(), s);
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// Requests up to this ticket are covered by `last`.
    covered: u64,
    last: Option<Arc<Outcome>>,
    /// Allocations whose IP object we created but the cache may not show yet.
    claims: BTreeMap<String, Allocation>,
    sb_chassis: Option<(Instant, Vec<String>)>,
}

/// The OVN side of the controller: the Northbound session and replica, the caches, and the
/// allocations in flight.
pub struct Engine {
    nb: Session,
    sb: Option<String>,
    stores: Stores,
    client: kube::Client,
    leader: Leadership,
    metrics: Arc<Metrics>,
    requested: AtomicU64,
    state: tokio::sync::Mutex<State>,
    changed: broadcast::Sender<String>,
}

impl Engine {
    /// An engine over a Northbound session (monitoring [`MANAGED_TABLES`]) and the caches.
    pub fn new(
        nb: Session,
        sb: Option<String>,
        stores: Stores,
        client: kube::Client,
        leader: Leadership,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let (changed, _) = broadcast::channel(1024);
        Engine {
            nb,
            sb,
            stores,
            client,
            leader,
            metrics,
            requested: AtomicU64::new(0),
            state: Default::default(),
            changed,
        }
    }

    /// Options for the Northbound session the engine needs: a replica of the managed tables,
    /// only the columns translation writes or reads back (as standalone mode monitors).
    pub fn session_options() -> ovsdb::SessionOptions {
        let mut opts = ovsdb::SessionOptions::new("OVN_Northbound")
            .monitor(crate::translate::monitor_requests());
        // A daemon waits for its database to come (as ovn-northd does) instead of failing
        // at start-up when it is not up yet.
        opts.wait = Duration::MAX;
        opts
    }

    /// The caches.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The Northbound session.
    pub fn session(&self) -> &Session {
        &self.nb
    }

    /// The leadership gate.
    pub fn leadership(&self) -> &Leadership {
        &self.leader
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Keys of objects whose state changed in a sync (`Subnet/a`), to reconcile their status.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }

    /// Ready: the Northbound is reachable and the replica synced.
    pub async fn ready(&self) -> bool {
        self.nb.replica().is_some() && self.nb.client(Duration::from_millis(50)).await.is_ok()
    }

    /// Whether any row of ours in the replica belongs to `owner` (`Vpc/a`).
    pub fn owns_rows(&self, owner: &str) -> bool {
        let replica = self.nb.replica();
        let Some(r) = replica.as_ref() else {
            return true;
        };
        MANAGED_TABLES.iter().any(|t| {
            r.table(t).is_some_and(|t| {
                t.iter().any(|row| {
                    row.get("external_ids")
                        .and_then(|d| d.get_str(crate::owner::OWNER_KEY))
                        == Some(owner)
                })
            })
        })
    }

    /// Waits (up to a minute) until every cache has listed its kind: before that, an object
    /// missing from a cache may just not be listed yet.
    pub async fn caches_ready(&self) -> Result<(), Error> {
        match tokio::time::timeout(Duration::from_secs(60), self.stores.wait_until_ready()).await {
            Ok(()) => Ok(()),
            _ => Err(Error::Waiting(
                "the caches have not listed every kind".into(),
            )),
        }
    }

    /// Forgets an allocation in flight (its pod is gone).
    pub async fn release(&self, pod_key: &str) {
        self.state.lock().await.claims.remove(pod_key);
    }

    /// Brings OVN in line with the caches. Reconciles that arrive while a sync runs are
    /// covered by the next one, which reads the caches after they arrived.
    pub async fn sync(&self) -> Result<Arc<Outcome>, Error> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut st = self.state.lock().await;
        if st.covered >= ticket {
            if let Some(last) = &st.last {
                return Ok(last.clone());
            }
        }
        let covers = self.requested.load(Ordering::SeqCst);
        let span = tracing::info_span!("sync", ticket);
        let outcome =
            Arc::new(tracing::Instrument::instrument(self.sync_locked(&mut st), span).await?);
        if let Some(last) = &st.last {
            // Changed or new, and gone (a VPC no longer blocked by its last subnet): those
            // objects are reconciled again for their status or their cleanup.
            let changed = outcome
                .statuses
                .iter()
                .filter(|(k, s)| last.statuses.get(*k) != Some(s))
                .map(|(k, _)| k)
                .chain(
                    last.statuses
                        .keys()
                        .filter(|k| !outcome.statuses.contains_key(*k)),
                );
            for k in changed {
                let _ = self.changed.send(k.clone());
            }
        }
        st.covered = covers;
        st.last = Some(outcome.clone());
        Ok(outcome)
    }

    async fn sync_locked(&self, st: &mut State) -> Result<Outcome, Error> {
        self.leader.check()?;
        // A sync of a partial world would delete the rows of objects not listed yet.
        self.caches_ready().await?;
        self.nb.client(Duration::from_secs(30)).await?;
        tracing::debug!("caches listed, Northbound connected");
        let mut w = world(&self.stores);
        let chassis = self.gateway_chassis(&w.nodes, st).await?;
        let mut existing = {
            let replica = self.nb.replica();
            existing_allocations(replica.as_ref().ok_or(Error::NotSynced)?)
        };
        // IP objects are the record of pod allocations; OVN fills in what a crash between
        // the OVN write and the IP object left behind; claims are ours in flight.
        let ips = self.stores.ips.state();
        for ip in &ips {
            existing.insert(ip.spec.owner.clone(), allocation_of(&ip.spec));
        }
        for (k, a) in &st.claims {
            existing.insert(k.clone(), a.clone());
        }
        let mut t = translate(&w.objects, &w.pods, &existing, &chassis, Absent::Release);

        // New allocations: re-check the default-subnet fallback against a fresh list, then
        // record each in an IP object before OVN sees it.
        let recorded: BTreeMap<&str, &Ip> =
            ips.iter().map(|i| (i.spec.owner.as_str(), &**i)).collect();
        let fresh: Vec<&Pod> = w
            .pods
            .iter()
            .filter(|p| {
                let k = pod_key(p);
                t.allocations.get(&k).is_some_and(|a| {
                    recorded
                        .get(k.as_str())
                        .is_none_or(|ip| allocation_of(&ip.spec) != *a)
                        && st.claims.get(&k) != Some(a)
                })
            })
            .collect();
        let late = self.recheck_default_fallback(&w, &t, &fresh).await?;
        if !late.is_empty() {
            w.pods
                .retain(|p| !late.iter().any(|(k, _)| *k == pod_key(p)));
            for (k, s) in &late {
                if let Some(p) = self.stores.pods.state().iter().find(|p| pod_key(p) == *k) {
                    w.notes.push(pod_waits(p, s));
                }
            }
            t = translate(&w.objects, &w.pods, &existing, &chassis, Absent::Release);
        }
        let subnet_vpc: BTreeMap<String, String> = w
            .objects
            .iter()
            .filter_map(|o| match o {
                Object::Subnet(s) => Some((s.name_any(), s.spec.vpc.clone())),
                _ => None,
            })
            .collect();
        let mut to_record = Vec::new();
        for p in &w.pods {
            let k = pod_key(p);
            let Some(a) = t.allocations.get(&k) else {
                continue;
            };
            let known = recorded
                .get(k.as_str())
                .is_some_and(|ip| allocation_of(&ip.spec) == *a);
            if !known && st.claims.get(&k) != Some(a) {
                let vpc = subnet_vpc.get(&a.subnet).cloned().unwrap_or_default();
                to_record.push((p, k, a, vpc));
            }
        }
        if !to_record.is_empty() {
            self.leader.check()?;
            // A cold start records many at once: a few requests in flight, not one by one.
            let mut results = Vec::new();
            for chunk in to_record.chunks(16) {
                let done = futures::future::join_all(
                    chunk.iter().map(|(p, _, a, vpc)| self.record_ip(p, a, vpc)),
                )
                .await;
                for ((_, k, a, _), r) in chunk.iter().zip(done) {
                    results.push((k.clone(), (*a).clone(), r));
                }
            }
            let mut failure = None;
            for (k, a, r) in results {
                match r {
                    Ok(()) => {
                        st.claims.insert(k, a);
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }

        tracing::debug!(pods = w.pods.len(), objects = w.objects.len(), "translated");
        let operations = self.commit(&t.desired).await?;
        tracing::debug!(operations, "committed");
        // Claims the cache now shows are no longer needed.
        st.claims.retain(|k, a| {
            recorded
                .get(k.as_str())
                .is_none_or(|ip| allocation_of(&ip.spec) != *a)
        });
        if let Some(r) = self.nb.replica().as_ref() {
            self.metrics.synced(r.row_count(), r.approx_bytes());
        }
        let mut out = Outcome {
            allocations: t.allocations,
            usage: t.usage,
            eips: t.eips,
            operations,
            ..Default::default()
        };
        for s in w.notes.into_iter().chain(t.statuses) {
            out.record(s);
        }
        Ok(out)
    }

    /// Diff against the replica and commit in one transaction; then wait until the replica
    /// shows it, so the next diff does not send it again.
    async fn commit(&self, desired: &[Desired]) -> Result<usize, Error> {
        let ops = {
            let replica = self.nb.replica();
            let r = replica.as_ref().ok_or(Error::NotSynced)?;
            diff(
                &crate::owner::IDENTITY,
                MANAGED_TABLES,
                desired,
                r,
                &Scope::All,
            )?
        };
        if ops.is_empty() {
            return Ok(0);
        }
        self.leader.check()?;
        let mut changes = self.nb.subscribe();
        let started = Instant::now();
        let span = tracing::info_span!("transact", operations = ops.len());
        tracing::Instrument::instrument(self.nb.transact(&ops, Duration::from_secs(30)), span)
            .await?;
        self.metrics.transaction(started.elapsed());
        let deadline = started + Duration::from_secs(10);
        loop {
            let pending = {
                let replica = self.nb.replica();
                match replica.as_ref() {
                    Some(r) => diff(
                        &crate::owner::IDENTITY,
                        MANAGED_TABLES,
                        desired,
                        r,
                        &Scope::All,
                    )?
                    .len(),
                    None => 0,
                }
            };
            if pending == 0 {
                break;
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => {
                    tracing::warn!(pending, "the replica did not show the transaction in time");
                    break;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => break,
                Ok(_) => {}
            }
        }
        Ok(ops.len())
    }

    /// Pods about to get a default-subnet address whose namespace a Subnet claims that the
    /// cache has not shown yet (listed fresh from the API server): pod key → that subnet.
    async fn recheck_default_fallback(
        &self,
        w: &World,
        t: &crate::translate::Translation,
        fresh: &[&Pod],
    ) -> Result<Vec<(String, String)>, Error> {
        let defaults: BTreeSet<String> = w
            .objects
            .iter()
            .filter_map(|o| match o {
                Object::Subnet(s) if s.spec.default => Some(s.name_any()),
                _ => None,
            })
            .collect();
        let fallback: Vec<&Pod> = fresh
            .iter()
            .copied()
            .filter(|p| {
                !p.annotations().contains_key(SUBNET_ANNOTATION)
                    && t.allocations
                        .get(&pod_key(p))
                        .is_some_and(|a| defaults.contains(&a.subnet))
            })
            .collect();
        if fallback.is_empty() {
            return Ok(Vec::new());
        }
        let listed = Api::<Subnet>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let mut late = Vec::new();
        for p in fallback {
            let ns = p.namespace().unwrap_or_default();
            if let Some(s) = listed.items.iter().find(|s| {
                s.spec.external.is_none() && !s.spec.default && s.spec.namespaces.contains(&ns)
            }) {
                late.push((pod_key(p), s.name_any()));
            }
        }
        Ok(late)
    }

    /// Creates the IP object of a pod's allocation, owned by the pod. One that already exists
    /// with the same content and owner is fine (a retry after a lost reply); one of the same
    /// pod with another allocation is rewritten; one of another pod of that name (the old pod's,
    /// not yet collected) is a conflict, retried after the collector removed it.
    async fn record_ip(&self, pod: &Pod, a: &Allocation, vpc: &str) -> Result<(), Error> {
        let ns = pod.namespace().unwrap_or_default();
        let name = ip_name(&ns, &pod.name_any());
        let spec = IpSpec {
            subnet: a.subnet.clone(),
            vpc: vpc.to_string(),
            owner: pod_key(pod),
            ips: a.ips.iter().map(|i| i.to_string()).collect(),
            mac: a.mac.clone(),
        };
        let mut ip = Ip::new(&name, spec.clone());
        ip.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            ..Default::default()
        }]);
        ip.metadata.labels = Some(
            [("ovnvpc.io/subnet".to_string(), a.subnet.clone())]
                .into_iter()
                .collect(),
        );
        let api: Api<Ip> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &ip).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let there = api.get(&name).await?;
                let same_owner = there
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == pod.uid().as_ref());
                if there.spec == spec && same_owner {
                    Ok(())
                } else if same_owner {
                    // The same pod moved (its subnet went, its annotation changed): the
                    // record follows; resourceVersion guards against a concurrent writer.
                    let mut moved = there;
                    moved.spec = spec;
                    api.replace(&name, &PostParams::default(), &moved).await?;
                    Ok(())
                } else {
                    Err(Error::Conflict(format!(
                        "IP {name} already records another allocation ({})",
                        there.spec.ips.join(",")
                    )))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn gateway_chassis(&self, nodes: &[Node], st: &mut State) -> Result<Vec<String>, Error> {
        let labelled = crate::standalone::gateway_chassis(nodes, None)
            .await
            .map_err(|e| Error::Waiting(e.to_string()))?;
        if !labelled.is_empty() {
            return Ok(labelled);
        }
        let Some(sb) = &self.sb else {
            return Ok(Vec::new());
        };
        if let Some((at, names)) = &st.sb_chassis {
            if at.elapsed() < Duration::from_secs(30) {
                return Ok(names.clone());
            }
        }
        match crate::standalone::gateway_chassis(&[], Some(sb)).await {
            Ok(names) => {
                st.sb_chassis = Some((Instant::now(), names.clone()));
                Ok(names)
            }
            Err(e) => {
                // Keep the last answer rather than move every gateway port.
                tracing::warn!(error = %e, "reading chassis from the Southbound failed");
                Ok(st
                    .sb_chassis
                    .as_ref()
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default())
            }
        }
    }
}

fn allocation_of(spec: &IpSpec) -> Allocation {
    Allocation {
        subnet: spec.subnet.clone(),
        mac: spec.mac.clone(),
        ips: spec.ips.iter().filter_map(|i| i.parse().ok()).collect(),
    }
}
