//! `ovn-vpc node` as a process, run with `ip netns exec` inside a fresh network namespace per
//! test, with real iptables (legacy and nft) and ipset: rules derived from Subnet manifests,
//! `--once` / `--cleanup`, the canary poll repairing flushed chains and tables within about a
//! second while the full refresh is an hour away, and `/readyz` reading the function. Every
//! check reads the rules back with the distribution's tools.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovn_vpc::node::{Backend, Family};
use ovn_vpc_tests::node::{Node, CALI, HOSTPORT, KUBE};
use ovn_vpc_tests::ovn_vpc_bin;
use ovn_vpc_tests::{write_kubeconfig, StandInApi};

/// Subnets of the default VPC (one dual-stack with natOutgoing, one without), a custom VPC's
/// subnet and an external subnet: only the first two reach the node rules.
const MANIFEST: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec:
  cidrs: [10.16.0.0/16, "fd00:10:16::/64"]
  natOutgoing: true
  default: true
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: no-nat}
spec:
  vpc: default
  cidrs: [10.17.0.0/16]
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec: {}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net}
spec:
  vpc: vpc-a
  cidrs: [10.18.0.0/24]
  natOutgoing: true
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: uplink}
spec:
  cidrs: [172.31.0.0/24]
  external: {physicalNetwork: ext}
"#;

/// The default health port (`--health-addr 0.0.0.0:10665`), inside the test's namespace.
const HEALTH_PORT: u16 = 10665;

ovn_vpc_tests::both_backends!(
    once_then_cleanup_leaves_foreign_rules_untouched,
    canary_repairs_flushes_within_a_second,
    readyz_reports_the_function,
);

fn backend_flag(b: Backend) -> &'static str {
    match b {
        Backend::Legacy => "legacy",
        Backend::Nft => "nft",
    }
}

