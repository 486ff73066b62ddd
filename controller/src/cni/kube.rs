//! Cluster mode: the pod's allocation is in the annotations the controller wrote, read from
//! the API server (kubeconfig named in the network configuration, else the usual inference:
//! `KUBECONFIG`, `~/.kube/config`, in-cluster).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::alloc::PodAnnotations;
use super::spec::{CniError, ErrorCode};

/// Annotations read once, before the plugin runs (the plugin's work is synchronous per pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefetched(pub Option<BTreeMap<String, String>>);

impl PodAnnotations for Prefetched {
    fn annotations(
        &self,
        _namespace: &str,
        _pod: &str,
    ) -> Result<Option<BTreeMap<String, String>>, CniError> {
        Ok(self.0.clone())
    }
}

fn unreachable(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::TryAgainLater, what, e.to_string())
}

/// A client for the cluster: from `kubeconfig` when given, else inferred.
pub async fn client(kubeconfig: Option<&str>) -> Result<kube::Client, CniError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| unreachable("cannot read the kubeconfig", e))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| unreachable("invalid kubeconfig", e))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| unreachable("no Kubernetes configuration", e))?,
    };
    kube::Client::try_from(config).map_err(|e| unreachable("cannot build a Kubernetes client", e))
}

/// The pod's annotations; `None` when the pod does not exist. An API server that cannot be
/// reached is "try again later" (code 11), so the runtime retries.
pub async fn pod_annotations(
    client: kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<Prefetched, CniError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let p = pods
        .get_opt(pod)
        .await
        .map_err(|e| unreachable("cannot read the pod from the API server", e))?;
    Ok(Prefetched(
        p.map(|p| p.metadata.annotations.unwrap_or_default()),
    ))
}
