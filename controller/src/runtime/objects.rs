//! Reconcile of our kinds (Vpc, Subnet, Eip, Fip, SnatRule, DnatRule) under the kube-rs
//! finalizer helper: Apply syncs and reports status; Cleanup syncs with the object left out,
//! checks that none of its rows remain, and only then lets the finalizer go. A VPC that still
//! has subnets keeps its rows and its finalizer, and says why.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::core::ClusterResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::status::{patch_status, ready_condition, warn};
use super::{Context, Error, Outcome};
use crate::api::{
    CommonStatus, Condition, DnatRule, Eip, EipStatus, Fip, SnatRule, Subnet, SubnetStatus, Vpc,
};

/// The finalizer on every object of ours: its OVN rows are removed before it goes.
pub const FINALIZER: &str = "ovnvpc.io/finalizer";

/// What the generic reconcile needs to know of a kind.
pub trait OurKind:
    Resource<DynamicType = (), Scope = ClusterResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// `Vpc`, `Subnet`, …
    const KIND: &'static str;
    /// The status as it is (JSON, `null` when absent).
    fn current_status(&self) -> Value;
    /// The conditions as they are.
    fn conditions(&self) -> Vec<Condition>;
    /// The status it should have after a sync, with this `Ready` condition.
    fn desired_status(&self, outcome: &Outcome, ready: Condition) -> Value;
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

macro_rules! our_kind {
    ($t:ty, $kind:literal, |$obj:ident, $outcome:ident, $ready:ident| $desired:expr) => {
        impl OurKind for $t {
            const KIND: &'static str = $kind;
            fn current_status(&self) -> Value {
                to_value(&self.status)
            }
            fn conditions(&self) -> Vec<Condition> {
                self.status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default()
            }
            fn desired_status(&self, $outcome: &Outcome, $ready: Condition) -> Value {
                let $obj = self;
                to_value(&Some($desired))
            }
        }
    };
    ($t:ty, $kind:literal) => {
        our_kind!($t, $kind, |_o, _outcome, ready| CommonStatus {
            conditions: vec![ready]
        });
    };
}

our_kind!(Vpc, "Vpc");
our_kind!(Fip, "Fip");
our_kind!(SnatRule, "SnatRule");
our_kind!(DnatRule, "DnatRule");
our_kind!(Subnet, "Subnet", |o, outcome, ready| {
    let u = outcome
        .usage
        .get(&o.name_any())
        .copied()
        .unwrap_or_default();
    SubnetStatus {
        v4_available: u.v4_available,
        v4_using: u.v4_using,
        v6_available: u.v6_available,
        v6_using: u.v6_using,
        conditions: vec![ready],
    }
});
our_kind!(Eip, "Eip", |o, outcome, ready| EipStatus {
    address: outcome.eips.get(&o.name_any()).map(|a| a.to_string()),
    conditions: vec![ready],
});

/// Reconciles one object of ours (the `Controller` reconciler).
#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", K::KIND, obj.name_any())))]
pub async fn reconcile_object<K: OurKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!("{}/{}", K::KIND, obj.name_any());
    if !ctx.leader.is_leader() {
        // Becoming leader reconciles everything again.
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let api: Api<K> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(&api, o, &ctx).await,
            Event::Cleanup(o) => cleanup(&api, o, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics.reconciled(
        K::KIND,
        started.elapsed(),
        result.as_ref().err().map(Error::label),
    );
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// The `Controller` error policy: log, Event, requeue with exponential backoff per object.
pub fn error_policy<K: OurKind>(obj: Arc<K>, e: &Error, ctx: Arc<Context>) -> Action {
    ctx.failed(&*obj, &format!("{}/{}", K::KIND, obj.name_any()), e)
}

async fn apply<K: OurKind>(api: &Api<K>, obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let key = format!("{}/{}", K::KIND, obj.name_any());
    let outcome = ctx.engine.sync().await?;
    let status = outcome.status(&key);
    let ready = ready_condition(status, &obj.conditions());
    let desired = obj.desired_status(&outcome, ready.clone());
    let wrote = patch_status(ctx, api, &*obj, obj.current_status(), desired).await?;
    if ready.status != "True" {
        if wrote {
            warn(ctx, &*obj, &ready.reason, &ready.message).await?;
        }
        // What it waits for may change without this object changing.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup<K: OurKind>(api: &Api<K>, obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let key = format!("{}/{}", K::KIND, obj.name_any());
    let outcome = ctx.engine.sync().await?;
    if let Some(s) = outcome
        .status(&key)
        .filter(|s| !s.ready && s.reason == "HasSubnets")
    {
        let ready = ready_condition(Some(s), &obj.conditions());
        let desired = obj.desired_status(&outcome, ready.clone());
        if patch_status(ctx, api, &*obj, obj.current_status(), desired).await? {
            warn(ctx, &*obj, &ready.reason, &ready.message).await?;
        }
        return Err(Error::Waiting(format!("{key}: {}", s.message)));
    }
    if ctx.engine.owns_rows(&key) {
        return Err(Error::Waiting(format!("{key}: OVN rows of it remain")));
    }
    Ok(Action::await_change())
}
