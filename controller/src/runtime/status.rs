//! Status conditions and Events.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{Context, Error};
use crate::api::Condition;
use crate::translate::Status;

/// The `Ready` condition for `status` (ready when the sync said nothing about the object),
/// keeping `lastTransitionTime` from `old` when the condition did not flip.
pub(crate) fn ready_condition(status: Option<&Status>, old: &[Condition]) -> Condition {
    let (st, reason, message) = match status {
        Some(s) if !s.ready => ("False", s.reason.clone(), s.message.clone()),
        Some(s) => (
            "True",
            "Reconciled".to_string(),
            if s.message.is_empty() {
                "in OVN".to_string()
            } else {
                s.message.clone()
            },
        ),
        None => ("True", "Reconciled".to_string(), "in OVN".to_string()),
    };
    let previous = old.iter().find(|c| c.type_ == "Ready");
    let last_transition_time = match previous {
        Some(p) if p.status == st => p.last_transition_time.clone(),
        _ => Some(Timestamp::now().to_string()),
    };
    Condition {
        type_: "Ready".into(),
        status: st.into(),
        reason,
        message,
        last_transition_time,
    }
}

/// Merge-patches `status` when it differs from what the object has; returns whether it wrote.
pub(crate) async fn patch_status<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    current: Value,
    desired: Value,
) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if current == desired {
        return Ok(false);
    }
    ctx.leader.check()?;
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": desired })),
    )
    .await?;
    Ok(true)
}

/// Publishes a Warning Event on `obj` (failures and waits).
pub(crate) async fn warn<K>(ctx: &Context, obj: &K, reason: &str, note: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    ctx.leader.check()?;
    ctx.recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: reason.into(),
                note: Some(note.into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &obj.object_ref(&()),
        )
        .await?;
    Ok(())
}
