//! `ovn-vpc-cni` as the runtime sees it, on the paths that need no OVN: VERSION, and the CNI
//! error objects (code, exit status) for bad environments and configurations. The plumbing
//! itself is shown by packets in tests/tests/e2e.rs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ovn_vpc_tests::{cni_bin, write_kubeconfig};
use serde_json::{json, Value};

fn cni(env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(cni_bin())
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plugin may refuse a bad environment before reading stdin (a broken pipe here).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn error(out: &Output) -> Value {
    assert!(!out.status.success(), "expected a failure");
    serde_json::from_slice(&out.stdout).expect("a CNI error object on stdout")
}

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/nonexistent/netns"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_ARGS", "K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web"),
];

#[test]
fn version_reports_what_the_plugin_speaks() {
    let out = cni(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]})
    );
}

#[test]
fn bad_environments_and_configurations_get_their_spec_codes() {
    let e = error(&cni(&[("CNI_COMMAND", "ADD")], "{}"));
    assert_eq!(e["code"], 4, "{e}");
    assert_eq!(e["cniVersion"], "1.0.0");
    assert!(e["details"].as_str().unwrap().contains("CNI_NETNS"), "{e}");

    let e = error(&cni(ADD, "not json"));
    assert_eq!(e["code"], 6, "{e}");

    let e = error(&cni(
        ADD,
        r#"{"cniVersion":"0.4.0","name":"n","type":"ovn-vpc-cni"}"#,
    ));
    assert_eq!(e["code"], 1, "{e}");

    // The namespace is checked before anything is created.
    let e = error(&cni(
        ADD,
        r#"{"cniVersion":"1.0.0","name":"n","type":"ovn-vpc-cni"}"#,
    ));
    assert_eq!(e["code"], 3, "{e}");
}

/// A one-route API server on 127.0.0.1: answers GET of pod team-a/web with `status` and
/// `body`, every other path with 404; returns its address.
fn fake_api_server(status: u16, body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut conn, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let (code, text) = if line.starts_with("GET /api/v1/namespaces/team-a/pods/web ") {
                (status, body.clone())
            } else {
                (404, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    format!("http://{addr}")
}

/// Cluster mode (no `nb`): ADD reads the pod from the API server named by `kubeconfig`.
fn cluster_add(server: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    // Any existing path passes the namespace check; the allocation is looked up next.
    let netns = dir.path().display().to_string();
    let mut env = ADD.to_vec();
    env[2] = ("CNI_NETNS", &netns);
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "ovn-vpc-cni",
                      "kubeconfig": write_kubeconfig(dir.path(), server)});
    error(&cni(&env, &conf.to_string()))
}

#[test]
fn in_cluster_mode_add_reads_the_pod_from_the_api_server() {
    // The controller has not allocated yet: try again later.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "web", "namespace": "team-a", "annotations": {"other": "x"}}});
    let e = cluster_add(&fake_api_server(200, pod.to_string()));
    assert_eq!(e["code"], 11, "{e}");
    assert!(
        e["details"]
            .as_str()
            .unwrap()
            .contains("ovnvpc.io/allocated"),
        "{e}"
    );

    // A malformed allocation is refused, not plumbed.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "web", "namespace": "team-a", "annotations": {
                         "ovnvpc.io/allocated": "true", "ovnvpc.io/ip_address": "10.0.1.x",
                         "ovnvpc.io/mac_address": "0a:00:00:00:00:01", "ovnvpc.io/cidr": "10.0.1.0/24",
                         "ovnvpc.io/gateway": "10.0.1.1", "ovnvpc.io/logical_switch": "a"}}});
    let e = cluster_add(&fake_api_server(200, pod.to_string()));
    assert_ne!(e["code"], 11, "{e}");
    assert!(e.to_string().contains("10.0.1.x"), "{e}");

    // No such pod: unknown container.
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404});
    let e = cluster_add(&fake_api_server(404, not_found.to_string()));
    assert_eq!(e["code"], 3, "{e}");

    // No API server at all: try again later.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = cluster_add(&closed);
    assert_eq!(e["code"], 11, "{e}");
}
