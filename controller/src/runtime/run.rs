//! Wiring: client, caches, Northbound session, Lease, HTTP endpoints, one Controller per kind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use super::objects::error_policy;
use super::pods::{ip_error_policy, pod_error_policy};
use super::{
    ip_name, reconcile_ip, reconcile_object, reconcile_pod, world::addressable, Cache, Context,
    Engine, Leadership, LeaseElector, Listed, Metrics, OurKind, Stores,
};
use crate::api::Ip;

/// How `ovn-vpc controller` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Northbound remote(s).
    pub db: String,
    /// The Southbound remote (gateway chassis when no Node is labelled).
    pub sb: Option<String>,
    /// A kubeconfig file (default: in-cluster config, then `$KUBECONFIG`, then ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// Compete for the Lease (off: this replica always writes).
    pub leader_election: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// Lease duration.
    pub lease_duration: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub listen: SocketAddr,
}

impl Options {
    /// Defaults around a Northbound remote.
    pub fn new(db: &str) -> Options {
        Options {
            db: db.to_string(),
            sb: None,
            kubeconfig: None,
            leader_election: true,
            lease_namespace: "ovn-vpc".into(),
            lease_name: "ovn-vpc-controller".into(),
            identity: std::env::var("POD_NAME").unwrap_or_else(|_| "ovn-vpc-controller".into()),
            lease_duration: Duration::from_secs(15),
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
        }
    }
}