/// A namespace holding kube-proxy's, Calico's and a hostport plugin's nat PREROUTING rules, a
/// foreign masquerade, a foreign FORWARD rule, kube-proxy's IPv6 jump and a foreign ipset; and
/// a directory with the manifest.
fn seeded(backend: Backend) -> (Node, tempfile::TempDir) {
    let node = Node::new(backend, Family::V4);
    node.seed_foreign(true);
    node.iptables("-t nat -A POSTROUTING -s 192.168.0.0/16 -j MASQUERADE");
    node.iptables("-t filter -A FORWARD -m conntrack --ctstate INVALID -j DROP");
    node.iptables_of(Family::V6, "-t nat -N KUBE-SERVICES");
    node.iptables_of(Family::V6, &format!("-t nat -A PREROUTING {KUBE}"));
    let out = node.sh(
        "ipset create cali40all-ipam hash:net family inet && ipset add cali40all-ipam 192.168.0.0/16",
    );
    assert!(out.status.success(), "{out:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("subnets.yaml"), MANIFEST).expect("write manifest");
    (node, dir)
}

/// Everything iptables-save and ipset save print, without the timestamped comments and with
/// ipset's random `initval`: what "untouched" is compared on.
fn world(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for f in [Family::V4, Family::V6] {
        for t in ["nat", "filter"] {
            out.extend(
                node.save_text_of(f, t)
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(|l| format!("{f:?} {l}")),
            );
        }
    }
    out.extend(
        node.ipset_save()
            .lines()
            .map(|l| match l.find(" initval ") {
                Some(i) => l[..i].to_string(),
                None => l.to_string(),
            }),
    );
    out
}

/// Runs `ovn-vpc ARGS` to completion in the namespace: (success, stdout + stderr).
fn ovn_vpc(node: &Node, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", node.ns.name()])
        .arg(ovn_vpc_bin())
        .args(args)
        .output()
        .expect("run ovn-vpc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `ovn-vpc node` running in the namespace (`ip netns exec` execs it, so the pid is ours);
/// stopped with SIGTERM by pid on drop, also when the test fails.
struct Shim(Child);

impl Shim {
    fn start(node: &Node, manifest: &std::path::Path, backend: Backend) -> Shim {
        let child = Command::new("ip")
            .args(["netns", "exec", node.ns.name()])
            .arg(ovn_vpc_bin())
            .args(["node", "-f"])
            .arg(manifest)
            .args(["--backend", backend_flag(backend)])
            // The full refresh is out of reach: any repair seen is the canary's (at its default
            // interval, 500 ms).
            .args(["--refresh-interval", "1h"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ovn-vpc node");
        let shim = Shim(child);
        let start = Instant::now();
        while node.http_get(HEALTH_PORT, "/readyz").map(|r| r.0) != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "ovn-vpc node never became ready: {:?}",
                node.http_get(HEALTH_PORT, "/readyz")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        shim
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 20 ms for up to `limit`; returns how long it took. Where the limit is
/// short (1.5 s against a refresh of an hour) it is the claim under test — the canary repairs
/// at its own pace (500 ms) — not a guess at how long the machine needs.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn ours(rules: &[String]) -> Vec<&String> {
    rules.iter().filter(|r| r.contains("ovn-vpc:")).collect()
}

fn once_then_cleanup_leaves_foreign_rules_untouched(backend: Backend) {
    let (node, dir) = seeded(backend);
    let before = world(&node);
    let b = backend_flag(backend);
    let manifest = dir.path().join("subnets.yaml");
    let m = manifest.to_str().expect("utf-8 path");

    let (ok, out) = ovn_vpc(&node, &["node", "--once", "-f", m, "--backend", b]);
    assert!(ok, "{out}");
    let pre = node.rules("nat", "PREROUTING");
    let jump = pre
        .iter()
        .position(|r| r.contains("-j OVN-PREROUTING"))
        .expect("our jump");
    assert!(
        jump < pre.iter().position(|r| r == KUBE).unwrap(),
        "{pre:#?}"
    );
    assert_eq!(
        pre.iter()
            .filter(|r| !r.contains("ovn-vpc:"))
            .collect::<Vec<_>>(),
        [CALI, KUBE, HOSTPORT]
    );
    let post = node.rules("nat", "OVN-POSTROUTING");
    assert_eq!(post.len(), 1, "{post:?}");
    assert!(
        post[0].contains("--match-set ovnvpc-nat4 src")
            && post[0].contains("! --match-set ovnvpc-subnets4 dst")
            && post[0].ends_with("-j MASQUERADE"),
        "{post:?}"
    );
    assert!(node.rules("nat", "OVN-PREROUTING")[0].contains("--set-xmark 0x4000/0x4000"));
    assert_eq!(node.rules("filter", "OVN-FORWARD").len(), 2);
    let v6 = node.save_text_of(Family::V6, "nat");
    assert!(v6.contains("--match-set ovnvpc-nat6 src"), "{v6}");
    let sets = node.ipset_save();
    for member in [
        "add ovnvpc-nat4 10.16.0.0/16",
        "add ovnvpc-subnets4 10.16.0.0/16",
        "add ovnvpc-subnets4 10.17.0.0/16",
        "add ovnvpc-nat6 fd00:10:16::/64",
    ] {
        assert!(sets.contains(member), "{member} missing from\n{sets}");
    }
    // Not the custom VPC's subnet, not the external one, not 10.17 in the nat set.
    for absent in ["10.18.0.0", "172.31.0.0", "add ovnvpc-nat4 10.17"] {
        assert!(!sets.contains(absent), "{absent} in\n{sets}");
    }

    let after_once = world(&node);
    let (ok, out) = ovn_vpc(&node, &["node", "--once", "-f", m, "--backend", b]);
    assert!(
        ok && out.contains(" 0 write(s)"),
        "a second --once writes nothing: {out}"
    );
    assert_eq!(world(&node), after_once);

    let (ok, out) = ovn_vpc(&node, &["node", "--cleanup", "--backend", b]);
    assert!(ok, "{out}");
    assert_eq!(
        world(&node),
        before,
        "only ours removed, foreign rules and sets untouched"
    );
    let (ok, out) = ovn_vpc(&node, &["node", "--cleanup", "--backend", b]);
    assert!(ok && out.contains(" 0 write(s)"), "{out}");

    // Without -f (and without --cleanup) the Subnets come from Kubernetes: with no cluster
    // configuration at all, a clear error.
    let (ok, out) = ovn_vpc(&node, &["node", "--once", "--backend", b]);
    assert!(
        !ok && out.contains("Kubernetes mode (no -f given)"),
        "{out}"
    );
    // --once fails (non-zero) when the rules cannot be written: a manifest with a bad CIDR.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: bad}\nspec: {cidrs: [10.16.0.0/33]}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    let (ok, out) = ovn_vpc(
        &node,
        &[
            "node",
            "--once",
            "-f",
            bad.to_str().unwrap(),
            "--backend",
            b,
        ],
    );
    assert!(!ok && out.contains("Subnet/bad"), "{out}");
}

fn canary_repairs_flushes_within_a_second(backend: Backend) {
    let (node, dir) = seeded(backend);
    let _shim = Shim::start(&node, &dir.path().join("subnets.yaml"), backend);
    let good_post = node.rules("nat", "OVN-POSTROUTING");
    assert_eq!(good_post.len(), 1);
    let limit = Duration::from_millis(1500);

    node.iptables("-t nat -F OVN-POSTROUTING");
    let t1 = within(limit, "flushed OVN-POSTROUTING", || {
        node.rules("nat", "OVN-POSTROUTING") == good_post
    });

    node.iptables("-t filter -F OVN-FORWARD");
    let t2 = within(limit, "flushed OVN-FORWARD", || {
        node.rules("filter", "OVN-FORWARD").len() == 2
    });

    // The whole nat table: every chain flushed (foreign rules too), user chains deleted.
    node.iptables("-t nat -F");
    node.iptables("-t nat -X");
    let t3 = within(limit, "flushed and deleted nat table", || {
        node.rules("nat", "OVN-POSTROUTING") == good_post
            && ours(&node.rules("nat", "PREROUTING")).len() == 1
            && ours(&node.rules("nat", "POSTROUTING")).len() == 1
    });

    // The IPv6 table too.
    node.iptables_of(Family::V6, "-t nat -F");
    let t4 = within(limit, "flushed ip6tables nat", || {
        node.save_text_of(Family::V6, "nat")
            .contains("--match-set ovnvpc-nat6 src")
    });
    // A flushed ipset of ours: the canary reads the set headers too.
    assert!(node.sh("ipset flush ovnvpc-subnets4").status.success());
    let t5 = within(limit, "flushed ipset", || {
        node.ipset_save()
            .contains("add ovnvpc-subnets4 10.17.0.0/16")
    });
    println!(
        "{backend:?}: repaired in {t1:?} (nat chain), {t2:?} (filter chain), {t3:?} (nat table), \
         {t4:?} (ip6 nat table), {t5:?} (ipset)"
    );
    assert_eq!(
        node.http_get(HEALTH_PORT, "/readyz").map(|r| r.0),
        Some(200)
    );
}

fn readyz_reports_the_function(backend: Backend) {
    let (node, dir) = seeded(backend);
    let _shim = Shim::start(&node, &dir.path().join("subnets.yaml"), backend);
    let ready = || {
        node.http_get(HEALTH_PORT, "/readyz")
            .expect("readyz answers")
    };
    assert_eq!(ready(), (200, "ok\n".into()));
    assert_eq!(
        node.http_get(HEALTH_PORT, "/healthz"),
        Some((200, "ok\n".into()))
    );
    let jump = node
        .rules("nat", "PREROUTING")
        .into_iter()
        .find(|r| r.contains("-j OVN-PREROUTING"))
        .expect("our jump");

    // Our jump deleted: the canary does not watch built-in chains, so nothing repairs it
    // before the (hour-long) refresh, and readiness must say so from iptables itself.
    node.iptables(&format!("-t nat -D PREROUTING {jump}"));
    let (code, body) = ready();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("ipv4 nat"), "{body}");
    // A flushed chain wakes the canary; its pass repairs the whole table, jump included.
    node.iptables("-t nat -F OVN-POSTROUTING");
    within(Duration::from_millis(1500), "ready after repair", || {
        ready().0 == 200
    });
    let pre = node.rules("nat", "PREROUTING");
    assert_eq!(ours(&pre).len(), 1);
    let at = |p: &[String], s: &str| p.iter().position(|r| r == s).unwrap();
    assert!(at(&pre, &jump) < at(&pre, KUBE), "{pre:#?}");

    // Our jump below KUBE-SERVICES (kube-proxy restarted and inserted at the top): not ready.
    node.iptables(&format!("-t nat -D PREROUTING {jump}"));
    node.iptables(&format!("-t nat -A PREROUTING {jump}"));
    let (code, body) = ready();
    assert_eq!(code, 503, "{body}");
    node.iptables("-t nat -F OVN-PREROUTING");
    within(Duration::from_millis(1500), "ready after move", || {
        ready().0 == 200
    });
    let pre = node.rules("nat", "PREROUTING");
    assert_eq!(ours(&pre).len(), 1);
    assert!(at(&pre, &jump) < at(&pre, KUBE), "{pre:#?}");
}

/// With `--ovn-remote`, `ovn-vpc node` first points the chassis at the Southbound through the
/// local Open_vSwitch database (our OVSDB client), then reconciles its rules; ovn-controller
/// follows (its tunnel endpoint moves in the Southbound).
#[test]
fn node_configures_the_chassis_before_its_rules() {
    let sandbox = ovn_vpc::sandbox::Sandbox::builder()
        .chassis(1)
        .start()
        .unwrap();
    let ch = &sandbox.chassis()[0];
    let sb = sandbox.sb_remote().unwrap();
    let (node, dir) = seeded(Backend::Legacy);
    let manifest = dir.path().join("subnets.yaml");
    let (ok, text) = ovn_vpc(
        &node,
        &[
            "node",
            "--once",
            "--backend",
            "legacy",
            "-f",
            manifest.to_str().unwrap(),
            "--ovs",
            &ch.ovs_remote(),
            "--ovn-remote",
            &sb,
            "--system-id",
            ch.system_id(),
            "--encap-ip",
            "127.0.0.77",
            "--bridge-mappings",
            "physnet:br-ex,ext:br-ext",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "chassis {}: ovn-remote {sb}, encap geneve 127.0.0.77",
            ch.system_id()
        )),
        "{text}"
    );
    let ids = ovn_vpc_tests::vsctl(
        &ch.ovs_remote(),
        &["get", "Open_vSwitch", ".", "external_ids"],
    );
    assert!(
        ids.contains("ovn-bridge-mappings=\"physnet:br-ex,ext:br-ext\""),
        "{ids}"
    );
    assert!(ids.contains("ovn-encap-ip=\"127.0.0.77\""), "{ids}");
    let moved = ovn_vpc_tests::eventually(30, || {
        ovn_vpc_tests::sbctl(&sb, &["--columns=ip", "list", "Encap"]).contains("127.0.0.77")
    });
    assert!(moved, "ovn-controller did not follow");
    // The rules were reconciled as well.
    assert!(node.save_text("nat").contains("OVN-POSTROUTING"));

    // A mapping that is not NETWORK:BRIDGE is refused before anything is written.
    let (ok, text) = ovn_vpc(
        &node,
        &[
            "node",
            "--once",
            "-f",
            manifest.to_str().unwrap(),
            "--ovs",
            &ch.ovs_remote(),
            "--ovn-remote",
            &sb,
            "--encap-ip",
            "127.0.0.78",
            "--bridge-mappings",
            "physnet",
        ],
    );
    assert!(!ok && text.contains("is not NETWORK:BRIDGE"), "{text}");
}

/// Kubernetes mode (no `-f`): the Subnets are listed from the API server named by
/// `--kubeconfig` (here a stand-in in the node's namespace serving a SubnetList).
#[test]
fn without_manifests_the_subnets_come_from_the_kubernetes_api() {
    let (node, dir) = seeded(Backend::Legacy);
    let list = serde_json::json!({
        "apiVersion": "ovnvpc.io/v1", "kind": "SubnetList", "metadata": {"resourceVersion": "7"},
        "items": [{"apiVersion": "ovnvpc.io/v1", "kind": "Subnet", "metadata": {"name": "ovn-default"},
                   "spec": {"cidrs": ["10.16.0.0/16"], "natOutgoing": true, "default": true}},
                  {"apiVersion": "ovnvpc.io/v1", "kind": "Subnet", "metadata": {"name": "extra"},
                   "spec": {"cidrs": ["10.99.0.0/16"]}}]});
    let file = dir.path().join("subnets.json");
    std::fs::write(&file, list.to_string()).unwrap();
    let tcp_peer = env!("CARGO_BIN_EXE_tcp-peer");
    let api = StandInApi::start(tcp_peer, node.ns.name(), "127.0.0.1:16443", &file);
    let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:16443");
    let (ok, text) = ovn_vpc(
        &node,
        &[
            "node",
            "--once",
            "--backend",
            "legacy",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let sets = node.ipset_save();
    assert!(
        sets.contains("10.16.0.0/16") && sets.contains("10.99.0.0/16"),
        "{sets}"
    );
    assert!(node.save_text("nat").contains("OVN-POSTROUTING"));

    // Running: a Subnet added in the API reaches the ipset within a poll or two.
    let shim = Command::new("ip")
        .args(["netns", "exec", node.ns.name()])
        .arg(ovn_vpc_bin())
        .args([
            "node",
            "--backend",
            "legacy",
            "--subnet-poll",
            "200ms",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ovn-vpc node");
    // Stopped by pid on drop, also when an assertion below fails.
    let shim = Shim(shim);
    within(
        Duration::from_secs(20),
        "ovn-vpc node ready on the first list",
        || node.http_get(HEALTH_PORT, "/readyz").map(|r| r.0) == Some(200),
    );
    drop(api);
    let more = list.to_string().replace("10.99.0.0/16", "10.98.0.0/16");
    std::fs::write(&file, more).unwrap();
    let api = StandInApi::start(tcp_peer, node.ns.name(), "127.0.0.1:16443", &file);
    let took = within(
        Duration::from_secs(10),
        "the new Subnet in the ipset",
        || {
            let sets = node.ipset_save();
            sets.contains("10.98.0.0/16") && !sets.contains("10.99.0.0/16")
        },
    );
    eprintln!("subnet change applied in {took:?}");
    drop(shim);

    // No API server: a clear error, nothing half-done.
    drop(api);
    let (ok, text) = ovn_vpc(
        &node,
        &[
            "node",
            "--once",
            "--backend",
            "legacy",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && text.contains("listing Subnets from the Kubernetes API"),
        "{text}"
    );
}
