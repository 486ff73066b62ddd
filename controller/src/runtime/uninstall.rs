//! Removing our finalizers from every object, so that nothing is left stuck in deletion when
//! the controller is removed before the objects (`ovn-vpc uninstall` in a cluster, and the
//! pre-delete Job in `deploy/`).

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
