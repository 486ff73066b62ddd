//! Ordinary Kubernetes YAML manifests (multi-document, files or directories) read into typed
//! objects for the standalone mode (`ovn-vpc apply -f`, `plan -f`, `node -f`). Kinds of other
//! API groups are skipped; an `ovnvpc.io` object or a Pod/Namespace/Node that does not parse
//! is an error naming the file, the document and the object.
//!
//! Hostile files are refused before they cost anything: only regular files are read from a
//! directory (a FIFO there would block forever, a link to `/dev/zero` would grow memory without
//! bound; such entries are skipped and listed in [`Manifests::skipped`]); a path named
//! explicitly must be a regular file, a directory, or a pipe (`-f <(kustomize build)`); each
//! file is read through a bounded reader ([`MAX_FILE_BYTES`]; metadata alone is not trusted,
//! `/proc`-like files report size 0); a document nested deeper than [`MAX_DEPTH`] is refused by
//! a linear scan before the YAML parser sees it (libyaml's cost grows with the square of the
//! flow nesting: 100,000 levels took 72 s). A UTF-8 byte order mark at the start of the file
//! or of a document is dropped.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use serde::Deserialize;

use crate::api::{DnatRule, Eip, Fip, Ip, NameRule, Object, SnatRule, Subnet, Vpc};

#[cfg(test)]
mod fuzz;
mod scan;

/// The largest manifest file read (64 MiB: a 100,000-pod world is about 15 MiB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The deepest nesting of a YAML document (mappings and sequences, block or flow): serde_yaml's
/// own recursion limit. Kubernetes objects nest a dozen levels.
pub const MAX_DEPTH: usize = 128;

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
    /// What was not read, and why: documents whose kind is not ours (`kind (apiVersion) in
    /// file`), directory entries that are not regular files (`path (a FIFO, not a regular
    /// file)`).
    pub skipped: Vec<String>,
    /// Where each object was read ((kind, namespace, name) → file and document), to name both
    /// places when one is given twice.
    seen: BTreeMap<(String, Option<String>, String), (PathBuf, usize)>,
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
    /// A path named on the command line is neither a regular file, a directory nor a pipe.
    #[error(
        "{path}: {what}, not a manifest file (only regular files, directories and pipes are read)"
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is (`a character device`).
        what: &'static str,
    },
    /// A file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: larger than {} MiB, the limit for one manifest file", limit >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
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

