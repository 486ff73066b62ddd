//! The in-cluster runtime against kube-rs' `tower-test` mock API server (recorded request /
//! response scenarios: each test states the requests a reconcile must make, in order, and
//! answers them) and a real ovsdb-server for the OVN side, with ovn-nbctl as the witness.

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::controller::Action;
use ovn_vpc::api::{Ip, Subnet, Vpc};
use ovn_vpc::runtime::{
    put, reconcile_ip, reconcile_object, reconcile_pod, remove, Context, Engine, Error, Leadership,
    Metrics, Stores, Writers, FINALIZER,
};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::kube::{mock_client, respond, yaml, ApiHandle};
use ovn_vpc_tests::{eventually_async, nbctl};
use serde_json::{json, Value};
use tower_test::mock::SendResponse;

/// The mock API server's side: each `expect` takes the next request the code under test
/// made, checks its method and path, and hands back its JSON body and the responder.
struct ApiServer(ApiHandle);

impl ApiServer {
    async fn expect(&mut self, method: &str, path: &str) -> (Value, SendResponse<Response<Body>>) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(20), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .expect("the client is gone");
        assert_eq!(
            (req.method().as_str(), req.uri().path()),
            (method, path),
            "unexpected request {} {}",
            req.method(),
            req.uri()
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (body, send)
    }
}

impl ApiServer {
    /// Expects the merge patch of a pod's annotations, answers it, returns the annotations.
    async fn expect_pod_annotations(&mut self, ns: &str, name: &str) -> Value {
        let (body, send) = self
            .expect("PATCH", &format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .await;
        reply(send, 200, &serde_json::to_value(pod(ns, name, "")).unwrap());
        body["metadata"]["annotations"].clone()
    }
}

fn reply(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(respond(code, body));
}

/// The object as the API server returns it after a status merge patch.
fn patched<T: serde::Serialize>(obj: &T, patch: &Value) -> Value {
    let mut v = serde_json::to_value(obj).unwrap();
    v["status"] = patch["status"].clone();
    v
}

fn vpc_a() -> Vpc {
    yaml("apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-a, uid: u-vpc-a, finalizers: [ovnvpc.io/finalizer]}\nspec: {}\n")
}

fn subnet(name: &str, extra: &str) -> Subnet {
    yaml(&format!(
        "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: {name}, uid: u-{name}}}\nspec: {extra}\n"
    ))
}

fn a_net1() -> Subnet {
    let mut s = subnet(
        "a-net1",
        "{vpc: vpc-a, cidrs: [10.0.1.0/24], namespaces: [team-a]}",
    );
    s.metadata.finalizers = Some(vec![FINALIZER.into()]);
    s
}

fn pod(ns: &str, name: &str, annotations: &str) -> Pod {
    yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, uid: uid-{name}-{ns}, annotations: {{{annotations}}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n"
    ))
}

/// A context over a fresh ovsdb-server and a mock API server, with caches marked listed:
/// (context, cache writers, the API server's side, the NB remote, the sandbox).
async fn fixture() -> (Arc<Context>, Writers, ApiServer, String, Sandbox) {
    let sandbox = tokio::task::spawn_blocking(|| Sandbox::builder().start().unwrap())
        .await
        .unwrap();
    let nb = sandbox.nb_remote();
    let (ctx, writers, api) = controller_on(&nb);
    (ctx, writers, api, nb, sandbox)
}

/// A controller (context, cache writers, mock API server) on the Northbound at `nb`: a second
/// one on the same `nb` is the same controller after a restart.
fn controller_on(nb: &str) -> (Arc<Context>, Writers, ApiServer) {
    let (client, handle) = mock_client();
    let (stores, mut writers) = Stores::new();
    writers.mark_ready();
    let session = ovsdb::Session::start(nb, Engine::session_options()).unwrap();
    let engine = Arc::new(Engine::new(
        session,
        None,
        stores,
        client.clone(),
        Leadership::always(),
        Arc::new(Metrics::default()),
    ));
    (
        Arc::new(Context::new(client, engine)),
        writers,
        ApiServer(handle),
    )
}

