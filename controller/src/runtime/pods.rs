//! Pods and their IP objects: a pod's allocation goes to its annotations (what the CNI plugin
//! reads) after the sync recorded it in an IP object and OVN; a pod that waits for its subnet
//! gets an Event. The IP reconcile is the garbage collector: an IP whose pod is gone (or is a
//! different pod of the same name) is released — port removed from OVN, then the IP deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use super::status::warn;
use super::world::addressable;
use super::{Context, Error};
use crate::api::{Ip, Subnet};
use crate::translate::{pod_key, subnet_gateways, Allocation, IP_ANNOTATION, MAC_ANNOTATION};

/// The name of the IP object of a pod: `name.namespace` (namespaces have no dots, so this is
/// unique cluster-wide).
pub fn ip_name(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}")
}

/// Set to `"true"` once the other allocation annotations are written.
pub const ALLOCATED_ANNOTATION: &str = "ovnvpc.io/allocated";
/// The CIDRs of the pod's subnet.
pub const CIDR_ANNOTATION: &str = "ovnvpc.io/cidr";
/// The gateways of the pod's subnet.
pub const GATEWAY_ANNOTATION: &str = "ovnvpc.io/gateway";
/// The logical switch (= subnet name).
pub const LOGICAL_SWITCH_ANNOTATION: &str = "ovnvpc.io/logical_switch";

/// The annotations a pod with allocation `a` in `subnet` carries (comma-separated per family).
pub fn allocation_annotations(a: &Allocation, subnet: Option<&Subnet>) -> BTreeMap<String, String> {
    let nets = subnet.map(subnet_gateways).unwrap_or_default();
    let join = |v: Vec<String>| v.join(",");
    let mut out = BTreeMap::new();
    out.insert(ALLOCATED_ANNOTATION.to_string(), "true".to_string());
    out.insert(
        IP_ANNOTATION.to_string(),
        join(a.ips.iter().map(|i| i.to_string()).collect()),
    );
    out.insert(MAC_ANNOTATION.to_string(), a.mac.clone());
    out.insert(
        CIDR_ANNOTATION.to_string(),
        join(nets.iter().map(|(n, _)| n.to_string()).collect()),
    );
    out.insert(
        GATEWAY_ANNOTATION.to_string(),
        join(nets.iter().map(|(_, g)| g.to_string()).collect()),
    );
    out.insert(LOGICAL_SWITCH_ANNOTATION.to_string(), a.subnet.clone());
    out
}

/// Reconciles one pod: sync, then write its allocation annotations (only when they differ),
/// or publish why it waits.
#[tracing::instrument(skip_all, fields(object = %pod_key(&pod)))]
pub async fn reconcile_pod(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.is_leader() || !addressable(&pod) || pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let result = allocate(&pod, &ctx).await;
    ctx.metrics.reconciled(
        "Pod",
        started.elapsed(),
        result.as_ref().err().map(Error::label),
    );
    if result.is_ok() {
        ctx.succeeded(&pod_key(&pod));
    }
    result
}

async fn allocate(pod: &Pod, ctx: &Context) -> Result<Action, Error> {
    let key = pod_key(pod);
    let outcome = ctx.engine.sync().await?;
    let Some(a) = outcome.allocations.get(&key) else {
        let (reason, message) = outcome
            .status(&key)
            .map(|s| (s.reason.clone(), s.message.clone()))
            .unwrap_or_else(|| {
                (
                    "SubnetNotReady".into(),
                    "waiting for a subnet to take an address from".into(),
                )
            });
        warn(ctx, pod, &reason, &message).await?;
        return Ok(Action::requeue(Duration::from_secs(15)));
    };
    let subnet = ctx.engine.stores().subnets.get(&ObjectRef::new(&a.subnet));
    let want = allocation_annotations(a, subnet.as_deref());
    let have = pod.annotations();
    if want.iter().any(|(k, v)| have.get(k) != Some(v)) {
        ctx.leader.check()?;
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        api.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": want } })),
        )
        .await?;
    }
    Ok(Action::await_change())
}

/// Error policy of the Pod controller.
pub fn pod_error_policy(pod: Arc<Pod>, e: &Error, ctx: Arc<Context>) -> Action {
    ctx.failed(&*pod, &pod_key(&pod), e)
}

/// Error policy of the IP controller.
pub fn ip_error_policy(ip: Arc<Ip>, e: &Error, ctx: Arc<Context>) -> Action {
    ctx.failed(&*ip, &format!("IP/{}", ip.name_any()), e)
}

/// Whether the pod an IP object records is still there (same uid) and still takes an address.
fn owner_alive(ip: &Ip, ctx: &Context) -> bool {
    let Some((ns, name)) = ip
        .spec
        .owner
        .strip_prefix("Pod/")
        .and_then(|r| r.split_once('/'))
    else {
        return true; // not a pod's: not ours to collect
    };
    let uid = ip
        .owner_references()
        .iter()
        .find(|o| o.kind == "Pod")
        .map(|o| o.uid.clone());
    ctx.engine
        .stores()
        .pods
        .get(&ObjectRef::new(name).within(ns))
        .is_some_and(|p| addressable(&p) && (uid.is_none() || p.uid() == uid))
}

/// Reconciles one IP object: keeps it while its pod lives (checked again every 10 minutes:
/// the periodic garbage collection), releases it when the pod is gone.
#[tracing::instrument(skip_all, fields(object = %ip.name_any()))]
pub async fn reconcile_ip(ip: Arc<Ip>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    // A pod cache that has not listed yet would make every IP look orphaned.
    ctx.engine.caches_ready().await?;
    if owner_alive(&ip, &ctx) {
        return Ok(Action::requeue(Duration::from_secs(600)));
    }
    let started = std::time::Instant::now();
    let result = release(&ip, &ctx).await;
    ctx.metrics.reconciled(
        "IP",
        started.elapsed(),
        result.as_ref().err().map(Error::label),
    );
    result
}

async fn release(ip: &Ip, ctx: &Context) -> Result<Action, Error> {
    ctx.engine.release(&ip.spec.owner).await;
    // The pod is not in the world any more: this removes its port.
    ctx.engine.sync().await?;
    ctx.leader.check()?;
    let api: Api<Ip> = Api::all(ctx.client.clone());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: ip.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&ip.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(ip = %ip.name_any(), owner = %ip.spec.owner, "released");
    Ok(Action::await_change())
}
