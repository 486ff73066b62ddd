//! `ovn-vpc controller` as wired (watchers, reflectors, one Controller per kind, the HTTP
//! endpoints) against a fake API server that lists a small world and holds each watch open,
//! and a real ovsdb-server: the world lands in OVN, our objects get the finalizer, the pod
//! gets an IP object and its annotations, and an object already being deleted at start loses
//! its finalizer, and the IP object of a pod that is gone is collected — and every request it
//! made is granted by the controller's ClusterRole in deploy/rbac.yaml.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Response;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::client::Body;
use ovn_vpc::runtime::{run_with_client, Options};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::kube::{mock_client, respond};
use ovn_vpc_tests::{eventually_async, nbctl};
use serde::Deserialize;
use serde_json::{json, Value};

fn list(kind: &str, items: Value) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1",
           "metadata": {"resourceVersion": "1"}, "items": items})
}

/// What the fake API server lists, by collection path.
fn world(path: &str) -> Option<Value> {
    let vpc = json!({"apiVersion": "ovnvpc.io/v1", "kind": "Vpc",
        "metadata": {"name": "vpc-a", "uid": "u1", "resourceVersion": "1"}, "spec": {}});
    let subnet = json!({"apiVersion": "ovnvpc.io/v1", "kind": "Subnet",
        "metadata": {"name": "a-net1", "uid": "u2", "resourceVersion": "1"},
        "spec": {"vpc": "vpc-a", "cidrs": ["10.0.1.0/24"], "namespaces": ["team-a"]}});
    // Already being deleted when the controller starts: its deletion is finished.
    let old = json!({"apiVersion": "ovnvpc.io/v1", "kind": "Subnet",
        "metadata": {"name": "old-net", "uid": "u4", "resourceVersion": "1",
                     "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["ovnvpc.io/finalizer"]},
        "spec": {"vpc": "vpc-a", "cidrs": ["10.0.9.0/24"]}});
    // The IP of a pod that went away while no controller ran: collected at start.
    let orphan = json!({"apiVersion": "ovnvpc.io/v1", "kind": "IP",
        "metadata": {"name": "gone.team-a", "uid": "u5", "resourceVersion": "1",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "gone", "uid": "u6"}]},
        "spec": {"subnet": "a-net1", "vpc": "vpc-a", "owner": "Pod/team-a/gone",
                 "ips": ["10.0.1.9"], "mac": "0a:00:00:00:00:09"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u3", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    Some(match path {
        "/apis/ovnvpc.io/v1/vpcs" => list("Vpc", json!([vpc])),
        "/apis/ovnvpc.io/v1/subnets" => list("Subnet", json!([subnet, old])),
        "/api/v1/pods" => list("Pod", json!([pod])),
        "/apis/ovnvpc.io/v1/ips" => list("IP", json!([orphan])),
        "/apis/ovnvpc.io/v1/eips"
        | "/apis/ovnvpc.io/v1/fips"
        | "/apis/ovnvpc.io/v1/snatrules"
        | "/apis/ovnvpc.io/v1/dnatrules"
        | "/api/v1/namespaces"
        | "/api/v1/nodes" => list("X", json!([])),
        _ => return None,
    })
}

/// What RBAC calls a request: its API group, resource (with subresource) and verb.
fn rbac_request(method: &str, path: &str, watch: bool) -> (String, String, String) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segs.first() {
        Some(&"api") => (String::new(), &segs[2..]),
        _ => (segs[1].to_string(), &segs[3..]),
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        &rest[2..]
    } else {
        rest
    };
    let resource = match rest.get(2) {
        Some(sub) => format!("{}/{sub}", rest[0]),
        None => rest[0].to_string(),
    };
    let verb = match (method, rest.len() > 1, watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", ..) => "create",
        ("PUT", ..) => "update",
        ("PATCH", ..) => "patch",
        ("DELETE", ..) => "delete",
        _ => "?",
    };
    (group, resource, verb.to_string())
}

/// Whether the controller's ClusterRole in deploy/rbac.yaml grants a request.
fn allowed(rules: &[PolicyRule], (group, resource, verb): &(String, String, String)) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wired_controller_reconciles_a_listed_world_into_ovn() {
    wired_controller(false).await;
}

/// With leader election: it creates the Lease, becomes leader, and only then reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wired_controller_takes_the_lease_then_reconciles() {
    let writes = wired_controller(true).await;
    let first_lease = writes
        .iter()
        .position(|(m, p, _)| m == "POST" && p.ends_with("/leases"))
        .expect("the Lease is created");
    assert_eq!(
        first_lease, 0,
        "something was written before the lease: {writes:#?}"
    );
    assert_eq!(writes[0].2["spec"]["holderIdentity"], "test-replica");
}