/// A client from a kubeconfig file, else the in-cluster service account / `$KUBECONFIG` /
/// `~/.kube/config`.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Yields each time this replica becomes leader.
fn became_leader(l: &Leadership) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(l.subscribe(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

/// Per-kind streams of objects whose state a sync changed (so their status is rewritten even
/// when they did not change themselves: a Subnet that waited for its VPC's gateway).
struct Changed {
    senders: Vec<(
        &'static str,
        futures::channel::mpsc::UnboundedSender<String>,
    )>,
}

impl Changed {
    fn stream<K: kube::Resource<DynamicType = ()>>(
        &mut self,
        kind: &'static str,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.senders.push((kind, tx));
        rx.map(|rest: String| match rest.split_once('/') {
            Some((ns, name)) => ObjectRef::new(name).within(ns),
            None => ObjectRef::new(&rest),
        })
    }

    fn send(&self, key: &str) {
        if let Some((kind, rest)) = key.split_once('/') {
            for (k, tx) in &self.senders {
                if *k == kind {
                    let _ = tx.unbounded_send(rest.to_string());
                }
            }
        }
    }

    /// Forwards each key to its kind's stream. When the channel lagged, triggers were lost and
    /// which ones is unknown: every object in the caches is reconciled again (warned and
    /// counted), so no status is left stale.
    async fn forward(
        self,
        mut rx: tokio::sync::broadcast::Receiver<String>,
        stores: Stores,
        metrics: Arc<Metrics>,
    ) {
        loop {
            match rx.recv().await {
                Ok(key) => self.send(&key),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                    let keys = every_key(&stores);
                    tracing::warn!(
                        lost,
                        objects = keys.len(),
                        "status triggers were dropped (the channel lagged); reconciling every \
                         object again"
                    );
                    metrics.triggers_lagged(lost);
                    for k in keys {
                        self.send(&k);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The key (`Kind/name`, `Pod/namespace/name`) of every object in the caches whose status
/// the Changed streams drive.
fn every_key(stores: &Stores) -> Vec<String> {
    fn keys<K: kube::Resource<DynamicType = ()> + Clone>(
        kind: &str,
        store: &Store<K>,
    ) -> Vec<String> {
        store
            .state()
            .iter()
            .map(|o| match o.meta().namespace.as_deref() {
                Some(ns) => format!("{kind}/{ns}/{}", o.meta().name.as_deref().unwrap_or("")),
                None => format!("{kind}/{}", o.meta().name.as_deref().unwrap_or("")),
            })
            .collect()
    }
    let mut out = keys("Vpc", &stores.vpcs);
    out.extend(keys("Subnet", &stores.subnets));
    out.extend(keys("Eip", &stores.eips));
    out.extend(keys("Fip", &stores.fips));
    out.extend(keys("SnatRule", &stores.snat_rules));
    out.extend(keys("DnatRule", &stores.dnat_rules));
    out.extend(keys("Pod", &stores.pods));
    out
}

/// The watch of every `K` in the cluster, through its cache; `listed` learns when the cache
/// has applied its first complete list.
fn cache<K>(
    client: &kube::Client,
    writer: reflector::store::Writer<K>,
    listed: Listed,
    which: Cache,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    // After the reflector: the store has swapped in the list when this is seen.
    .inspect(move |ev| {
        if let Ok(watcher::Event::InitDone) = ev {
            listed.set(which);
        }
    })
}

fn our_controller<K>(
    client: &kube::Client,
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    which: Cache,
    ctx: Arc<Context>,
    changed: &mut Changed,
) -> tokio::task::JoinHandle<()>
where
    K: OurKind,
{
    let listed = ctx.engine.stores().listed.clone();
    let stream = cache(client, writer, listed, which).touched_objects();
    let leader = became_leader(&ctx.leader);
    let again = changed.stream::<K>(K::KIND);
    tokio::spawn(
        Controller::for_stream(stream, store)
            .reconcile_all_on(leader)
            .reconcile_on(again)
            .run(reconcile_object::<K>, error_policy::<K>, ctx)
            .for_each(|_| futures::future::ready(())),
    )
}

use kube::runtime::reflector::reflector;

/// Runs the controller until a task ends (which is an error: they run forever).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    run_with_client(kube_client(opts.kubeconfig.as_deref()).await?, opts).await
}

/// [`run`] with a given client (tests give one on a mock API server).
pub async fn run_with_client(client: kube::Client, opts: Options) -> anyhow::Result<()> {
    let (stores, writers) = Stores::new();
    let session = ovsdb::Session::start(&opts.db, Engine::session_options())?;
    let (leadership, elector) = if opts.leader_election {
        let e = LeaseElector::new(
            Api::namespaced(client.clone(), &opts.lease_namespace),
            &opts.lease_name,
            &opts.identity,
            opts.lease_duration,
        );
        (e.leadership(), Some(e))
    } else {
        (Leadership::always(), None)
    };
    let metrics = Arc::new(Metrics::default());
    let engine = Arc::new(Engine::new(
        session,
        opts.sb.clone(),
        stores.clone(),
        client.clone(),
        leadership.clone(),
        metrics,
    ));
    let ctx = Arc::new(Context::new(client.clone(), engine.clone()));
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    tracing::info!(listen = %opts.listen, "serving /healthz /readyz /metrics");
    let mut tasks = vec![tokio::spawn(super::serve(listener, engine.clone()))];
    // SIGTERM / Ctrl-C: stop writing, hand the Lease over, exit.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let elector_task = elector.map(|e| tokio::spawn(e.run(opts.lease_duration / 5, stopped)));

    let mut changed = Changed {
        senders: Vec::new(),
    };
    let w = writers;
    tasks.push(our_controller(
        &client,
        stores.vpcs.clone(),
        w.vpcs,
        Cache::Vpcs,
        ctx.clone(),
        &mut changed,
    ));
    tasks.push(our_controller(
        &client,
        stores.subnets.clone(),
        w.subnets,
        Cache::Subnets,
        ctx.clone(),
        &mut changed,
    ));
    tasks.push(our_controller(
        &client,
        stores.eips.clone(),
        w.eips,
        Cache::Eips,
        ctx.clone(),
        &mut changed,
    ));
    tasks.push(our_controller(
        &client,
        stores.fips.clone(),
        w.fips,
        Cache::Fips,
        ctx.clone(),
        &mut changed,
    ));
    tasks.push(our_controller(
        &client,
        stores.snat_rules.clone(),
        w.snat_rules,
        Cache::SnatRules,
        ctx.clone(),
        &mut changed,
    ));
    tasks.push(our_controller(
        &client,
        stores.dnat_rules.clone(),
        w.dnat_rules,
        Cache::DnatRules,
        ctx.clone(),
        &mut changed,
    ));

    // Pods: deletions (and pods that finished) trigger their IP's reconcile, which releases.
    let (ip_tx, ip_rx) = futures::channel::mpsc::unbounded::<ObjectRef<Ip>>();
    let listed = stores.listed.clone();
    let pods = cache(&client, w.pods, listed.clone(), Cache::Pods)
        .inspect(move |ev| {
            let gone = match ev {
                Ok(watcher::Event::Delete(p)) => Some(p),
                Ok(watcher::Event::Apply(p)) if !addressable(p) => Some(p),
                _ => None,
            };
            if let Some(p) = gone {
                let name = ip_name(&p.namespace().unwrap_or_default(), &p.name_any());
                let _ = ip_tx.unbounded_send(ObjectRef::new(&name));
            }
        })
        .touched_objects();
    tasks.push(tokio::spawn(
        Controller::for_stream(pods, stores.pods.clone())
            .reconcile_all_on(became_leader(&leadership))
            .reconcile_on(changed.stream::<Pod>("Pod"))
            .run(reconcile_pod, pod_error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(())),
    ));
    let ips = cache(&client, w.ips, listed.clone(), Cache::Ips).touched_objects();
    tasks.push(tokio::spawn(
        Controller::for_stream(ips, stores.ips.clone())
            .reconcile_all_on(became_leader(&leadership))
            .reconcile_on(ip_rx)
            .run(reconcile_ip, ip_error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(())),
    ));

    // Namespaces are only cached; Node changes move gateway chassis: resync.
    let namespaces = cache(&client, w.namespaces, listed.clone(), Cache::Namespaces);
    tasks.push(tokio::spawn(
        namespaces.for_each(|_| futures::future::ready(())),
    ));
    let nodes = cache(&client, w.nodes, listed, Cache::Nodes).applied_objects();
    let resync = engine.clone();
    tasks.push(tokio::spawn(nodes.for_each(move |_| {
        let engine = resync.clone();
        async move {
            if engine.leadership().is_leader() {
                if let Err(e) = engine.sync().await {
                    tracing::warn!(error = %e, "resync after a Node change failed");
                }
            }
        }
    })));

    // Drift: a change in the Northbound (ours or by hand) triggers a sync; ours find nothing
    // to do, a hand edit of our rows is put back.
    let heal = engine.clone();
    tasks.push(tokio::spawn(async move {
        let mut rx = heal.session().subscribe();
        loop {
            match rx.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            while rx.try_recv().is_ok() {}
            if heal.leadership().is_leader() {
                if let Err(e) = heal.sync().await {
                    tracing::warn!(error = %e, "drift sync failed");
                }
            }
        }
    }));
    tasks.push(tokio::spawn(changed.forward(
        engine.subscribe(),
        stores.clone(),
        engine.metrics().clone(),
    )));

    tokio::select! {
        (done, _, _) = futures::future::select_all(tasks) => {
            done?;
            anyhow::bail!("a controller task ended")
        }
        _ = shutdown_signal() => {
            tracing::info!("stopping");
            leadership.revoke_now();
            let _ = stop_tx.send(true);
            if let Some(t) = elector_task {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
            drop(stop_rx);
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Subnet, Vpc};
    use crate::runtime::put;

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_yaml::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn a_lagged_trigger_channel_reconciles_every_object_again_and_counts_it() {
        let (stores, mut w) = Stores::new();
        put(
            &mut w.vpcs,
            yaml::<Vpc>("apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-a}\nspec: {}\n"),
        );
        for s in ["a-net1", "b-net1"] {
            put(
                &mut w.subnets,
                yaml::<Subnet>(&format!(
                    "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: {s}}}\nspec: {{cidrs: [10.0.1.0/24]}}\n"
                )),
            );
        }
        put(
            &mut w.pods,
            yaml::<Pod>("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: team-a}\nspec: {containers: []}\n"),
        );
        let mut changed = Changed {
            senders: Vec::new(),
        };
        let vpcs = changed.stream::<Vpc>("Vpc");
        let subnets = changed.stream::<Subnet>("Subnet");
        let pods = changed.stream::<Pod>("Pod");
        // A burst larger than the channel: the oldest triggers are dropped.
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        for i in 0..10 {
            tx.send(format!("Subnet/burst-{i}")).unwrap();
        }
        drop(tx);
        let metrics = Arc::new(Metrics::default());
        tokio::time::timeout(
            Duration::from_secs(5),
            changed.forward(rx, stores, metrics.clone()),
        )
        .await
        .expect("forward ends when the channel closes");

        let names =
            |v: Vec<String>| -> std::collections::BTreeSet<String> { v.into_iter().collect() };
        let subnets = names(subnets.map(|r| r.name).collect().await);
        let vpcs = names(vpcs.map(|r| r.name).collect().await);
        let pods: Vec<(Option<String>, String)> =
            pods.map(|r| (r.namespace, r.name)).collect().await;
        // Every cached object is triggered again, and the triggers that were not dropped
        // still arrive.
        for s in [
            "a-net1", "b-net1", "burst-6", "burst-7", "burst-8", "burst-9",
        ] {
            assert!(subnets.contains(s), "{s} not re-triggered: {subnets:?}");
        }
        assert!(vpcs.contains("vpc-a"), "{vpcs:?}");
        assert_eq!(pods, [(Some("team-a".to_string()), "web".to_string())]);
        assert_eq!(metrics.lagged(), 1);
        assert!(metrics
            .render()
            .contains("ovn_vpc_status_triggers_lost_total 6"));
    }
}