/// What a file that is not a regular one is, for a message.
fn what(t: std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// A file to read: a pipe named explicitly is read as it comes (it blocks until its writer
/// writes, which is what the caller asked for).
struct Source {
    path: PathBuf,
    pipe: bool,
}

/// Reads `paths` (files, or directories whose `*.yaml`/`*.yml`/`*.json` regular files are read
/// in name order, recursively).
pub fn load(paths: &[PathBuf]) -> Result<Manifests, ManifestError> {
    let mut out = Manifests::default();
    let mut files = Vec::new();
    let mut visited = BTreeSet::new();
    for p in paths {
        let io = |e| ManifestError::Io {
            path: p.clone(),
            source: e,
        };
        // Named explicitly: follow links; a directory is walked, a pipe is read, a device or
        // socket is an error (the caller asked for it by name, so skipping would hide it).
        let meta = std::fs::metadata(p).map_err(io)?;
        let t = meta.file_type();
        if t.is_dir() {
            walk(p, &mut files, &mut out.skipped, &mut visited)?;
        } else if t.is_file() || t.is_fifo() {
            if t.is_fifo() || visited.insert((meta.dev(), meta.ino())) {
                files.push(Source {
                    path: p.clone(),
                    pipe: t.is_fifo(),
                });
            }
        } else {
            return Err(ManifestError::NotAFile {
                path: p.clone(),
                what: what(t),
            });
        }
    }
    for f in files {
        let text = read(&f)?;
        parse_into(&f.path, &text, &mut out)?;
    }
    Ok(out)
}

/// Collects the manifest files under `dir`; anything that is not a regular file (after
/// following links) is skipped and listed; a directory seen before (a link loop) is skipped.
fn walk(
    dir: &Path,
    files: &mut Vec<Source>,
    skipped: &mut Vec<String>,
    visited: &mut BTreeSet<(u64, u64)>,
) -> Result<(), ManifestError> {
    let io = |e| ManifestError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(dir).map_err(io)?;
    if !visited.insert((meta.dev(), meta.ino())) {
        skipped.push(format!("{} (a directory already read)", dir.display()));
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        let manifest = e
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
        let meta = match std::fs::metadata(&e) {
            Ok(m) => m,
            Err(err) if manifest => {
                skipped.push(format!("{} ({err})", e.display()));
                continue;
            }
            Err(_) => continue,
        };
        let t = meta.file_type();
        if t.is_dir() {
            walk(&e, files, skipped, visited)?;
        } else if !manifest {
            continue;
        } else if !t.is_file() {
            skipped.push(format!("{} ({}, not a regular file)", e.display(), what(t)));
        } else if visited.insert((meta.dev(), meta.ino())) {
            files.push(Source {
                path: e,
                pipe: false,
            });
        }
    }
    Ok(())
}

/// Reads one file through a bounded reader. A regular file is opened non-blocking and checked
/// again on the open descriptor, so one swapped for a FIFO after the directory was listed
/// cannot block the read.
fn read(f: &Source) -> Result<String, ManifestError> {
    let io = |e| ManifestError::Io {
        path: f.path.clone(),
        source: e,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    if !f.pipe {
        opts.custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits());
    }
    let file = opts.open(&f.path).map_err(io)?;
    let t = file.metadata().map_err(io)?.file_type();
    if !(t.is_file() || (f.pipe && t.is_fifo())) {
        return Err(ManifestError::NotAFile {
            path: f.path.clone(),
            what: what(t),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ManifestError::TooLarge {
            path: f.path.clone(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

/// `name` as it can be shown in one line of a message: as is when it is plain, else quoted
/// with escapes and cut.
fn shown(name: &str) -> String {
    if name.len() <= 253 && name.chars().all(|c| c.is_ascii_graphic() && c != '"') {
        name.to_string()
    } else {
        let head: String = name.chars().take(80).collect();
        format!("{head:?}")
    }
}

/// Parses one file's text (multi-document YAML; JSON is YAML too).
pub fn parse_into(path: &Path, text: &str, out: &mut Manifests) -> Result<(), ManifestError> {
    let text: Cow<str> = scan::strip_boms(text);
    if let Err(deep) = scan::check_depth(&text, MAX_DEPTH) {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            document: deep.document,
            object: None,
            message: format!(
                "nested deeper than {MAX_DEPTH} levels (at line {}); not read",
                deep.line
            ),
        });
    }
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let document = i + 1;
        // serde's and libyaml's words may quote a value as it came.
        let invalid = |object: Option<String>, message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            document,
            object,
            message: crate::api::one_line(&message),
        };
        let value =
            serde_yaml::Value::deserialize(doc).map_err(|e| invalid(None, e.to_string()))?;
        if value.is_null() {
            continue; // an empty document (`---` at the end)
        }
        let kind = value["kind"].as_str().unwrap_or("").to_string();
        let api = value["apiVersion"].as_str().unwrap_or("").to_string();
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_string();
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
        let label = Some(format!("{}/{}", shown(&kind), shown(&name)));
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
        // Fields of kinds `validate` does not see, checked here where file and document are
        // known.
        let check = |problems: Vec<(String, String)>| match problems.into_iter().next() {
            Some((field, m)) => Err(invalid(label.clone(), format!("{field}: {m}"))),
            None => Ok(()),
        };
        let ours = api == "ovnvpc.io/v1";
        match (ours, kind.as_str(), api.as_str()) {
            (true, "Vpc", _) => out.objects.push(Object::Vpc(typed!(Vpc))),
            (true, "Subnet", _) => out.objects.push(Object::Subnet(typed!(Subnet))),
            (true, "Eip", _) => out.objects.push(Object::Eip(typed!(Eip))),
            (true, "Fip", _) => out.objects.push(Object::Fip(typed!(Fip))),
            (true, "SnatRule", _) => out.objects.push(Object::SnatRule(typed!(SnatRule))),
            (true, "DnatRule", _) => out.objects.push(Object::DnatRule(typed!(DnatRule))),
            (true, "IP", _) => {
                let ip = typed!(Ip);
                check(checks::ip(&ip))?;
                out.ips.push(ip)
            }
            (true, other, _) => {
                return Err(invalid(
                    label,
                    format!("unknown kind {:?} in ovnvpc.io/v1", shown(other)),
                ))
            }
            (false, "Pod", "v1") => out.pods.push(typed!(Pod)),
            (false, "Namespace", "v1") => {
                let ns = typed!(Namespace);
                check(checks::name(NameRule::Label, &name))?;
                out.namespaces.push(ns)
            }
            (false, "Node", "v1") => {
                let node = typed!(Node);
                check(checks::node(&node))?;
                out.nodes.push(node)
            }
            _ => {
                out.skipped.push(format!(
                    "{}/{} ({}) in {}",
                    shown(&kind),
                    shown(&name),
                    shown(&api),
                    path.display()
                ));
                continue;
            }
        }
        // The same object twice: which one would win is not for us to guess. Keyed by parts,
        // not by a joined string: `b/c` in `a` and `c` in `a/b` are two (invalid) objects.
        let namespace = namespace.filter(|_| kind == "Pod");
        let key = (kind.clone(), namespace.clone(), name.clone());
        if let Some((p, d)) = out.seen.get(&key) {
            let shown_key = match &namespace {
                Some(ns) => format!("{}/{}/{}", shown(&kind), shown(ns), shown(&name)),
                None => format!("{}/{}", shown(&kind), shown(&name)),
            };
            return Err(invalid(
                label,
                format!(
                    "metadata.name: {shown_key} is also given in {}, document {d}; each object \
                     may appear once",
                    p.display()
                ),
            ));
        }
        out.seen.insert(key, (path.to_path_buf(), document));
    }
    Ok(())
}

mod checks {
    //! Field checks of the kinds only the manifests carry (IP, Node, Namespace): each returns
    //! (field, what is wrong).

    use std::net::IpAddr;

    use k8s_openapi::api::core::v1::Node;
    use kube::ResourceExt;

    use crate::api::{Ip, NameRule};
    use crate::ipam::Mac;

    pub(super) fn name(rule: NameRule, name: &str) -> Vec<(String, String)> {
        match rule.check(name) {
            Ok(()) => Vec::new(),
            Err(m) => vec![("metadata.name".into(), m)],
        }
    }

    pub(super) fn node(n: &Node) -> Vec<(String, String)> {
        let mut out = name(NameRule::Subdomain, &n.name_any());
        if let Some(c) = n.annotations().get(crate::standalone::CHASSIS_ANNOTATION) {
            if c.is_empty() || c.chars().any(|c| c.is_control() || c.is_whitespace()) {
                out.push((
                    format!(
                        "metadata.annotations[{}]",
                        crate::standalone::CHASSIS_ANNOTATION
                    ),
                    format!(
                        "{c:?} is not a chassis name (empty, whitespace or control characters)"
                    ),
                ));
            }
        }
        out
    }

    /// An allocation record: what it seeds goes into a port as it is.
    pub(super) fn ip(ip: &Ip) -> Vec<(String, String)> {
        let mut out = name(NameRule::Subdomain, &ip.name_any());
        let s = &ip.spec;
        for (field, v) in [("spec.subnet", &s.subnet), ("spec.vpc", &s.vpc)] {
            if let Err(m) = NameRule::Label.check(v) {
                out.push((field.into(), m));
            }
        }
        let parts: Vec<&str> = s.owner.split('/').collect();
        let owner_ok = match parts.as_slice() {
            ["Pod", ns, pod] => {
                NameRule::Label.check(ns).is_ok() && NameRule::Subdomain.check(pod).is_ok()
            }
            ["Eip", n] => NameRule::Subdomain.check(n).is_ok(),
            ["Vpc", n] => NameRule::Label.check(n).is_ok(),
            _ => false,
        };
        if !owner_ok {
            out.push((
                "spec.owner".into(),
                format!(
                    "{:?} is not Pod/namespace/name, Eip/name or Vpc/name",
                    s.owner.chars().take(80).collect::<String>()
                ),
            ));
        }
        let mut seen: Vec<IpAddr> = Vec::new();
        for (i, a) in s.ips.iter().enumerate() {
            match a.parse::<IpAddr>() {
                Err(_) => out.push((
                    format!("spec.ips[{i}]"),
                    format!(
                        "{:?} is not an IP address",
                        a.chars().take(80).collect::<String>()
                    ),
                )),
                Ok(a) if seen.iter().any(|o| o.is_ipv4() == a.is_ipv4()) => out.push((
                    format!("spec.ips[{i}]"),
                    format!("{a}: a second address of one family"),
                )),
                Ok(a) => seen.push(a),
            }
        }
        if s.owner.starts_with("Pod/") || !s.mac.is_empty() {
            match s.mac.parse::<Mac>() {
                Err(e) => out.push(("spec.mac".into(), e.to_string())),
                Ok(m) if m.is_multicast() || m.is_zero() => {
                    out.push(("spec.mac".into(), format!("{m} is not a unicast MAC")))
                }
                Ok(_) => {}
            }
        }
        out
    }
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

    fn vpc(name: &str) -> String {
        format!("apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {{name: {name}}}\nspec: {{}}\n")
    }

    /// `load` on another thread, so a blocking read fails the test instead of hanging it.
    fn load_within(paths: Vec<PathBuf>) -> Result<Manifests, ManifestError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load(&paths));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("load blocked")
    }

    #[test]
    fn only_regular_files_are_read_from_a_directory_and_the_rest_is_listed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), vpc("a")).unwrap();
        nix::unistd::mkfifo(&d.path().join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero.yaml")).unwrap();
        std::os::unix::fs::symlink("missing", d.path().join("dangling.yaml")).unwrap();
        // A link back up is read once, not forever.
        std::os::unix::fs::symlink(d.path(), d.path().join("loop")).unwrap();
        let m = load_within(vec![d.path().to_path_buf()]).unwrap();
        assert_eq!(m.objects.len(), 1);
        let skipped = m.skipped.join("\n");
        for want in [
            "fifo.yaml (a FIFO, not a regular file)",
            "zero.yaml (a character device, not a regular file)",
            "dangling.yaml (No such file or directory",
            "loop (a directory already read)",
        ] {
            assert!(skipped.contains(want), "{want:?} not in {skipped}");
        }
        // Named explicitly, a device is an error; the same file twice is read once.
        let e = load_within(vec!["/dev/zero".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/dev/zero: a character device, not a manifest file (only regular files, \
             directories and pipes are read)"
        );
        let a = d.path().join("a.yaml");
        assert_eq!(load_within(vec![a.clone(), a]).unwrap().objects.len(), 1);
    }

    #[test]
    fn a_file_is_read_through_a_bounded_reader() {
        let d = tempfile::tempdir().unwrap();
        // Sparse: its metadata says large, reading it proves it.
        let big = d.path().join("big.yaml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let e = load_within(vec![big]).unwrap_err();
        assert!(
            matches!(e, ManifestError::TooLarge { limit, .. } if limit == MAX_FILE_BYTES),
            "{e}"
        );
        assert!(e
            .to_string()
            .ends_with("big.yaml: larger than 64 MiB, the limit for one manifest file"));
        // /proc files report size 0; they are read all the same.
        let m = load_within(vec!["/proc/self/status".into()]);
        assert!(matches!(m, Err(ManifestError::Invalid { .. })), "{m:?}");
        // A pipe named explicitly is read (`-f <(kustomize build)`).
        let fifo = d.path().join("pipe.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, vpc("piped")).unwrap())
        };
        assert_eq!(load_within(vec![fifo]).unwrap().objects.len(), 1);
        writer.join().unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_quickly_naming_file_and_document() {
        let started = std::time::Instant::now();
        let deep = format!(
            "{}---\napiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {{name: v}}\nspec: {}x{}\n",
            vpc("ok"),
            "{a: ".repeat(100_000),
            "}".repeat(100_000)
        );
        let e = parse_into(Path::new("d.yaml"), &deep, &mut Manifests::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.yaml, document 2: nested deeper than 128 levels (at line 9); not read"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Block nesting too.
        let mut block = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\nx:\n");
        for i in 1..200 {
            block.push_str(&format!("{}a:\n", " ".repeat(i)));
        }
        let e = parse_into(Path::new("b.yaml"), &block, &mut Manifests::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nested deeper than 128 levels"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_at_file_or_document_start_is_accepted() {
        let text = format!("\u{feff}{}---\n\u{feff}{}", vpc("a"), vpc("b"));
        let mut m = Manifests::default();
        parse_into(Path::new("bom.yaml"), &text, &mut m).unwrap();
        assert_eq!(m.objects.len(), 2);
    }

    #[test]
    fn the_same_object_twice_is_refused_naming_both_places() {
        let mut m = Manifests::default();
        parse_into(Path::new("a.yaml"), &vpc("x"), &mut m).unwrap();
        let e = parse_into(
            Path::new("b.yaml"),
            &format!("{}---\n{}", vpc("y"), vpc("x")),
            &mut m,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "b.yaml, document 2 (Vpc/x): metadata.name: Vpc/x is also given in a.yaml, \
             document 1; each object may appear once"
        );
        // Pods are told apart by namespace; a Subnet and a Vpc of one name are two objects.
        let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec: {containers: []}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: b}\nspec: {containers: []}\n---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: x}\nspec: {cidrs: [10.0.0.0/24]}\n";
        parse_into(Path::new("c.yaml"), pods, &mut m).unwrap();
        let e = parse_into(Path::new("d.yaml"), pods, &mut m)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Pod/a/p is also given in c.yaml, document 1"),
            "{e}"
        );
    }

    #[test]
    fn ip_node_and_namespace_fields_are_checked_where_they_are_read() {
        for (text, want) in [
            ("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
             "(Namespace/a.b): metadata.name: \"a.b\" is not a valid name: '.' is not allowed"),
            ("apiVersion: v1\nkind: Node\nmetadata: {name: n1, annotations: {ovnvpc.io/chassis: \"a\\0b\"}}\n",
             "metadata.annotations[ovnvpc.io/chassis]: \"a\\0b\" is not a chassis name"),
            ("apiVersion: ovnvpc.io/v1\nkind: IP\nmetadata: {name: p.ns}\nspec: {subnet: s, vpc: v, owner: Pod/ns/p, ips: [10.0.0.5], mac: \"zz:zz\"}\n",
             "(IP/p.ns): spec.mac: \"zz:zz\" is not a MAC address"),
            ("apiVersion: ovnvpc.io/v1\nkind: IP\nmetadata: {name: p.ns}\nspec: {subnet: s, vpc: v, owner: Pod/ns/p, ips: [10.0.0.x], mac: \"0a:00:00:00:00:01\"}\n",
             "spec.ips[0]: \"10.0.0.x\" is not an IP address"),
            ("apiVersion: ovnvpc.io/v1\nkind: IP\nmetadata: {name: p.ns}\nspec: {subnet: s, vpc: v, owner: Pod/a/b/c, ips: [], mac: \"0a:00:00:00:00:01\"}\n",
             "spec.owner: \"Pod/a/b/c\" is not Pod/namespace/name"),
        ] {
            let e = parse_into(Path::new("m.yaml"), text, &mut Manifests::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "want {want}\ngot {e}");
        }
    }
}
