//! The containerized OVN central (`docker-compose.yml` + `docker/ovn-central/`): the compose
//! file must be accepted by the real `docker-compose` (Debian's 1.29, which `scripts/setup`
//! installs; `config` needs no Docker engine), and must wire what the README promises: NB on
//! 127.0.0.1:6641, SB on 127.0.0.1:6642, health checks, persistent volumes, and ovn-northd
//! pointed at the two database services.

use std::path::PathBuf;
use std::process::Command;

use ovn_vpc_tests::run;
use serde_yaml::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose_file() -> PathBuf {
    repo_root().join("docker-compose.yml")
}

/// Fails (never skips) when the tool is missing: the project's setup installs it.
fn require_docker_compose() {
    match Command::new("docker-compose").arg("version").output() {
        Ok(out) => assert!(
            out.status.success(),
            "`docker-compose version` failed: {}; run scripts/setup to (re)install docker-compose",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "docker-compose is not installed ({e}): run scripts/setup, which installs it \
             (Debian package docker-compose)"
        ),
    }
}

fn load() -> Value {
    let text = std::fs::read_to_string(compose_file()).expect("read docker-compose.yml");
    serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name} missing from docker-compose.yml"))
}

/// A scalar (string or number) as a string.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The service's published ports as (host_ip, published, target), short or long syntax.
fn ports(svc: &Value) -> Vec<(String, String, String)> {
    let Some(list) = svc["ports"].as_sequence() else {
        return Vec::new();
    };
    list.iter()
        .map(|p| match p {
            Value::Mapping(_) => (
                p.get("host_ip").and_then(scalar).unwrap_or_default(),
                p.get("published").and_then(scalar).unwrap_or_default(),
                p.get("target").and_then(scalar).unwrap_or_default(),
            ),
            other => {
                let s = scalar(other).expect("port entry is a string");
                let s = s.split('/').next().unwrap().to_string(); // drop "/tcp"
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [ip, published, target] => {
                        (ip.to_string(), published.to_string(), target.to_string())
                    }
                    [published, target] => {
                        (String::new(), published.to_string(), target.to_string())
                    }
                    [target] => (String::new(), String::new(), target.to_string()),
                    _ => panic!("unexpected port entry {s}"),
                }
            }
        })
        .collect()
}

/// The service's mounts as (source, target), short or long syntax.
fn mounts(svc: &Value) -> Vec<(String, String)> {
    let Some(list) = svc["volumes"].as_sequence() else {
        return Vec::new();
    };
    list.iter()
        .map(|m| match m {
            Value::Mapping(_) => (
                m.get("source").and_then(scalar).unwrap_or_default(),
                m.get("target").and_then(scalar).unwrap_or_default(),
            ),
            other => {
                let s = scalar(other).expect("volume entry is a string");
                let mut parts = s.split(':');
                (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                )
            }
        })
        .collect()
}

/// One environment variable of a service, map or `KEY=VALUE` list syntax.
fn env_var(svc: &Value, key: &str) -> Option<String> {
    match &svc["environment"] {
        Value::Mapping(m) => m.get(key).and_then(scalar),
        Value::Sequence(list) => list.iter().filter_map(Value::as_str).find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }),
        _ => None,
    }
}

/// `command` as a list of words (list or string syntax).
fn command(svc: &Value) -> Vec<String> {
    match &svc["command"] {
        Value::Sequence(list) => list.iter().filter_map(scalar).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        other => panic!("unexpected command {other:?}"),
    }
}

#[test]
fn docker_compose_accepts_the_file() {
    require_docker_compose();
    let file = compose_file();
    let file = file.to_str().unwrap();
    run("docker-compose", &["-f", file, "config", "--quiet"]);
}

#[test]
fn entrypoint_is_valid_posix_sh() {
    let entry = repo_root().join("docker/ovn-central/entrypoint.sh");
    let text = std::fs::read_to_string(&entry).expect("docker/ovn-central/entrypoint.sh exists");
    assert!(text.starts_with("#!/bin/sh"), "entrypoint must be POSIX sh");
    assert!(text.contains("set -eu"), "entrypoint must `set -eu`");
    run("sh", &["-n", entry.to_str().unwrap()]);
    assert!(text.contains("northd)"), "entrypoint handles role northd");
    for needle in [
        ".ovsschema",
        "ovsdb-tool create",
        "needs-conversion",
        "ovsdb-tool convert",
        "nb) run_db nb 6641",
        "sb) run_db sb 6642",
        "exec ovsdb-server",
        "exec ovn-northd",
    ] {
        assert!(text.contains(needle), "entrypoint mentions {needle}");
    }
    assert!(
        !text.contains("--detach"),
        "daemons must run in the foreground"
    );
}

