//! `ovn-vpc-cni` as the runtime sees it, on the paths that need no OVN: VERSION, and the CNI
//! error objects (code, exit status) for bad environments and configurations. The plumbing
//! itself is shown by packets in tests/tests/e2e.rs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn cni(env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ovn-vpc-cni"))
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

#[test]
fn without_nb_and_without_a_kubernetes_client_add_says_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    // Any existing path passes the namespace check; the allocation is looked up next.
    let netns = dir.path().display().to_string();
    let mut env = ADD.to_vec();
    env[2] = ("CNI_NETNS", &netns);
    let e = error(&cni(
        &env,
        r#"{"cniVersion":"1.0.0","name":"n","type":"ovn-vpc-cni"}"#,
    ));
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("cluster mode"), "{e}");
}