/// Runs `reconcile` and `scenario` together; the scenario gets the API server back out.
async fn run<F, S, T>(
    api: ApiServer,
    reconcile: F,
    scenario: impl FnOnce(ApiServer) -> S,
) -> (T, ApiServer)
where
    F: std::future::Future<Output = T>,
    S: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let scenario = tokio::spawn(scenario(api));
    let result = tokio::time::timeout(Duration::from_secs(30), reconcile).await;
    let api = scenario.await.expect("the scenario failed");
    (result.expect("the reconcile hung"), api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_gets_a_finalizer_then_its_rows_and_status_and_nothing_more_when_unchanged() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    let mut fresh = a_net1();
    fresh.metadata.finalizers = None;
    put(&mut writers.subnets, fresh.clone());

    // 1. No finalizer yet: the only request is the JSON patch adding it; nothing in OVN.
    let (r, api) = run(
        api,
        reconcile_object(Arc::new(fresh), ctx.clone()),
        |mut api| async move {
            let (body, send) = api
                .expect("PATCH", "/apis/ovnvpc.io/v1/subnets/a-net1")
                .await;
            assert_eq!(
                body,
                json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                   {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
            );
            reply(send, 200, &serde_json::to_value(a_net1()).unwrap());
            api
        },
    )
    .await;
    assert_eq!(r.unwrap(), Action::await_change());
    assert_eq!(nbctl(&nb, &["ls-list"]), "");

    // 2. With the finalizer: one transaction puts the subnet into OVN; status is patched.
    put(&mut writers.subnets, a_net1());
    let (r, mut api) = run(
        api,
        reconcile_object(Arc::new(a_net1()), ctx.clone()),
        |mut api| async move {
            let (body, send) = api
                .expect("PATCH", "/apis/ovnvpc.io/v1/subnets/a-net1/status")
                .await;
            let st = &body["status"];
            assert_eq!(st["conditions"][0]["type"], "Ready");
            assert_eq!(st["conditions"][0]["status"], "True");
            assert_eq!(st["v4Using"], 0);
            assert_eq!(st["v4Available"], 253, "{st}");
            reply(send, 200, &patched(&a_net1(), &body));
            api
        },
    )
    .await;
    r.unwrap();
    assert!(nbctl(&nb, &["ls-list"]).contains("(a-net1)"));
    assert!(nbctl(&nb, &["lr-list"]).contains("(vpc-a)"));
    assert_eq!(ctx.metrics.transactions(), 1);

    // 3. Unchanged world, status already as it should be: no request, no transaction.
    let status = {
        let outcome = ctx.engine.sync().await.unwrap();
        assert_eq!(outcome.operations, 0);
        outcome
    };
    let mut settled = a_net1();
    let ready = ovn_vpc::api::Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Reconciled".into(),
        message: "in OVN".into(),
        last_transition_time: Some("2026-01-01T00:00:00Z".into()),
    };
    let u = status.usage["a-net1"];
    settled.status = Some(ovn_vpc::api::SubnetStatus {
        v4_available: u.v4_available,
        v4_using: u.v4_using,
        v6_available: 0,
        v6_using: 0,
        conditions: vec![ready],
    });
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile_object(Arc::new(settled), ctx.clone()),
    )
    .await
    .expect("a request was made for an unchanged world");
    r.unwrap();
    assert_eq!(ctx.metrics.transactions(), 1);
    // That the reconcile returned shows it awaited no request (none was answered). One sent
    // without awaiting its answer would still pass through kube's buffer task, so absence is
    // shown the only way it can be: by waiting a while for a request that must not come.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), api.0.next_request())
            .await
            .is_err(),
        "no request expected"
    );

    // 4. Drift: the switch deleted by hand is put back by the next sync, once the replica has
    // seen the deletion (the monitor's update, polled for rather than slept for).
    nbctl(&nb, &["ls-del", "a-net1"]);
    let name = ovsdb::Datum::atom("a-net1");
    let seen = eventually_async(Duration::from_secs(10), || async {
        let replica = ctx.engine.session().replica();
        let replica = replica.as_ref().expect("synced");
        replica
            .lookup("Logical_Switch", &[("name", &name)])
            .is_none()
            .then_some(())
    })
    .await;
    assert!(seen.is_some(), "the replica never saw the switch go");
    let healed = ctx.engine.sync().await.unwrap();
    assert!(healed.operations > 0);
    assert!(nbctl(&nb, &["ls-list"]).contains("(a-net1)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gets_an_ip_object_owned_by_it_then_its_annotations_and_is_released_when_gone() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    let web = pod("team-a", "web", "");
    put(&mut writers.pods, web.clone());

    let (r, api) = run(
        api,
        reconcile_pod(Arc::new(web.clone()), ctx.clone()),
        |mut api| async move {
            // The allocation is recorded before OVN or the pod see it.
            let (body, send) = api.expect("POST", "/apis/ovnvpc.io/v1/ips").await;
            assert_eq!(body["metadata"]["name"], "web.team-a");
            assert_eq!(
                body["metadata"]["ownerReferences"][0],
                json!({"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web-team-a"})
            );
            assert_eq!(body["spec"]["subnet"], "a-net1");
            assert_eq!(body["spec"]["vpc"], "vpc-a");
            assert_eq!(body["spec"]["owner"], "Pod/team-a/web");
            assert_eq!(body["spec"]["ips"], json!(["10.0.1.2"]));
            reply(send, 201, &body);
            let (body, send) = api
                .expect("PATCH", "/api/v1/namespaces/team-a/pods/web")
                .await;
            let a = &body["metadata"]["annotations"];
            assert_eq!(a["ovnvpc.io/allocated"], "true");
            assert_eq!(a["ovnvpc.io/ip_address"], "10.0.1.2");
            assert_eq!(a["ovnvpc.io/cidr"], "10.0.1.0/24");
            assert_eq!(a["ovnvpc.io/gateway"], "10.0.1.1");
            assert_eq!(a["ovnvpc.io/logical_switch"], "a-net1");
            assert!(a["ovnvpc.io/mac_address"].as_str().unwrap().len() == 17);
            reply(
                send,
                200,
                &serde_json::to_value(pod("team-a", "web", "")).unwrap(),
            );
            api
        },
    )
    .await;
    r.unwrap();
    let port = nbctl(&nb, &["lsp-get-addresses", "web.team-a"]);
    assert!(port.contains("10.0.1.2"), "{port}");

    // The pod is deleted: its IP object's reconcile releases the port, then the IP object.
    let ip: Ip = serde_json::from_value(json!({
        "apiVersion": "ovnvpc.io/v1", "kind": "IP",
        "metadata": {"name": "web.team-a", "uid": "u-ip",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web-team-a"}]},
        "spec": {"subnet": "a-net1", "vpc": "vpc-a", "owner": "Pod/team-a/web", "ips": ["10.0.1.2"], "mac": "00:00:00:00:00:01"}
    }))
    .unwrap();
    put(&mut writers.ips, ip.clone());
    // While the pod lives, the IP is kept (and looked at again later).
    let kept = reconcile_ip(Arc::new(ip.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(kept, Action::requeue(Duration::from_secs(600)));
    remove(&mut writers.pods, web);
    let (r, _api) = run(
        api,
        reconcile_ip(Arc::new(ip), ctx.clone()),
        |mut api| async move {
            let (body, send) = api
                .expect("DELETE", "/apis/ovnvpc.io/v1/ips/web.team-a")
                .await;
            assert_eq!(body["preconditions"]["uid"], "u-ip");
            reply(
                send,
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
            api
        },
    )
    .await;
    r.unwrap();
    assert!(!nbctl(&nb, &["show"]).contains("web.team-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_naming_a_missing_subnet_waits_with_an_event_and_gets_no_address() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    let mut default = subnet("default", "{cidrs: [10.16.0.0/16], default: true}");
    default.metadata.finalizers = Some(vec![FINALIZER.into()]);
    put(&mut writers.subnets, default);
    let p = pod("team-a", "web", "ovnvpc.io/subnet: nope");
    put(&mut writers.pods, p.clone());
    let (r, api) = run(
        api,
        reconcile_pod(Arc::new(p), ctx.clone()),
        |mut api| async move {
            let (body, send) = api
                .expect("POST", "/apis/events.k8s.io/v1/namespaces/team-a/events")
                .await;
            assert_eq!(body["type"], "Warning");
            assert_eq!(body["reason"], "SubnetNotReady");
            assert!(
                body["note"].as_str().unwrap().contains("\"nope\""),
                "{body}"
            );
            assert_eq!(body["regarding"]["name"], "web");
            reply(send, 201, &body);
            api
        },
    )
    .await;
    assert_eq!(r.unwrap(), Action::requeue(Duration::from_secs(15)));
    assert!(!nbctl(&nb, &["show"]).contains("web.team-a"));

    // A pod in a namespace the cache sees unclaimed: before it takes a default-subnet address
    // the Subnets are listed fresh; one claims the namespace, so the pod waits instead.
    let late = pod("late", "db", "");
    put(&mut writers.pods, late.clone());
    let (r, _api) = run(
        api,
        reconcile_pod(Arc::new(late), ctx.clone()),
        |mut api| async move {
            let (_, send) = api.expect("GET", "/apis/ovnvpc.io/v1/subnets").await;
            let claiming = subnet("late-net", "{cidrs: [10.9.0.0/24], namespaces: [late]}");
            reply(
                send,
                200,
                &json!({"apiVersion": "ovnvpc.io/v1", "kind": "SubnetList", "metadata": {},
                    "items": [serde_json::to_value(claiming).unwrap()]}),
            );
            let (body, send) = api
                .expect("POST", "/apis/events.k8s.io/v1/namespaces/late/events")
                .await;
            assert_eq!(body["reason"], "SubnetNotReady");
            assert!(
                body["note"].as_str().unwrap().contains("late-net"),
                "{body}"
            );
            reply(send, 201, &body);
            api
        },
    )
    .await;
    r.unwrap();
    let show = nbctl(&nb, &["show"]);
    assert!(!show.contains("db.late"), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_with_subnets_waits_to_be_deleted_then_its_router_goes_with_the_finalizer() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    ctx.engine.sync().await.unwrap();
    assert!(nbctl(&nb, &["lr-list"]).contains("(vpc-a)"));

    let mut dying = vpc_a();
    dying.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    put(&mut writers.vpcs, dying.clone());
    let (r, api) = run(
        api,
        reconcile_object(Arc::new(dying.clone()), ctx.clone()),
        |mut api| async move {
            let (body, send) = api
                .expect("PATCH", "/apis/ovnvpc.io/v1/vpcs/vpc-a/status")
                .await;
            let c = &body["status"]["conditions"][0];
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "HasSubnets");
            assert!(c["message"].as_str().unwrap().contains("a-net1"), "{c}");
            reply(send, 200, &patched(&vpc_a(), &body));
            let (body, send) = api
                .expect("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
                .await;
            assert_eq!(body["reason"], "HasSubnets");
            reply(send, 201, &body);
            api
        },
    )
    .await;
    assert!(matches!(r, Err(Error::Waiting(_))), "{r:?}");
    assert!(nbctl(&nb, &["lr-list"]).contains("(vpc-a)"));

    // The subnet is gone: the VPC is reconciled again (its blocked state is gone), and its
    // cleanup removes the router, then the finalizer.
    let mut again = ctx.engine.subscribe();
    remove(&mut writers.subnets, a_net1());
    ctx.engine.sync().await.unwrap();
    let mut keys = Vec::new();
    while let Ok(k) = again.try_recv() {
        keys.push(k);
    }
    assert!(keys.contains(&"Vpc/vpc-a".to_string()), "{keys:?}");
    let (r, _api) = run(
        api,
        reconcile_object(Arc::new(dying), ctx.clone()),
        |mut api| async move {
            let (body, send) = api.expect("PATCH", "/apis/ovnvpc.io/v1/vpcs/vpc-a").await;
            assert_eq!(
                body,
                json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                   {"op": "remove", "path": "/metadata/finalizers/0"}])
            );
            reply(send, 200, &serde_json::to_value(vpc_a()).unwrap());
            api
        },
    )
    .await;
    r.unwrap();
    assert_eq!(nbctl(&nb, &["lr-list"]), "");
    assert_eq!(nbctl(&nb, &["ls-list"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subnet_reports_why_and_nothing_of_it_is_applied() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    let mut bad = subnet("a-net2", "{vpc: vpc-a, cidrs: [10.0.1.128/25]}");
    bad.metadata.finalizers = Some(vec![FINALIZER.into()]);
    put(&mut writers.subnets, bad.clone());
    let (r, _api) = run(
        api,
        reconcile_object(Arc::new(bad), ctx.clone()),
        |mut api| async move {
            let (body, send) = api
                .expect("PATCH", "/apis/ovnvpc.io/v1/subnets/a-net2/status")
                .await;
            let c = &body["status"]["conditions"][0];
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "InvalidSpec");
            assert!(
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains("overlaps 10.0.1.0/24"),
                "{c}"
            );
            reply(send, 200, &patched(&a_net1(), &body));
            let (body, send) = api
                .expect("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
                .await;
            assert_eq!(body["reason"], "InvalidSpec");
            reply(send, 201, &body);
            api
        },
    )
    .await;
    assert_eq!(r.unwrap(), Action::requeue(Duration::from_secs(30)));
    let switches = nbctl(&nb, &["ls-list"]);
    assert!(
        switches.contains("(a-net1)") && !switches.contains("a-net2"),
        "{switches}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_finalizers_strips_ours_by_test_and_remove() {
    let (client, handle) = mock_client();
    let list = |kind: &str, items: Value| json!({"apiVersion": "ovnvpc.io/v1", "kind": format!("{kind}List"), "metadata": {}, "items": items});
    let scenario = tokio::spawn(async move {
        let mut api = ApiServer(handle);
        let (_, send) = api.expect("GET", "/apis/ovnvpc.io/v1/vpcs").await;
        let mut v = vpc_a();
        v.metadata.finalizers = Some(vec!["other.io/keep".into(), FINALIZER.into()]);
        reply(send, 200, &list("Vpc", json!([v])));
        let (body, send) = api.expect("PATCH", "/apis/ovnvpc.io/v1/vpcs/vpc-a").await;
        assert_eq!(
            body,
            json!([{"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
                   {"op": "remove", "path": "/metadata/finalizers/1"}])
        );
        reply(send, 200, &serde_json::to_value(vpc_a()).unwrap());
        // A Subnet without our finalizer is left alone: no patch for it.
        let (_, send) = api.expect("GET", "/apis/ovnvpc.io/v1/subnets").await;
        reply(
            send,
            200,
            &list("Subnet", json!([subnet("s", "{cidrs: [10.1.0.0/24]}")])),
        );
        for plural in ["eips", "fips", "snatrules", "dnatrules"] {
            let (_, send) = api
                .expect("GET", &format!("/apis/ovnvpc.io/v1/{plural}"))
                .await;
            reply(send, 200, &list("X", json!([])));
        }
    });
    let r = ovn_vpc::runtime::remove_finalizers(&client).await;
    scenario.await.unwrap();
    assert_eq!(r.unwrap(), ["Vpc/vpc-a"]);
}

/// `GET path` on a connection of its own: the response head and body.
async fn exchange(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The status line and the body of `GET path`.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let (head, body) = exchange(addr, path).await;
    (head.lines().next().unwrap().to_string(), body)
}

/// The response head of `GET path`, lowercased.
async fn head(addr: std::net::SocketAddr, path: &str) -> String {
    exchange(addr, path).await.0.to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_endpoints_follow_the_northbound() {
    let (ctx, mut writers, _api, _nb, mut sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    ctx.engine.sync().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(ovn_vpc::runtime::serve(listener, ctx.engine.clone()));

    assert_eq!(get(addr, "/healthz").await.0, "HTTP/1.1 200 OK");
    assert_eq!(get(addr, "/readyz").await.0, "HTTP/1.1 200 OK");
    let (status, metrics) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        metrics.contains("ovn_vpc_ovsdb_transactions_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ovn_vpc_ovsdb_transaction_duration_seconds_count 1"));
    assert!(!metrics.contains("ovn_vpc_replica_rows 0\n"), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert!(head(addr, "/metrics")
        .await
        .contains("content-type: application/openmetrics-text; version=1.0.0"),);
    assert_eq!(get(addr, "/nope").await.0, "HTTP/1.1 404 Not Found");

    // A client that connects and sends nothing, and one that stalls mid-request, delay no
    // probe: each connection is served on its own.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, b"GET /readyz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Served one connection at a time, the probe would wait for the stalled ones' 5 s header
    // timeout: a bound well below that tells the two apart without being a guess at how fast
    // a busy machine answers (a loopback GET takes about a millisecond).
    let started = std::time::Instant::now();
    assert_eq!(get(addr, "/readyz").await.0, "HTTP/1.1 200 OK");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");

    // The Northbound goes away: not ready (health is unaffected).
    tokio::task::spawn_blocking(move || {
        sandbox.stop_nb(0).unwrap();
        sandbox
    })
    .await
    .unwrap();
    let unready = eventually_async(Duration::from_secs(10), || async {
        (get(addr, "/readyz").await.0 == "HTTP/1.1 503 Service Unavailable").then_some(())
    })
    .await;
    assert!(
        unready.is_some(),
        "/readyz stayed 200 with the Northbound down"
    );
    assert_eq!(get(addr, "/healthz").await.0, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn stop_controller_scales_to_zero_and_waits_for_the_replicas_to_go() {
    let (client, handle) = mock_client();
    let deployment = |replicas: i32| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "ovn-vpc-controller", "namespace": "ovn-vpc"},
               "spec": {"selector": {}, "template": {}},
               "status": {"replicas": replicas}})
    };
    let scenario = tokio::spawn(async move {
        let mut api = ApiServer(handle);
        let path = "/apis/apps/v1/namespaces/ovn-vpc/deployments/ovn-vpc-controller";
        let (body, send) = api.expect("PATCH", &format!("{path}/scale")).await;
        assert_eq!(body, json!({"spec": {"replicas": 0}}));
        reply(
            send,
            200,
            &json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": "ovn-vpc-controller"}, "spec": {"replicas": 0}}),
        );
        let (_, send) = api.expect("GET", path).await;
        reply(send, 200, &deployment(2));
        let (_, send) = api.expect("GET", path).await;
        reply(send, 200, &deployment(0));
    });
    ovn_vpc::runtime::stop_controller(
        &client,
        "ovn-vpc",
        "ovn-vpc-controller",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    scenario.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_allocations_come_back_from_ip_objects_and_from_ovn() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    // An IP object recorded 10.0.1.7 for web: no new IP object, that address.
    let web = pod("team-a", "web", "");
    put(&mut writers.pods, web.clone());
    let recorded: Ip = serde_json::from_value(json!({
        "apiVersion": "ovnvpc.io/v1", "kind": "IP",
        "metadata": {"name": "web.team-a", "uid": "u-ip",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web-team-a"}]},
        "spec": {"subnet": "a-net1", "vpc": "vpc-a", "owner": "Pod/team-a/web", "ips": ["10.0.1.7"], "mac": "0a:00:00:00:00:07"}
    }))
    .unwrap();
    put(&mut writers.ips, recorded);
    let (r, _api) = run(
        api,
        reconcile_pod(Arc::new(web.clone()), ctx.clone()),
        |mut api| async move {
            let a = api.expect_pod_annotations("team-a", "web").await;
            assert_eq!(a["ovnvpc.io/ip_address"], "10.0.1.7");
            assert_eq!(a["ovnvpc.io/mac_address"], "0a:00:00:00:00:07");
            api
        },
    )
    .await;
    r.unwrap();
    assert!(nbctl(&nb, &["lsp-get-addresses", "web.team-a"]).contains("10.0.1.7"));

    // Restart with the IP object gone (deleted by hand): OVN still holds web's address, so it
    // keeps it, and its IP object is written again; a new pod sorted before it does not take it.
    drop(ctx);
    let (ctx, mut writers, api) = controller_on(&nb);
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    put(&mut writers.pods, web.clone());
    let early = pod("team-a", "aaa", "");
    put(&mut writers.pods, early);
    let (r, _api) = run(
        api,
        reconcile_pod(Arc::new(web), ctx.clone()),
        |mut api| async move {
            let mut recorded = std::collections::BTreeMap::new();
            for _ in 0..2 {
                let (body, send) = api.expect("POST", "/apis/ovnvpc.io/v1/ips").await;
                recorded.insert(
                    body["metadata"]["name"].as_str().unwrap().to_string(),
                    body["spec"]["ips"][0].as_str().unwrap().to_string(),
                );
                reply(send, 201, &body);
            }
            assert_eq!(recorded["web.team-a"], "10.0.1.7");
            assert_ne!(recorded["aaa.team-a"], "10.0.1.7");
            let a = api.expect_pod_annotations("team-a", "web").await;
            assert_eq!(a["ovnvpc.io/ip_address"], "10.0.1.7");
            api
        },
    )
    .await;
    r.unwrap();
    assert!(nbctl(&nb, &["lsp-get-addresses", "web.team-a"]).contains("10.0.1.7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reconcile_gets_an_event_and_an_exponential_backoff() {
    let (ctx, _writers, mut api, _nb, _sandbox) = fixture().await;
    let s = Arc::new(a_net1());
    let e = Error::Conflict("IP web.team-a already records another allocation".into());
    let first = ovn_vpc::runtime::error_policy(s.clone(), &e, ctx.clone());
    let (body, send) = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
        .await;
    assert_eq!(body["reason"], "ReconcileFailed");
    assert_eq!(body["regarding"]["name"], "a-net1");
    assert!(body["note"]
        .as_str()
        .unwrap()
        .contains("another allocation"));
    reply(send, 201, &body);
    let second =
        ovn_vpc::runtime::error_policy(s.clone(), &Error::Waiting("x".into()), ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_millis(500)));
    assert_eq!(second, Action::requeue(Duration::from_secs(1)));
    // A follower neither publishes nor backs off.
    let follower = ovn_vpc::runtime::error_policy(s, &Error::NotLeader, ctx);
    assert_eq!(follower, Action::await_change());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_chassis_follow_the_labelled_nodes_in_the_cache() {
    let (ctx, mut writers, _api, nb, _sandbox) = fixture().await;
    put(
        &mut writers.subnets,
        subnet(
            "ext",
            "{cidrs: [172.16.0.0/24], gateway: 172.16.0.1, external: {physicalNetwork: physnet}}",
        ),
    );
    let mut vpc = vpc_a();
    vpc.spec.external_subnet = Some("ext".into());
    put(&mut writers.vpcs, vpc);
    let node: k8s_openapi::api::core::v1::Node = yaml(
        "apiVersion: v1\nkind: Node\nmetadata: {name: gw-1, labels: {ovnvpc.io/gateway: \"true\"}, annotations: {ovnvpc.io/chassis: chassis-7}}\n",
    );
    put(&mut writers.nodes, node.clone());
    ctx.engine.sync().await.unwrap();
    let ha = nbctl(&nb, &["--columns=chassis_name", "list", "HA_Chassis"]);
    assert!(ha.contains("chassis-7"), "{ha}");

    // The label goes: with no Southbound to fall back on, no gateway chassis remain.
    let mut plain = node;
    plain.metadata.labels = None;
    put(&mut writers.nodes, plain);
    assert!(ctx.engine.sync().await.unwrap().operations > 0);
    let ha = nbctl(&nb, &["--columns=chassis_name", "list", "HA_Chassis"]);
    assert!(!ha.contains("chassis-7"), "{ha}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_subnet_went_away_has_its_ip_object_rewritten_not_duplicated() {
    let (ctx, mut writers, api, _nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    let web = pod("team-a", "web", "");
    put(&mut writers.pods, web.clone());
    // The record of a subnet that was deleted since (the cache has not seen the IP yet).
    let old = json!({
        "apiVersion": "ovnvpc.io/v1", "kind": "IP",
        "metadata": {"name": "web.team-a", "uid": "u-ip", "resourceVersion": "7",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web-team-a"}]},
        "spec": {"subnet": "gone-net", "vpc": "vpc-a", "owner": "Pod/team-a/web", "ips": ["10.7.0.2"], "mac": "0a:00:00:00:00:02"}
    });
    let (r, _api) = run(
        api,
        reconcile_pod(Arc::new(web), ctx.clone()),
        |mut api| async move {
            let (_, send) = api.expect("POST", "/apis/ovnvpc.io/v1/ips").await;
            reply(
                send,
                409,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "AlreadyExists", "code": 409, "message": "exists"}),
            );
            let (_, send) = api.expect("GET", "/apis/ovnvpc.io/v1/ips/web.team-a").await;
            reply(send, 200, &old);
            let (body, send) = api.expect("PUT", "/apis/ovnvpc.io/v1/ips/web.team-a").await;
            assert_eq!(body["metadata"]["resourceVersion"], "7");
            assert_eq!(body["spec"]["subnet"], "a-net1");
            assert_eq!(body["spec"]["ips"], json!(["10.0.1.2"]));
            reply(send, 200, &body);
            let a = api.expect_pod_annotations("team-a", "web").await;
            assert_eq!(a["ovnvpc.io/logical_switch"], "a-net1");
            api
        },
    )
    .await;
    r.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_an_invalid_address_or_mac_annotation_gets_no_port_and_a_warning_naming_it() {
    let (ctx, mut writers, api, nb, _sandbox) = fixture().await;
    put(&mut writers.vpcs, vpc_a());
    put(&mut writers.subnets, a_net1());
    // Before: the address outside the subnet silently became a dynamic one, and the MAC went
    // into the port as written.
    let web = pod("team-a", "web", "ovnvpc.io/ip_address: 10.9.9.9");
    let db = pod("team-a", "db", "ovnvpc.io/mac_address: \"zz:zz\"");
    put(&mut writers.pods, web.clone());
    put(&mut writers.pods, db.clone());
    let mut api = api;
    for (p, annotation, why) in [
        (
            web,
            "ovnvpc.io/ip_address",
            "10.9.9.9 is outside Subnet a-net1 (10.0.1.0/24)",
        ),
        (
            db,
            "ovnvpc.io/mac_address",
            "\"zz:zz\" is not a MAC address",
        ),
    ] {
        let name = p.metadata.name.clone().unwrap();
        let (r, back) = run(
            api,
            reconcile_pod(Arc::new(p), ctx.clone()),
            move |mut api| async move {
                let (body, send) = api
                    .expect("POST", "/apis/events.k8s.io/v1/namespaces/team-a/events")
                    .await;
                assert_eq!(body["type"], "Warning");
                assert_eq!(body["reason"], "InvalidAnnotation");
                let note = body["note"].as_str().unwrap();
                assert!(
                    note.contains(&format!("metadata.annotations[{annotation}]"))
                        && note.contains(why),
                    "{note}"
                );
                assert_eq!(body["regarding"]["name"], name);
                reply(send, 201, &body);
                api
            },
        )
        .await;
        api = back;
        assert_eq!(r.unwrap(), Action::requeue(Duration::from_secs(15)));
    }
    drop(api);
    let ports = nbctl(&nb, &["--columns=name", "list", "Logical_Switch_Port"]);
    assert!(
        !ports.contains("web.team-a") && !ports.contains("db.team-a"),
        "{ports}"
    );
    assert!(
        ports.contains("a-net1-vpc-a"),
        "the subnet itself is applied: {ports}"
    );
}
