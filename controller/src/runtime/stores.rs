//! The reflector caches the translation reads.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher;

use crate::api::{DnatRule, Eip, Fip, Ip, SnatRule, Subnet, Vpc};

/// Which caches have listed their kind once, one bit per kind. Kept beside the stores
/// because `Store::wait_until_ready` loses wake-ups when several tasks wait at once (it parks
/// on a `futures` oneshot, which keeps only the last waiter's waker); a watch channel wakes
/// every waiter.
#[derive(Clone)]
pub struct Listed(Arc<tokio::sync::watch::Sender<u16>>);

/// A cache, as a bit of [`Listed`].
#[derive(Debug, Clone, Copy)]
pub enum Cache {
    /// Vpcs.
    Vpcs = 0,
    /// Subnets.
    Subnets,
    /// IP objects.
    Ips,
    /// Eips.
    Eips,
    /// Fips.
    Fips,
    /// SnatRules.
    SnatRules,
    /// DnatRules.
    DnatRules,
    /// Pods.
    Pods,
    /// Namespaces.
    Namespaces,
    /// Nodes.
    Nodes,
}

const ALL: u16 = (1 << 10) - 1;

impl Listed {
    fn new() -> Listed {
        Listed(Arc::new(tokio::sync::watch::channel(0).0))
    }

    /// `cache` has listed (call after its reflector applied the `InitDone`).
    pub fn set(&self, cache: Cache) {
        self.0.send_modify(|m| *m |= 1 << cache as u16);
    }

    /// Whether every cache has listed.
    pub fn all(&self) -> bool {
        *self.0.borrow() == ALL
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|m| *m == ALL).await;
    }
}

/// Read sides of the caches.
#[derive(Clone)]
pub struct Stores {
    /// Vpcs.
    pub vpcs: Store<Vpc>,
    /// Subnets.
    pub subnets: Store<Subnet>,
    /// IP objects (allocations).
    pub ips: Store<Ip>,
    /// Eips.
    pub eips: Store<Eip>,
    /// Fips.
    pub fips: Store<Fip>,
    /// SnatRules.
    pub snat_rules: Store<SnatRule>,
    /// DnatRules.
    pub dnat_rules: Store<DnatRule>,
    /// Pods.
    pub pods: Store<Pod>,
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    /// Nodes (gateway chassis).
    pub nodes: Store<Node>,
    /// Which of them have listed.
    pub listed: Listed,
}

/// Write sides of the caches (fed by watchers, or by tests).
pub struct Writers {
    /// Vpcs.
    pub vpcs: Writer<Vpc>,
    /// Subnets.
    pub subnets: Writer<Subnet>,
    /// IP objects.
    pub ips: Writer<Ip>,
    /// Eips.
    pub eips: Writer<Eip>,
    /// Fips.
    pub fips: Writer<Fip>,
    /// SnatRules.
    pub snat_rules: Writer<SnatRule>,
    /// DnatRules.
    pub dnat_rules: Writer<DnatRule>,
    /// Pods.
    pub pods: Writer<Pod>,
    /// Namespaces.
    pub namespaces: Writer<Namespace>,
    /// Nodes.
    pub nodes: Writer<Node>,
    listed: Listed,
}

impl Stores {
    /// Empty caches and their writers.
    pub fn new() -> (Stores, Writers) {
        let (vpcs, w_vpcs) = reflector::store();
        let (subnets, w_subnets) = reflector::store();
        let (ips, w_ips) = reflector::store();
        let (eips, w_eips) = reflector::store();
        let (fips, w_fips) = reflector::store();
        let (snat_rules, w_snat) = reflector::store();
        let (dnat_rules, w_dnat) = reflector::store();
        let (pods, w_pods) = reflector::store();
        let (namespaces, w_ns) = reflector::store();
        let (nodes, w_nodes) = reflector::store();
        let listed = Listed::new();
        (
            Stores {
                vpcs,
                subnets,
                ips,
                eips,
                fips,
                snat_rules,
                dnat_rules,
                pods,
                namespaces,
                nodes,
                listed: listed.clone(),
            },
            Writers {
                vpcs: w_vpcs,
                subnets: w_subnets,
                ips: w_ips,
                eips: w_eips,
                fips: w_fips,
                snat_rules: w_snat,
                dnat_rules: w_dnat,
                pods: w_pods,
                namespaces: w_ns,
                nodes: w_nodes,
                listed,
            },
        )
    }

    /// Waits until every cache has listed its kind once. A sync before that would see a
    /// partial world and delete the rows of objects not listed yet.
    pub async fn wait_until_ready(&self) {
        self.listed.wait().await
    }
}

impl Writers {
    /// Marks every cache as listed (what a watcher's first `InitDone` does).
    pub fn mark_ready(&mut self) {
        fn done<K: kube::Resource<DynamicType = ()> + Clone>(w: &mut Writer<K>) {
            w.apply_watcher_event(&watcher::Event::InitDone);
        }
        // InitDone swaps in the (empty) init buffer: apply objects after this, not before.
        done(&mut self.vpcs);
        done(&mut self.subnets);
        done(&mut self.ips);
        done(&mut self.eips);
        done(&mut self.fips);
        done(&mut self.snat_rules);
        done(&mut self.dnat_rules);
        done(&mut self.pods);
        done(&mut self.namespaces);
        done(&mut self.nodes);
        for c in [
            Cache::Vpcs,
            Cache::Subnets,
            Cache::Ips,
            Cache::Eips,
            Cache::Fips,
            Cache::SnatRules,
            Cache::DnatRules,
            Cache::Pods,
            Cache::Namespaces,
            Cache::Nodes,
        ] {
            self.listed.set(c);
        }
    }
}

/// Puts `obj` into a cache (tests and the watchers' apply events).
pub fn put<K>(w: &mut Writer<K>, obj: K)
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    w.apply_watcher_event(&watcher::Event::Apply(obj));
}

/// Removes `obj` from a cache.
pub fn remove<K>(w: &mut Writer<K>, obj: K)
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    w.apply_watcher_event(&watcher::Event::Delete(obj));
}