#[test]
fn dockerfile_installs_ovn_central() {
    let path = repo_root().join("docker/ovn-central/Dockerfile");
    let text = std::fs::read_to_string(&path).expect("docker/ovn-central/Dockerfile exists");
    assert!(
        text.contains("FROM debian:bookworm-slim"),
        "Debian bookworm base"
    );
    let install = text
        .lines()
        .skip_while(|l| !l.contains("apt-get install"))
        .take_while(|l| l.trim_end().ends_with('\\') || l.contains("apt-get install"))
        .collect::<Vec<_>>()
        .join(" ");
    let install = if install.is_empty() {
        text.clone()
    } else {
        install
    };
    assert!(
        install.contains("ovn-central"),
        "Dockerfile installs ovn-central: {install}"
    );
    assert!(
        install.contains("openvswitch-common"),
        "Dockerfile installs openvswitch-common"
    );
    assert!(
        text.contains("entrypoint.sh"),
        "Dockerfile installs the entrypoint"
    );
}

#[test]
fn compose_wires_nb_sb_and_northd() {
    let doc = load();
    let nb = service(&doc, "ovn-nb");
    let sb = service(&doc, "ovn-sb");
    let northd = service(&doc, "ovn-northd");

    // One image for the three roles, built from docker/ovn-central.
    for (name, svc, role) in [
        ("ovn-nb", nb, "nb"),
        ("ovn-sb", sb, "sb"),
        ("ovn-northd", northd, "northd"),
    ] {
        let context = svc["build"]["context"]
            .as_str()
            .or_else(|| svc["build"].as_str())
            .unwrap_or_else(|| panic!("{name} has no build context"));
        assert_eq!(
            context.trim_start_matches("./").trim_end_matches('/'),
            "docker/ovn-central"
        );
        assert_eq!(
            svc["image"].as_str(),
            Some("ovn-vpc/ovn-central:bookworm"),
            "{name} image"
        );
        assert_eq!(command(svc), vec![role.to_string()], "{name} command");
        assert!(
            svc["healthcheck"]["test"]
                .as_sequence()
                .is_some_and(|t| !t.is_empty())
                || svc["healthcheck"]["test"].as_str().is_some(),
            "{name} has a healthcheck"
        );
        assert_eq!(
            svc["restart"].as_str(),
            Some("unless-stopped"),
            "{name} restart policy"
        );
    }

    // Databases published on the host's loopback only.
    let nb_ports = ports(nb);
    assert!(
        nb_ports.contains(&("127.0.0.1".into(), "6641".into(), "6641".into())),
        "NB publishes 127.0.0.1:6641: {nb_ports:?}"
    );
    let sb_ports = ports(sb);
    assert!(
        sb_ports.contains(&("127.0.0.1".into(), "6642".into(), "6642".into())),
        "SB publishes 127.0.0.1:6642: {sb_ports:?}"
    );
    for (name, svc) in [("ovn-nb", nb), ("ovn-sb", sb), ("ovn-northd", northd)] {
        for (ip, published, _) in ports(svc) {
            assert_eq!(
                ip, "127.0.0.1",
                "{name} publishes {published} beyond loopback"
            );
        }
    }

    // Health checks probe the right sockets.
    let probe = |svc: &Value| -> String {
        match &svc["healthcheck"]["test"] {
            Value::Sequence(t) => t.iter().filter_map(scalar).collect::<Vec<_>>().join(" "),
            other => scalar(other).unwrap_or_default(),
        }
    };
    assert!(probe(nb).contains("ovsdb-client list-dbs unix:/var/run/ovn/ovnnb_db.sock"));
    assert!(probe(sb).contains("ovsdb-client list-dbs unix:/var/run/ovn/ovnsb_db.sock"));
    assert!(probe(northd).contains("ovs-appctl -t /var/run/ovn/ovn-northd.ctl status"));

    // Named persistent volumes, declared and mounted at /var/lib/ovn.
    let declared = doc["volumes"].as_mapping().expect("top-level volumes");
    for vol in ["ovn-nb-data", "ovn-sb-data"] {
        assert!(declared.contains_key(vol), "volume {vol} declared");
    }
    assert!(
        mounts(nb).contains(&("ovn-nb-data".into(), "/var/lib/ovn".into())),
        "NB mounts ovn-nb-data"
    );
    assert!(
        mounts(sb).contains(&("ovn-sb-data".into(), "/var/lib/ovn".into())),
        "SB mounts ovn-sb-data"
    );

    // ovn-northd talks to the two database services (explicitly, or through the entrypoint's
    // defaults) and waits for them to be healthy.
    let entry =
        std::fs::read_to_string(repo_root().join("docker/ovn-central/entrypoint.sh")).unwrap();
    let nb_remote = env_var(northd, "OVN_NB_DB");
    let sb_remote = env_var(northd, "OVN_SB_DB");
    assert_eq!(
        nb_remote.as_deref().unwrap_or("tcp:ovn-nb:6641"),
        "tcp:ovn-nb:6641"
    );
    assert_eq!(
        sb_remote.as_deref().unwrap_or("tcp:ovn-sb:6642"),
        "tcp:ovn-sb:6642"
    );
    assert!(
        entry.contains("${OVN_NB_DB:-tcp:ovn-nb:6641}"),
        "entrypoint NB default"
    );
    assert!(
        entry.contains("${OVN_SB_DB:-tcp:ovn-sb:6642}"),
        "entrypoint SB default"
    );
    for dep in ["ovn-nb", "ovn-sb"] {
        assert_eq!(
            northd["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "ovn-northd waits for {dep} to be healthy"
        );
    }
}
