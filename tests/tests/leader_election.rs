//! Leader election: two controllers against one mock API server (which keeps the Lease with
//! resourceVersion compare-and-swap, as the real one does) and one real ovsdb-server. Only
//! the holder writes; when it stops renewing it stops writing by itself, and the other takes
//! over after the lease duration; one that shuts down hands the Lease over at once.
//!
//! The expiry is timing logic, so it runs on paused tokio time (the elector's clock): each
//! deadline is checked at the instant before it and at the instant it passes, and the test
//! waits for none of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use ovn_vpc::api::{Subnet, Vpc};
use ovn_vpc::runtime::{
    put, reconcile_object, Context, Engine, Error, LeaseElector, Metrics, Stores, Writers,
};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::kube::{failure, mock_client, respond, yaml};
use ovn_vpc_tests::nbctl;
use serde_json::{json, Value};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ovn-vpc/leases";
/// The lease duration; a holder stops writing at two thirds of it (its renew deadline).
const LEASE: Duration = Duration::from_secs(15);
/// The smallest step of the clock that matters here.
const TICK: Duration = Duration::from_millis(1);

#[derive(Default)]
struct ApiState {
    lease: Option<Value>,
    version: u64,
    /// (client, method, path) of every request that was not about the Lease.
    others: Vec<(String, String, String)>,
}

/// A client whose requests the shared fake API server answers.
fn client(name: &str, state: Arc<Mutex<ApiState>>) -> kube::Client {
    let (client, mut handle) = mock_client();
    let name = name.to_string();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut st = state.lock().unwrap();
            let lease_path = format!("{LEASES}/ovn-vpc-controller");
            let reply = match (method.as_str(), path.as_str()) {
                ("GET", p) if p == lease_path => match &st.lease {
                    Some(l) => respond(200, l),
                    None => failure(404, "NotFound"),
                },
                ("POST", LEASES) => {
                    if st.lease.is_some() {
                        failure(409, "AlreadyExists")
                    } else {
                        st.version += 1;
                        let mut l = body;
                        l["metadata"]["resourceVersion"] = json!(st.version.to_string());
                        st.lease = Some(l.clone());
                        respond(201, &l)
                    }
                }
                ("PUT", p) if p == lease_path => {
                    let current = st
                        .lease
                        .as_ref()
                        .map(|l| l["metadata"]["resourceVersion"].clone());
                    if current != Some(body["metadata"]["resourceVersion"].clone()) {
                        failure(409, "Conflict")
                    } else {
                        st.version += 1;
                        let mut l = body;
                        l["metadata"]["resourceVersion"] = json!(st.version.to_string());
                        st.lease = Some(l.clone());
                        respond(200, &l)
                    }
                }
                _ => {
                    st.others.push((name.clone(), method, path));
                    failure(500, "Unexpected")
                }
            };
            send.send_response(reply);
        }
    });
    client
}

struct Replica {
    elector: LeaseElector,
    ctx: Arc<Context>,
    writers: Writers,
}

fn replica(name: &str, nb: &str, state: Arc<Mutex<ApiState>>) -> Replica {
    let client = client(name, state);
    let elector = LeaseElector::new(
        Api::namespaced(client.clone(), "ovn-vpc"),
        "ovn-vpc-controller",
        name,
        LEASE,
    );
    let (stores, mut writers) = Stores::new();
    writers.mark_ready();
    put(
        &mut writers.vpcs,
        yaml::<Vpc>("apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {name: vpc-a}\nspec: {}\n"),
    );
    put(&mut writers.subnets, subnet("a-net1", "10.0.1.0/24"));
    // No inactivity probe: with the clock paused below, one `advance` could send a probe and
    // time out its answer before the connection task ever read it.
    let mut opts = Engine::session_options();
    opts.connect.inactivity_probe = None;
    let session = ovsdb::Session::start(nb, opts).unwrap();
    let engine = Arc::new(Engine::new(
        session,
        None,
        stores,
        client.clone(),
        elector.leadership(),
        Arc::new(Metrics::default()),
    ));
    Replica {
        elector,
        ctx: Arc::new(Context::new(client, engine)),
        writers,
    }
}

fn subnet(name: &str, cidr: &str) -> Subnet {
    yaml(&format!(
        "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: {name}, finalizers: [ovnvpc.io/finalizer]}}\nspec: {{vpc: vpc-a, cidrs: [{cidr}]}}\n"
    ))
}

