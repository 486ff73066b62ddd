//! Ordinary Kubernetes YAML manifests (multi-document, files or directories) read into typed
//! objects for the standalone mode (`ovn-vpc apply -f`, `plan -f`, `node -f`). Kinds of other
//! API groups are skipped; an `ovnvpc.io` object or a Pod/Namespace/Node that does not parse
//! is an error naming the file, the document and the object.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use serde::Deserialize;

use crate::api::{DnatRule, Eip, Fip, Ip, Object, SnatRule, Subnet, Vpc};

/// Everything read from the manifests.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// Vpc, Subnet, Eip, Fip, SnatRule, DnatRule objects, in file order.
    pub objects: Vec<Object>,
    /// IP objects (allocations), when manifests carry them.
    pub ips: Vec<Ip>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// Nodes (gateway chassis selection in standalone mode).
    pub nodes: Vec<Node>,
    /// Documents skipped because their kind is not ours (`kind (apiVersion) in file`).
    pub skipped: Vec<String>,
}

/// A manifest that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML or not a valid object of its kind.
    #[error("{path}, document {document}{}: {message}", object.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based index of the document in the file.
        document: usize,
        /// `Kind/name`, when it could be read.
        object: Option<String>,
        /// What is wrong (serde's message names the field).
        message: String,
    },
}

/// Reads `paths` (files, or directories whose `*.yaml`/`*.yml`/`*.json` files are read in name
/// order).
pub fn load(paths: &[PathBuf]) -> Result<Manifests, ManifestError> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut out = Manifests::default();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| ManifestError::Io {
            path: f.clone(),
            source: e,
        })?;
        parse_into(&f, &text, &mut out)?;
    }
    Ok(out)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io = |e| ManifestError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let manifest = e
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
            if e.is_dir() || manifest {
                collect(&e, files)?;
            }
        }
        Ok(())
    } else {
        std::fs::metadata(path).map_err(io)?;
        files.push(path.to_path_buf());
        Ok(())
    }
}

/// Parses one file's text (multi-document YAML; JSON is YAML too).
pub fn parse_into(path: &Path, text: &str, out: &mut Manifests) -> Result<(), ManifestError> {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let invalid = |object: Option<String>, message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            document,
            object,
            message,
        };
        let value =
            serde_yaml::Value::deserialize(doc).map_err(|e| invalid(None, e.to_string()))?;
        if value.is_null() {
            continue; // an empty document (`---` at the end)
        }
        let kind = value["kind"].as_str().unwrap_or("").to_string();
        let api = value["apiVersion"].as_str().unwrap_or("").to_string();
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_string();
        let label = Some(format!("{kind}/{name}"));
        if kind.is_empty() || api.is_empty() {
            return Err(invalid(
                None,
                "not a Kubernetes object: kind and apiVersion are required".into(),
            ));
        }
        if name.is_empty() {
            return Err(invalid(label, "metadata.name is required".into()));
        }
        // serde_path_to_error names the field (`spec.cidrs`) that did not fit.
        macro_rules! typed {
            ($t:ty) => {
                serde_path_to_error::deserialize::<_, $t>(value.clone()).map_err(|e| {
                    let at = e.path().to_string();
                    let msg = if at == "." {
                        e.inner().to_string()
                    } else {
                        format!("{at}: {}", e.inner())
                    };
                    invalid(label.clone(), msg)
                })?
            };
        }
        let ours = api == "ovnvpc.io/v1";
        match (ours, kind.as_str(), api.as_str()) {
            (true, "Vpc", _) => out.objects.push(Object::Vpc(typed!(Vpc))),
            (true, "Subnet", _) => out.objects.push(Object::Subnet(typed!(Subnet))),
            (true, "Eip", _) => out.objects.push(Object::Eip(typed!(Eip))),
            (true, "Fip", _) => out.objects.push(Object::Fip(typed!(Fip))),
            (true, "SnatRule", _) => out.objects.push(Object::SnatRule(typed!(SnatRule))),
            (true, "DnatRule", _) => out.objects.push(Object::DnatRule(typed!(DnatRule))),
            (true, "IP", _) => out.ips.push(typed!(Ip)),
            (true, other, _) => {
                return Err(invalid(
                    label,
                    format!("unknown kind {other:?} in ovnvpc.io/v1"),
                ))
            }
            (false, "Pod", "v1") => out.pods.push(typed!(Pod)),
            (false, "Namespace", "v1") => out.namespaces.push(typed!(Namespace)),
            (false, "Node", "v1") => out.nodes.push(typed!(Node)),
            _ => out
                .skipped
                .push(format!("{kind}/{name} ({api}) in {}", path.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_manifests_are_sorted_by_kind_and_foreign_kinds_skipped() {
        let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec: {namespaces: [web]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net1}
spec: {vpc: vpc-a, cidrs: [10.0.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata:
  name: nginx-0
  namespace: web
  annotations: {ovnvpc.io/subnet: a-net1}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other}
---
"#;
        let mut m = Manifests::default();
        parse_into(Path::new("x.yaml"), text, &mut m).unwrap();
        assert_eq!(
            (m.objects.len(), m.pods.len(), m.namespaces.len()),
            (2, 1, 1)
        );
        assert_eq!(m.skipped, ["Deployment/other (apps/v1) in x.yaml"]);
        let ann = m.pods[0].metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["ovnvpc.io/subnet"], "a-net1");
    }

    #[test]
    fn errors_name_file_document_object_and_field() {
        let bad = "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: ok}\nspec: {}\n---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: s}\nspec: {vpc: a, cidrs: 3}\n";
        let e = parse_into(Path::new("m.yaml"), bad, &mut Manifests::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m.yaml, document 2 (Subnet/s): spec.cidrs"),
            "{e}"
        );
        for (text, want) in [
            ("kind: Vpc\n", "kind and apiVersion are required"),
            (
                "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {}\n",
                "metadata.name is required",
            ),
            (
                "apiVersion: ovnvpc.io/v1\nkind: Vcp\nmetadata: {name: x}\n",
                "unknown kind \"Vcp\"",
            ),
            ("a: [1,\n", "document 1"),
            (
                "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: v}\n",
                "(Vpc/v): missing field `spec`",
            ),
        ] {
            let e = parse_into(Path::new("m.yaml"), text, &mut Manifests::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn directories_are_read_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("b.yaml"),
            "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: b}\nspec: {}\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("a.yml"),
            "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: a}\nspec: {}\n",
        )
        .unwrap();
        std::fs::write(d.path().join("notes.txt"), "not yaml [").unwrap();
        let m = load(&[d.path().to_path_buf()]).unwrap();
        let names: Vec<String> = m
            .objects
            .iter()
            .map(|o| match o {
                Object::Vpc(v) => v.metadata.name.clone().unwrap(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(
            load(&[d.path().join("missing.yaml")]),
            Err(ManifestError::Io { .. })
        ));
    }
}
