//! Every manifest in deploy/ is a valid Kubernetes object: each document deserializes into its
//! k8s-openapi type and serializes back to the same document (so a misspelt or misplaced
//! field, which serde would otherwise skip, fails), the CRDs are the generated ones, and the
//! pieces fit together (service accounts exist, RBAC has no wildcards, two leader-elected
//! controller replicas).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document under deploy/, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            let json: Value = serde_json::to_value(v).unwrap();
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), json));
        }
    }
    out
}

fn round_trip<T: DeserializeOwned + Serialize>(file: &str, doc: &Value) -> T {
    let typed: T = serde_path_to_error::deserialize(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: {} at {}", e.inner(), e.path()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{file}: {} {} has fields its type does not know (or wrong types)",
        doc["kind"], doc["metadata"]["name"]
    );
    typed
}

#[test]
fn every_manifest_parses_as_its_kubernetes_type() {
    let docs = documents();
    assert!(docs.len() > 15, "{}", docs.len());
    let mut accounts = BTreeSet::new();
    let mut used_accounts = BTreeSet::new();
    let mut deployments = Vec::new();
    for (file, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        match kind {
            "Namespace" => drop(round_trip::<Namespace>(file, doc)),
            "ConfigMap" => drop(round_trip::<ConfigMap>(file, doc)),
            "ServiceAccount" => {
                let sa: ServiceAccount = round_trip(file, doc);
                accounts.insert(sa.metadata.name.unwrap());
            }
            "ClusterRole" | "Role" => {
                let rules = if kind == "Role" {
                    round_trip::<Role>(file, doc).rules
                } else {
                    round_trip::<ClusterRole>(file, doc).rules
                };
                for r in rules.unwrap_or_default() {
                    let all = r
                        .verbs
                        .iter()
                        .chain(r.resources.iter().flatten())
                        .chain(r.api_groups.iter().flatten());
                    for x in all {
                        assert_ne!(x, "*", "{file}: wildcard in {}", doc["metadata"]["name"]);
                    }
                }
            }
            "ClusterRoleBinding" => {
                for s in round_trip::<ClusterRoleBinding>(file, doc)
                    .subjects
                    .unwrap_or_default()
                {
                    used_accounts.insert(s.name);
                }
            }
            "RoleBinding" => {
                for s in round_trip::<RoleBinding>(file, doc)
                    .subjects
                    .unwrap_or_default()
                {
                    used_accounts.insert(s.name);
                }
            }
            "Deployment" => {
                let d: Deployment = round_trip(file, doc);
                let pod = d.spec.template.spec.clone().unwrap();
                used_accounts.insert(pod.service_account_name.clone().unwrap());
                deployments.push(d);
            }
            "DaemonSet" => {
                let d: DaemonSet = round_trip(file, doc);
                let pod = d.spec.template.spec.unwrap();
                used_accounts.insert(pod.service_account_name.unwrap());
                assert_eq!(
                    pod.containers[0].args.as_deref(),
                    Some(&["node".to_string()][..])
                );
            }
            "Job" => {
                let j: Job = round_trip(file, doc);
                let pod = j.spec.unwrap().template.spec.unwrap();
                used_accounts.insert(pod.service_account_name.unwrap());
                assert_eq!(
                    pod.containers[0].args.as_deref(),
                    Some(&["uninstall".to_string(), "--cluster".to_string()][..])
                );
                assert_eq!(
                    j.metadata.annotations.unwrap()["helm.sh/hook"],
                    "pre-delete"
                );
            }
            "CustomResourceDefinition" => drop(round_trip::<CustomResourceDefinition>(file, doc)),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }
    assert_eq!(accounts, used_accounts, "service accounts defined vs used");
    assert_eq!(deployments.len(), 1);
    let spec = &deployments[0].spec;
    assert_eq!(spec.replicas, Some(2));
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.args.as_ref().unwrap()[0], "controller");
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"));
}

#[test]
fn deploy_crds_are_the_generated_ones() {
    let docs: Vec<Value> = documents()
        .into_iter()
        .filter(|(f, _)| f == "crds.yaml")
        .map(|(_, d)| d)
        .collect();
    let generated: Vec<Value> = ovn_vpc::api::crds()
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    assert_eq!(docs, generated);
}