// One thread: `tokio::time::pause` needs the current-thread runtime.
#[tokio::test]
async fn two_controllers_one_lease_only_the_holder_writes_and_the_other_takes_over() {
    let sandbox = tokio::task::spawn_blocking(|| Sandbox::builder().start().unwrap())
        .await
        .unwrap();
    let nb = sandbox.nb_remote();
    let state = Arc::new(Mutex::new(ApiState::default()));
    let mut a = replica("controller-a", &nb, state.clone());
    let mut b = replica("controller-b", &nb, state.clone());

    assert!(a.elector.try_acquire_or_renew().await.unwrap());
    assert!(!b.elector.try_acquire_or_renew().await.unwrap());
    assert!(a.ctx.leader.is_leader() && !b.ctx.leader.is_leader());

    // Both are asked to reconcile the same world: only A writes.
    let synced = a.ctx.engine.sync().await.unwrap();
    assert!(synced.operations > 0);
    assert!(matches!(b.ctx.engine.sync().await, Err(Error::NotLeader)));
    let r = reconcile_object(Arc::new(subnet("a-net1", "10.0.1.0/24")), b.ctx.clone())
        .await
        .unwrap();
    assert_eq!(r, Action::await_change());
    assert_eq!(a.ctx.metrics.transactions(), 1);
    assert_eq!(b.ctx.metrics.transactions(), 0);
    assert!(state.lock().unwrap().others.is_empty());
    assert!(nbctl(&nb, &["ls-list"]).contains("(a-net1)"));

    // A stops renewing (as if partitioned from the API server): it stops writing at its renew
    // deadline on its own; B takes the Lease once it has seen it unrenewed for its duration.
    // The clock stands still from here on and moves only by `advance`: only the in-process
    // mock API server is talked to until it is resumed, so no real I/O waits on a paused
    // clock. A renews and B sees that renewal at the same instant.
    tokio::time::pause();
    assert!(a.elector.try_acquire_or_renew().await.unwrap());
    assert!(!b.elector.try_acquire_or_renew().await.unwrap());
    let renew_deadline = a.elector.renew_deadline();
    assert_eq!(renew_deadline, LEASE * 2 / 3);
    tokio::time::advance(renew_deadline - TICK).await;
    assert!(
        a.ctx.leader.is_leader(),
        "A stopped before its renew deadline"
    );
    tokio::time::advance(TICK).await;
    assert!(
        !a.ctx.leader.is_leader(),
        "A still leads at its renew deadline"
    );
    // Nobody leads between A's renew deadline and the end of the lease: B waits it out.
    assert!(!b.elector.try_acquire_or_renew().await.unwrap());
    tokio::time::advance(LEASE - renew_deadline - TICK).await;
    assert!(
        !b.elector.try_acquire_or_renew().await.unwrap(),
        "B took the lease before it expired"
    );
    assert!(!a.ctx.leader.is_leader() && !b.ctx.leader.is_leader());
    tokio::time::advance(TICK).await;
    assert!(
        b.elector.try_acquire_or_renew().await.unwrap(),
        "B did not take over the expired lease"
    );
    tokio::time::resume();
    assert!(!a.ctx.leader.is_leader() && b.ctx.leader.is_leader());
    let lease = state.lock().unwrap().lease.clone().unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "controller-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    // A new subnet: A (no longer leader) writes nothing, B writes it.
    put(&mut a.writers.subnets, subnet("a-net2", "10.0.2.0/24"));
    put(&mut b.writers.subnets, subnet("a-net2", "10.0.2.0/24"));
    assert!(matches!(a.ctx.engine.sync().await, Err(Error::NotLeader)));
    assert!(b.ctx.engine.sync().await.unwrap().operations > 0);
    assert_eq!(a.ctx.metrics.transactions(), 1);
    assert_eq!(b.ctx.metrics.transactions(), 1);
    assert!(nbctl(&nb, &["ls-list"]).contains("(a-net2)"));

    // A comes back: it sees B's fresh renewal and stays a follower.
    assert!(b.elector.try_acquire_or_renew().await.unwrap());
    assert!(!a.elector.try_acquire_or_renew().await.unwrap());
    assert!(!a.ctx.leader.is_leader() && b.ctx.leader.is_leader());

    // B shuts down (a rolling update): it stops writing and hands the Lease over; A takes it
    // on its next round, without waiting for the lease to expire.
    b.elector.release().await;
    assert!(!b.ctx.leader.is_leader());
    assert!(matches!(b.ctx.engine.sync().await, Err(Error::NotLeader)));
    let lease = state.lock().unwrap().lease.clone().unwrap();
    assert!(
        lease["spec"]
            .get("holderIdentity")
            .is_none_or(|h| h.is_null()),
        "{lease}"
    );
    assert!(a.elector.try_acquire_or_renew().await.unwrap());
    assert!(a.ctx.leader.is_leader());
    let lease = state.lock().unwrap().lease.clone().unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "controller-a");
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    assert!(state.lock().unwrap().others.is_empty());
}
