//! Uninstall in a cluster (`ovn-vpc uninstall --cluster`, the pre-delete Job in `deploy/`):
//! stop the controller first (it would put back what is removed), then the OVN rows go, then
//! our finalizers, so that nothing is left stuck in deletion when the controller is gone.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::{OurKind, FINALIZER};
use crate::api::{DnatRule, Eip, Fip, SnatRule, Subnet, Vpc};

async fn strip<K: OurKind>(
    client: &kube::Client,
    out: &mut Vec<String>,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::all(client.clone());
    for obj in api.list(&ListParams::default()).await? {
        let Some(i) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
            continue;
        };
        // Test-then-remove by index: fails rather than removing someone else's finalizer
        // if the list changed since it was read.
        let patch: json_patch::Patch = serde_json::from_value(json!([
            { "op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER },
            { "op": "remove", "path": format!("/metadata/finalizers/{i}") },
        ]))
        .map_err(kube::Error::SerdeError)?;
        match api
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => out.push(format!("{}/{}", K::KIND, obj.name_any())),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes `ovnvpc.io/finalizer` from every Vpc, Subnet, Eip, Fip, SnatRule and DnatRule;
/// returns the objects it changed (`Subnet/a`). Run it after the OVN rows are removed
/// (`ovn-vpc uninstall` removes them first) and after the controller is stopped, or it adds
/// them back.
pub async fn remove_finalizers(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let mut out = Vec::new();
    strip::<Vpc>(client, &mut out).await?;
    strip::<Subnet>(client, &mut out).await?;
    strip::<Eip>(client, &mut out).await?;
    strip::<Fip>(client, &mut out).await?;
    strip::<SnatRule>(client, &mut out).await?;
    strip::<DnatRule>(client, &mut out).await?;
    Ok(out)
}

/// Scales the controller Deployment `namespace/name` to zero and waits (up to `timeout`) until
/// no replica runs. A Deployment that does not exist is already stopped.
pub async fn stop_controller(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), super::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let scale = Patch::Merge(json!({ "spec": { "replicas": 0 } }));
    match api.patch_scale(name, &PatchParams::default(), &scale).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let d = api.get(name).await?;
        if d.status.and_then(|s| s.replicas).unwrap_or(0) == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(super::Error::Waiting(format!(
                "Deployment {namespace}/{name} still runs replicas after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