async fn wired_controller(leader_election: bool) -> Vec<(String, String, Value)> {
    let sandbox = tokio::task::spawn_blocking(|| Sandbox::builder().start().unwrap())
        .await
        .unwrap();
    let nb = sandbox.nb_remote();
    let (client, mut handle) = mock_client();
    let writes: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let log = writes.clone();
    // Every request as (API group, resource[/subresource], RBAC verb).
    let asked: Arc<Mutex<BTreeSet<(String, String, String)>>> = Arc::default();
    let asked_log = asked.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let watch = req.uri().query().unwrap_or("").contains("watch=true");
            asked_log
                .lock()
                .unwrap()
                .insert(rbac_request(&method, &path, watch));
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if method == "GET" && watch {
                // Hold the watch open a while, then end it (the watcher re-watches).
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    send.send_response(Response::new(Body::empty()));
                });
                continue;
            }
            if method == "GET" {
                match world(&path) {
                    Some(v) => send.send_response(respond(200, &v)),
                    None => send.send_response(respond(404, &json!({"kind": "Status",
                        "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))),
                }
                continue;
            }
            log.lock()
                .unwrap()
                .push((method.clone(), path.clone(), body.clone()));
            // Echo what was written as the stored object.
            let stored = match (method.as_str(), path.as_str()) {
                ("PATCH", "/apis/ovnvpc.io/v1/vpcs/vpc-a") => {
                    json!({"apiVersion": "ovnvpc.io/v1", "kind": "Vpc",
                           "metadata": {"name": "vpc-a", "finalizers": ["ovnvpc.io/finalizer"]}, "spec": {}})
                }
                ("PATCH", "/apis/ovnvpc.io/v1/subnets/a-net1") => {
                    json!({"apiVersion": "ovnvpc.io/v1", "kind": "Subnet",
                           "metadata": {"name": "a-net1", "finalizers": ["ovnvpc.io/finalizer"]},
                           "spec": {"vpc": "vpc-a", "cidrs": ["10.0.1.0/24"]}})
                }
                ("PATCH", "/api/v1/namespaces/team-a/pods/web") => {
                    json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "web", "namespace": "team-a"}, "spec": {"containers": []}})
                }
                ("PATCH", "/apis/ovnvpc.io/v1/subnets/old-net") => {
                    json!({"apiVersion": "ovnvpc.io/v1", "kind": "Subnet",
                           "metadata": {"name": "old-net"}, "spec": {"vpc": "vpc-a", "cidrs": ["10.0.9.0/24"]}})
                }
                ("DELETE", _) => json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                _ => body,
            };
            send.send_response(respond(if method == "POST" { 201 } else { 200 }, &stored));
        }
    });
    let mut opts = Options::new(&nb);
    opts.leader_election = leader_election;
    opts.identity = "test-replica".into();
    opts.listen = "127.0.0.1:0".parse().unwrap();
    let controller = tokio::spawn(run_with_client(client, opts));

    let landed = eventually_async(Duration::from_secs(20), || async {
        let w = writes.lock().unwrap().clone();
        let has = |m: &str, p: &str| w.iter().any(|(wm, wp, _)| wm == m && wp == p);
        (has("PATCH", "/api/v1/namespaces/team-a/pods/web")
            && has("PATCH", "/apis/ovnvpc.io/v1/vpcs/vpc-a")
            && has("PATCH", "/apis/ovnvpc.io/v1/subnets/a-net1")
            && has("PATCH", "/apis/ovnvpc.io/v1/subnets/old-net")
            && has("DELETE", "/apis/ovnvpc.io/v1/ips/gone.team-a"))
        .then_some(())
    })
    .await;
    let w = writes.lock().unwrap().clone();
    assert!(landed.is_some(), "writes so far: {w:#?}");
    assert!(!controller.is_finished());
    controller.abort();

    let ip = w
        .iter()
        .find(|(m, p, _)| m == "POST" && p == "/apis/ovnvpc.io/v1/ips")
        .expect("an IP object is created");
    assert_eq!(ip.2["spec"]["ips"], json!(["10.0.1.2"]));
    let annotated = w
        .iter()
        .find(|(_, p, _)| p == "/api/v1/namespaces/team-a/pods/web")
        .unwrap();
    assert_eq!(
        annotated.2["metadata"]["annotations"]["ovnvpc.io/ip_address"],
        "10.0.1.2"
    );
    let fin = w
        .iter()
        .find(|(_, p, _)| p == "/apis/ovnvpc.io/v1/vpcs/vpc-a")
        .unwrap();
    assert_eq!(fin.2[1]["value"], json!(["ovnvpc.io/finalizer"]));
    let fin = w
        .iter()
        .find(|(_, p, _)| p == "/apis/ovnvpc.io/v1/subnets/old-net")
        .unwrap();
    assert_eq!(
        fin.2[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
    let switches = nbctl(&nb, &["ls-list"]);
    assert!(
        switches.contains("(a-net1)") && !switches.contains("old-net"),
        "{switches}"
    );
    assert!(nbctl(&nb, &["lsp-get-addresses", "web.team-a"]).contains("10.0.1.2"));

    // Every request the controller made is one its ClusterRole (or its Lease Role) in deploy/
    // grants.
    let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac.yaml"))
        .unwrap();
    let rules: Vec<PolicyRule> = serde_yaml::Deserializer::from_str(&rbac)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| {
            (v["kind"] == "ClusterRole" && v["metadata"]["name"] == "ovn-vpc-controller")
                || (v["kind"] == "Role" && v["metadata"]["name"] == "ovn-vpc-controller-lease")
        })
        .flat_map(|v| serde_yaml::from_value::<Vec<PolicyRule>>(v["rules"].clone()).unwrap())
        .collect();
    let asked = asked.lock().unwrap().clone();
    assert!(asked.len() > 10, "{asked:?}");
    let denied: Vec<_> = asked.iter().filter(|r| !allowed(&rules, r)).collect();
    assert!(
        denied.is_empty(),
        "not granted by deploy/rbac.yaml: {denied:?}"
    );
    drop(sandbox);
    w
}
