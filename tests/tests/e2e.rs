//! End to end: packets through real OVN. Each test starts a sandbox (NB, SB, ovn-northd, one
//! chassis: ovs-vswitchd with the userspace `netdev` datapath + ovn-controller, in a namespace of
//! its own), applies manifests with the real `ovn-vpc apply`, and plugs pods — network
//! namespaces — with the real `ovn-vpc-cni` binary run inside the chassis namespace (the host
//! of br-int). The external network is one more namespace on a veth into the netdev bridge
//! `br-ex`, named in `ovn-bridge-mappings` by `ovn_vpc::node::chassis::configure`.
//!
//! Every case is shown by packets: ping, and TCP through `tcp-peer`, whose server answers with
//! its label and the source address it saw — so a test knows which pod it reached and what NAT
//! did. Every test address lives only inside namespaces these tests create (`ovnvpc-…`), all
//! deleted by guards, also when a test panics; the root namespace gets none.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ovn_vpc::node::chassis::{configure, ChassisConfig};
use ovn_vpc::sandbox::{Netns, Sandbox, NETNS_PREFIX};
use ovn_vpc_tests::{nbctl, run, vsctl, workspace_bin, write_kubeconfig, StandInApi};
use serde_json::Value;

/// How long a connection that must work may take to start working (flows are programmed
/// asynchronously after `apply`).
const CONVERGE: Duration = Duration::from_secs(30);
const PORT: u16 = 7000;

fn unique_ns(role: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{NETNS_PREFIX}{}-e{}-{role}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip netns exec NS ARGS…` and returns its output, whatever the status.
fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

fn tcp_peer() -> &'static str {
    env!("CARGO_BIN_EXE_tcp-peer")
}

/// `ping -c1 -W1` from `ns`.
fn ping(ns: &str, addr: &str) -> bool {
    in_ns(ns, &["ping", "-c1", "-W1", "-q", addr])
        .status
        .success()
}

/// One TCP connection from `ns`: the server's line (`LABEL PEER`), or `None`.
fn tcp(ns: &str, addr: &str) -> Option<String> {
    let out = in_ns(ns, &[tcp_peer(), "connect", addr, "1000"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A `tcp-peer serve` in a namespace; killed (by its pid) on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to run the plugin: the binary, the chassis namespace it runs in, the configuration.
#[derive(Clone)]
struct Plugin {
    bin: PathBuf,
    host_ns: String,
    conf: String,
}

impl Plugin {
    fn call(&self, command: &str, container_id: &str, netns: &str, pod: (&str, &str)) -> Output {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.host_ns])
            .arg(&self.bin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                    pod.0, pod.1
                ),
            )
            .env("CNI_PATH", "/opt/cni/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ovn-vpc-cni");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(self.conf.as_bytes())
            .expect("write the configuration");
        child.wait_with_output().expect("ovn-vpc-cni output")
    }
}

/// A pod: a network namespace plugged by the CNI plugin. Dropping it runs CNI DEL (best effort)
/// and deletes the namespace.
struct Pod {
    plugin: Plugin,
    namespace: String,
    name: String,
    container_id: String,
    /// The ADD result.
    result: Value,
    netns: Netns,
}

impl Pod {
    fn ns(&self) -> &str {
        self.netns.name()
    }

    fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.ns())
    }

    fn cni(&self, command: &str) -> Output {
        self.plugin.call(
            command,
            &self.container_id,
            &self.netns_path(),
            (&self.namespace, &self.name),
        )
    }

    /// The host end's name, from the ADD result.
    fn host_if(&self) -> String {
        self.result["interfaces"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn serve(&self, label: &str) -> Server {
        serve(self.ns(), label)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.cni("DEL");
    }
}

fn serve(ns: &str, label: &str) -> Server {
    serve_on(ns, &format!("0.0.0.0:{PORT}"), label)
}

/// A `tcp-peer serve` on a given listening address (`[::]:7001` for IPv6).
fn serve_on(ns: &str, listen: &str, label: &str) -> Server {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, tcp_peer(), "serve", listen])
        .arg(label)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tcp-peer serve");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let server = Server(child);
    assert_eq!(
        line.trim(),
        "listening",
        "tcp-peer serve in {ns} did not start"
    );
    server
}

/// A sandbox with manifests applied and pods plugged. Fields drop in order: servers, pods (CNI
/// DEL needs the chassis), the external namespace, then the sandbox.
struct World {
    servers: Vec<Server>,
    pods: Vec<Pod>,
    ext: Option<Netns>,
    manifests: tempfile::TempDir,
    plugin: Plugin,
    sandbox: Sandbox,
}

impl World {
    fn start() -> World {
        let sandbox = Sandbox::builder().northd().chassis(1).start().unwrap();
        let ch = &sandbox.chassis()[0];
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "ovn-vpc",
            "type": "ovn-vpc-cni",
            "ovs": ch.ovs_remote(),
            "nb": sandbox.nb_remote(),
            "mtu": 1400,
            "installTimeout": 30,
        });
        World {
            servers: Vec::new(),
            pods: Vec::new(),
            ext: None,
            manifests: tempfile::tempdir().unwrap(),
            plugin: Plugin {
                bin: workspace_bin("ovn-vpc", "ovn-vpc-cni"),
                host_ns: ch.netns().to_string(),
                conf: conf.to_string(),
            },
            sandbox,
        }
    }

    fn nb(&self) -> String {
        self.sandbox.nb_remote()
    }

    fn ovs(&self) -> String {
        self.sandbox.chassis()[0].ovs_remote()
    }

    fn chassis_ns(&self) -> &str {
        self.sandbox.chassis()[0].netns()
    }

    /// `ovn-vpc apply -f` the manifests (written to a file), with `--prune` when asked.
    fn apply(&self, yaml: &str, prune: bool) {
        let f = self.manifests.path().join("world.yaml");
        std::fs::write(&f, yaml).unwrap();
        let nb = self.nb();
        let sb = self.sandbox.sb_remote().unwrap();
        let mut args = vec!["apply", "--db", &nb, "--sb", &sb, "-f"];
        let f = f.display().to_string();
        args.push(&f);
        if prune {
            args.push("--prune");
        }
        let out = Command::new(workspace_bin("ovn-vpc", "ovn-vpc"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovn-vpc apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("waiting"), "objects not ready:\n{text}");
    }

    /// Creates a namespace and plugs it in with CNI ADD; returns its index in `pods`.
    fn pod(&mut self, namespace: &str, name: &str) -> usize {
        let netns = Netns::create(&unique_ns(name)).unwrap();
        let mut pod = Pod {
            plugin: self.plugin.clone(),
            namespace: namespace.into(),
            name: name.into(),
            container_id: format!("{namespace}-{name}-{}", std::process::id()),
            result: Value::Null,
            netns,
        };
        let started = Instant::now();
        let out = pod.cni("ADD");
        assert!(
            out.status.success(),
            "CNI ADD {namespace}/{name} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pod.result = serde_json::from_slice(&out.stdout).expect("ADD prints a JSON result");
        eprintln!("CNI ADD {namespace}/{name}: {:?}", started.elapsed());
        self.pods.push(pod);
        self.pods.len() - 1
    }

    fn ns(&self, pod: usize) -> String {
        self.pods[pod].ns().to_string()
    }

    fn serve(&mut self, pod: usize, label: &str) {
        let s = self.pods[pod].serve(label);
        self.servers.push(s);
    }

    /// The external network: namespace `ext` with 172.16.0.1/24 on a veth whose other end is a
    /// port of the netdev bridge br-ex, mapped to `physnet` through
    /// `ovn_vpc::node::chassis::configure` (our OVSDB client, as `ovn-vpc node` will).
    fn external_network(&mut self) {
        let ch = &self.sandbox.chassis()[0];
        let ovs = ch.ovs_remote();
        vsctl(
            &ovs,
            &[
                "add-br",
                "br-ex",
                "--",
                "set",
                "Bridge",
                "br-ex",
                "datapath_type=netdev",
            ],
        );
        let cfg = ChassisConfig {
            system_id: ch.system_id().to_string(),
            ovn_remote: self.sandbox.sb_remote().unwrap(),
            encap_type: "geneve".into(),
            encap_ip: ch.encap_ip().to_string(),
            bridge_mappings: vec![("physnet".into(), "br-ex".into())],
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(configure(&ovs, &cfg))
            .unwrap();
        assert_eq!(
            vsctl(
                &ovs,
                &[
                    "get",
                    "Open_vSwitch",
                    ".",
                    "external_ids:ovn-bridge-mappings"
                ]
            )
            .trim(),
            "\"physnet:br-ex\""
        );
        let ext = Netns::create(&unique_ns("ext")).unwrap();
        let chns = ch.netns();
        run(
            "ip",
            &[
                "link",
                "add",
                "ext0",
                "netns",
                chns,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ext.name(),
            ],
        );
        // Both ends face the userspace datapath: no partial checksums (DESIGN.md, facts).
        run(
            "ip",
            &["netns", "exec", chns, "ethtool", "-K", "ext0", "tx", "off"],
        );
        run(
            "ip",
            &[
                "netns",
                "exec",
                ext.name(),
                "ethtool",
                "-K",
                "eth0",
                "tx",
                "off",
            ],
        );
        run("ip", &["-n", chns, "link", "set", "ext0", "up"]);
        run(
            "ip",
            &[
                "-n",
                ext.name(),
                "addr",
                "add",
                "172.16.0.1/24",
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", ext.name(), "link", "set", "eth0", "up"]);
        vsctl(&ovs, &["add-port", "br-ex", "ext0"]);
        self.ext = Some(ext);
    }

    fn ext_ns(&self) -> String {
        self.ext
            .as_ref()
            .expect("external network")
            .name()
            .to_string()
    }

    fn serve_external(&mut self) {
        let s = serve(&self.ext_ns(), "ext");
        self.servers.push(s);
    }

    /// A connection from `ns` to `addr` works within [`CONVERGE`]; returns the server's line.
    fn reach(&self, ns: &str, addr: &str) -> String {
        let started = Instant::now();
        let deadline = started + CONVERGE;
        loop {
            if let Some(line) = tcp(ns, addr) {
                eprintln!("TIMING reach {addr}: {:?}", started.elapsed());
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no TCP connection from {ns} to {addr} within {CONVERGE:?}\n{}",
                    nbctl(&self.nb(), &["show"])
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ping from `ns` to `addr` works within [`CONVERGE`].
    fn pings(&self, ns: &str, addr: &str) {
        let deadline = Instant::now() + CONVERGE;
        while !ping(ns, addr) {
            assert!(
                Instant::now() < deadline,
                "no ping reply from {addr} to {ns} within {CONVERGE:?}"
            );
            // A ping that fails at once (no route yet) must not spin.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Neither TCP nor ping gets through, three tries each (after a positive control showed the
/// path is otherwise programmed).
fn blocked(ns: &str, addr_port: &str) {
    let addr = addr_port.split(':').next().unwrap_or(addr_port);
    for _ in 0..3 {
        assert_eq!(tcp(ns, addr_port), None, "{ns} reached {addr_port}");
    }
    assert!(!ping(ns, addr), "{ns} got a ping reply from {addr}");
}

/// Asserts that a plugin call succeeded; returns its output.
fn succeeded(out: Output) -> Output {
    assert!(
        out.status.success(),
        "ovn-vpc-cni failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn at(addr: &str) -> String {
    format!("{addr}:{PORT}")
}

const ONE_VPC: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec:
  namespaces: [team-a]
  POLICY
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net1}
spec: {vpc: vpc-a, cidrs: [10.0.1.0/24], namespaces: [team-a]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net2}
spec: {vpc: vpc-a, cidrs: [10.0.2.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: team-a, annotations: {ovnvpc.io/ip_address: 10.0.1.2}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p3, namespace: team-a, annotations: {ovnvpc.io/subnet: a-net2, ovnvpc.io/ip_address: 10.0.2.2}}
spec: {containers: [{name: c, image: x}]}
"#;

const P2: &str = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: team-a, annotations: {ovnvpc.io/ip_address: 10.0.1.3}}
spec: {containers: [{name: c, image: x}]}
"#;

fn one_vpc(policy: &str, with_p2: bool) -> String {
    let policy = if policy.is_empty() {
        "policyRoutes: []"
    } else {
        policy
    };
    let mut y = ONE_VPC.replace("POLICY", policy);
    if with_p2 {
        y.push_str(P2);
    }
    y
}

/// vpc-a with a-net1 (p1 10.0.1.2, p2 10.0.1.3) and a-net2 (p3 10.0.2.2).
fn one_vpc_world() -> (World, usize, usize, usize) {
    let mut w = World::start();
    w.apply(&one_vpc("", true), false);
    let p1 = w.pod("team-a", "p1");
    let p2 = w.pod("team-a", "p2");
    let p3 = w.pod("team-a", "p3");
    (w, p1, p2, p3)
}

#[test]
fn pods_of_one_subnet_and_of_two_subnets_of_a_vpc_talk_and_the_gateway_answers() {
    let started = Instant::now();
    let (mut w, p1, p2, p3) = one_vpc_world();

    // What ADD reported and did, read back by independent tools.
    let r = &w.pods[p1].result;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"][0]["address"], "10.0.1.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.0.1.1");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(
        r["routes"][0],
        serde_json::json!({"dst": "0.0.0.0/0", "gw": "10.0.1.1"})
    );
    assert_eq!(r["interfaces"][1]["sandbox"], w.pods[p1].netns_path());
    let lsp = nbctl(
        &w.nb(),
        &["get", "Logical_Switch_Port", "p1.team-a", "addresses"],
    );
    let mac = r["interfaces"][1]["mac"].as_str().unwrap();
    assert!(lsp.contains(&format!("{mac} 10.0.1.2")), "{lsp} vs {mac}");
    let host = w.pods[p1].host_if();
    let id = |key: &str| {
        vsctl(
            &w.ovs(),
            &["get", "Interface", &host, &format!("external_ids:{key}")],
        )
        .trim()
        .trim_matches('"')
        .to_string()
    };
    assert_eq!(id("iface-id"), "p1.team-a");
    assert_eq!(id("ovn-installed"), "true");
    let link = run("ip", &["-n", &w.ns(p1), "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400") && link.contains(mac), "{link}");
    let offload = run("ip", &["netns", "exec", &w.ns(p1), "ethtool", "-k", "eth0"]);
    assert!(offload.contains("tx-checksumming: off"), "{offload}");
    succeeded(w.pods[p1].cni("CHECK"));
    // CHECK notices what is missing: here the default route.
    run("ip", &["-n", &w.ns(p1), "route", "del", "default"]);
    let broken = w.pods[p1].cni("CHECK");
    assert!(!broken.status.success());
    let err: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(err["code"], 100, "{err}");
    // A repeated ADD (a runtime retry) replaces the plumbing instead of failing.
    succeeded(w.pods[p1].cni("ADD"));
    succeeded(w.pods[p1].cni("CHECK"));
    let ports = vsctl(&w.ovs(), &["list-ports", "br-int"]);
    assert_eq!(ports.matches(&host).count(), 1, "{ports}");

    w.serve(p2, "p2");
    w.serve(p3, "p3");
    let (n1, n3) = (w.ns(p1), w.ns(p3));
    // Same subnet: switched, source kept.
    w.pings(&n1, "10.0.1.3");
    assert_eq!(w.reach(&n1, &at("10.0.1.3")), "p2 10.0.1.2");
    // The gateway (the VPC router's port) answers.
    w.pings(&n1, "10.0.1.1");
    // Other subnet: routed by the VPC router, source kept, both ways.
    w.pings(&n1, "10.0.2.2");
    assert_eq!(w.reach(&n1, &at("10.0.2.2")), "p3 10.0.1.2");
    w.pings(&n3, "10.0.2.1");
    assert_eq!(w.reach(&n3, &at("10.0.1.3")), "p2 10.0.2.2");
    eprintln!("test took {:?}", started.elapsed());
}

#[test]
fn a_drop_policy_route_drops_what_it_matches_and_nothing_else() {
    let (mut w, p1, p2, p3) = one_vpc_world();
    w.serve(p1, "p1");
    w.serve(p3, "p3");
    let (n1, n2, n3) = (w.ns(p1), w.ns(p2), w.ns(p3));
    // Before: p2 reaches p3 across the router.
    assert_eq!(w.reach(&n2, &at("10.0.2.2")), "p3 10.0.1.3");

    let policy = r#"policyRoutes: [{priority: 1000, match: "ip4.src == 10.0.1.3 && ip4.dst == 10.0.2.0/24", action: drop}]"#;
    w.apply(&one_vpc(policy, true), false);
    let listed = nbctl(&w.nb(), &["lr-policy-list", "vpc-a"]);
    assert!(listed.contains("drop"), "{listed}");
    // Not matched: p1 to p3 (routed), p2 to p1 (same subnet, never routed), p3 to p1.
    assert_eq!(w.reach(&n1, &at("10.0.2.2")), "p3 10.0.1.2");
    assert_eq!(w.reach(&n2, &at("10.0.1.2")), "p1 10.0.1.3");
    assert_eq!(w.reach(&n3, &at("10.0.1.2")), "p1 10.0.2.2");
    w.pings(&n2, "10.0.1.1");
    // Matched: p2 to a-net2, by TCP and ping (the positive controls above ran after the
    // policy landed, so the flows are in place).
    blocked(&n2, &at("10.0.2.2"));

    // Removing the policy lets it through again.
    w.apply(&one_vpc("", true), false);
    assert_eq!(w.reach(&n2, &at("10.0.2.2")), "p3 10.0.1.3");
}

#[test]
fn deleting_a_pod_stops_its_traffic_and_leaves_no_veth_port_or_logical_port() {
    let (mut w, p1, p2, p3) = one_vpc_world();
    w.serve(p2, "p2");
    let n1 = w.ns(p1);
    assert_eq!(w.reach(&n1, &at("10.0.1.3")), "p2 10.0.1.2");
    let host = w.pods[p2].host_if();
    assert!(vsctl(&w.ovs(), &["list-ports", "br-int"]).contains(&host));

    // CNI DEL, then the object leaves the manifests and apply --prune removes its port.
    let del = succeeded(w.pods[p2].cni("DEL"));
    assert!(del.stdout.is_empty(), "DEL prints nothing on success");
    w.apply(&one_vpc("", false), true);

    let links = run("ip", &["-n", w.chassis_ns(), "-o", "link", "show"]);
    assert!(!links.contains(&host), "veth {host} left behind:\n{links}");
    let pod_links = run("ip", &["-n", &w.ns(p2), "-o", "link", "show"]);
    assert!(!pod_links.contains("eth0"), "{pod_links}");
    let ports = vsctl(&w.ovs(), &["list-ports", "br-int"]);
    assert!(
        !ports.contains(&host),
        "OVS port {host} left behind: {ports}"
    );
    let ifaces = vsctl(&w.ovs(), &["--columns=name", "list", "Interface"]);
    assert!(!ifaces.contains(&host), "{ifaces}");
    let lsps = nbctl(&w.nb(), &["lsp-list", "a-net1"]);
    assert!(
        !lsps.contains("p2.team-a"),
        "logical port left behind: {lsps}"
    );
    assert!(lsps.contains("p1.team-a"), "{lsps}");
    // Its traffic stops; the others' does not.
    blocked(&n1, &at("10.0.1.3"));
    w.pings(&n1, "10.0.1.1");
    w.pings(&n1, "10.0.2.2");

    // DEL of a pod whose OVS port was already removed by hand still removes its veth.
    let host3 = w.pods[p3].host_if();
    vsctl(&w.ovs(), &["del-port", "br-int", &host3]);
    succeeded(w.pods[p3].cni("DEL"));
    let links = run("ip", &["-n", w.chassis_ns(), "-o", "link", "show"]);
    assert!(
        !links.contains(&host3),
        "veth {host3} left behind:\n{links}"
    );

    // DEL again, and with the namespace gone, still succeeds.
    succeeded(w.pods[p2].cni("DEL"));
    let pod = w.pods.remove(p2);
    let (plugin, id, ns, name) = (
        pod.plugin.clone(),
        pod.container_id.clone(),
        pod.netns_path(),
        (pod.namespace.clone(), pod.name.clone()),
    );
    drop(pod);
    assert!(!std::path::Path::new(&ns).exists());
    succeeded(plugin.call("DEL", &id, &ns, (&name.0, &name.1)));
    // ADD into a namespace that does not exist is CNI error 3.
    let add = plugin.call("ADD", &id, &ns, (&name.0, &name.1));
    assert!(!add.status.success());
    let err: Value = serde_json::from_slice(&add.stdout).unwrap();
    assert_eq!(err["code"], 3, "{err}");
}

const TWO_VPCS: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: external}
spec:
  cidrs: [172.16.0.0/24]
  gateway: 172.16.0.1
  excludeIps: ["172.16.0.2..172.16.0.9"]
  external: {physicalNetwork: physnet}
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec: {namespaces: [team-a], externalSubnet: external}
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-b}
spec: {namespaces: [team-b], externalSubnet: external}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net1}
spec: {vpc: vpc-a, cidrs: [10.0.1.0/24], namespaces: [team-a]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: b-net1}
spec: {vpc: vpc-b, cidrs: [10.0.1.0/24], namespaces: [team-b]}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: a-snat}
spec: {vpc: vpc-a, externalSubnet: external, address: 172.16.0.10}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: b-snat}
spec: {vpc: vpc-b, externalSubnet: external, address: 172.16.0.20}
---
apiVersion: ovnvpc.io/v1
kind: SnatRule
metadata: {name: a-out}
spec: {eip: a-snat, subnet: a-net1}
---
apiVersion: ovnvpc.io/v1
kind: SnatRule
metadata: {name: b-out}
spec: {eip: b-snat, subnet: b-net1}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: a-web}
spec: {vpc: vpc-a, externalSubnet: external, address: 172.16.0.100}
---
apiVersion: ovnvpc.io/v1
kind: Fip
metadata: {name: a-web}
spec: {eip: a-web, pod: team-a/web}
---
apiVersion: ovnvpc.io/v1
kind: DnatRule
metadata: {name: b-db}
spec: {eip: b-snat, protocol: tcp, externalPort: 8080, internalIp: 10.0.1.3, internalPort: 7000}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a, annotations: {ovnvpc.io/ip_address: 10.0.1.2}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: x, namespace: team-a, annotations: {ovnvpc.io/ip_address: 10.0.1.3}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-b, annotations: {ovnvpc.io/ip_address: 10.0.1.2}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: team-b, annotations: {ovnvpc.io/ip_address: 10.0.1.3}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: only, namespace: team-b, annotations: {ovnvpc.io/ip_address: 10.0.1.4}}
spec: {containers: [{name: c, image: x}]}
"#;

/// Two VPCs on 10.0.1.0/24 behind one external network; pods a-web, a-x, b-web, b-db, and
/// b-only (10.0.1.4, an address only vpc-b uses).
fn two_vpcs_world() -> (World, [usize; 5]) {
    let mut w = World::start();
    w.external_network();
    w.apply(TWO_VPCS, false);
    let pods = [
        w.pod("team-a", "web"),
        w.pod("team-a", "x"),
        w.pod("team-b", "web"),
        w.pod("team-b", "db"),
        w.pod("team-b", "only"),
    ];
    (w, pods)
}

#[test]
fn two_vpcs_on_the_same_cidr_are_isolated_and_each_snats_to_its_own_address() {
    let (mut w, [a_web, a_x, b_web, b_db, b_only]) = two_vpcs_world();
    w.serve(a_x, "a-x");
    w.serve(b_db, "b-db");
    w.serve(b_only, "b-only");
    w.serve_external();
    let (nax, nbd) = (w.ns(a_x), w.ns(b_db));
    // Same address 10.0.1.3 in both VPCs: each pod reaches its own VPC's, never the other's.
    assert_eq!(w.reach(&w.ns(a_web), &at("10.0.1.3")), "a-x 10.0.1.2");
    assert_eq!(w.reach(&w.ns(b_web), &at("10.0.1.3")), "b-db 10.0.1.2");
    // An address only vpc-b uses: its own pods reach it, vpc-a's do not.
    assert_eq!(w.reach(&w.ns(b_web), &at("10.0.1.4")), "b-only 10.0.1.2");
    blocked(&w.ns(a_web), &at("10.0.1.4"));
    // The external network sees each VPC behind its own SNAT address.
    w.pings(&nax, "172.16.0.1");
    w.pings(&nbd, "172.16.0.1");
    let from_a = w.reach(&nax, &at("172.16.0.1"));
    let from_b = w.reach(&nbd, &at("172.16.0.1"));
    assert_eq!(from_a, "ext 172.16.0.10");
    assert_eq!(from_b, "ext 172.16.0.20");
    assert_ne!(from_a, from_b);
}

#[test]
fn a_fip_exposes_a_pod_at_its_eip_and_a_dnat_rule_forwards_one_port() {
    let (mut w, [a_web, _a_x, _b_web, b_db, _b_only]) = two_vpcs_world();
    w.serve(a_web, "a-web");
    w.serve(b_db, "b-db");
    w.serve_external();
    let ext = w.ext_ns();
    // Fip: inbound at the Eip, source kept; outbound from the pod leaves as the Eip.
    w.pings(&ext, "172.16.0.100");
    assert_eq!(w.reach(&ext, &at("172.16.0.100")), "a-web 172.16.0.1");
    assert_eq!(w.reach(&w.ns(a_web), &at("172.16.0.1")), "ext 172.16.0.100");
    // DnatRule: 172.16.0.20:8080 → b-db 10.0.1.3:7000; no other port of that address is
    // forwarded.
    assert_eq!(w.reach(&ext, "172.16.0.20:8080"), "b-db 172.16.0.1");
    for other in ["172.16.0.20:7000", "172.16.0.20:8081"] {
        for _ in 0..3 {
            assert_eq!(tcp(&ext, other), None, "{other} was forwarded");
        }
    }
}

const DUAL_STACK: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-d}
spec: {}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: d-net}
spec: {vpc: vpc-d, cidrs: [10.0.3.0/24, "fd00:3::/64"], namespaces: [team-d]}
---
apiVersion: v1
kind: Pod
metadata: {name: d1, namespace: team-d, annotations: {ovnvpc.io/ip_address: "10.0.3.2,fd00:3::2"}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d2, namespace: team-d, annotations: {ovnvpc.io/ip_address: "10.0.3.3,fd00:3::3"}}
spec: {containers: [{name: c, image: x}]}
"#;

#[test]
fn a_dual_stack_pod_gets_both_families_and_talks_tcp_over_ipv6() {
    let mut w = World::start();
    w.apply(DUAL_STACK, false);
    let d1 = w.pod("team-d", "d1");
    let d2 = w.pod("team-d", "d2");
    let r = &w.pods[d1].result;
    assert_eq!(r["ips"][0]["address"], "10.0.3.2/24", "{r}");
    assert_eq!(r["ips"][1]["address"], "fd00:3::2/64", "{r}");
    assert_eq!(r["ips"][1]["gateway"], "fd00:3::1", "{r}");
    assert!(r["routes"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"dst": "::/0", "gw": "fd00:3::1"})));
    let addrs = run(
        "ip",
        &["-n", &w.ns(d1), "-6", "addr", "show", "dev", "eth0"],
    );
    assert!(addrs.contains("fd00:3::2/64"), "{addrs}");
    let s = serve_on(&w.ns(d2), "[::]:7001", "d2");
    w.servers.push(s);
    let n1 = w.ns(d1);
    w.pings(&n1, "fd00:3::3");
    w.pings(&n1, "fd00:3::1");
    assert_eq!(w.reach(&n1, "[fd00:3::3]:7001"), "d2 fd00:3::2");
}

/// Cluster mode: no `nb` in the plugin's configuration; the allocation comes from the pod's
/// annotations, read from the API server named in `kubeconfig` (here a stand-in serving the
/// Pod, inside the chassis namespace where the plugin runs).
#[test]
fn in_cluster_mode_the_plugin_plumbs_a_pod_from_its_annotations() {
    let (mut w, p1, _p2, _p3) = one_vpc_world();
    // The controller's annotations for p4, matching a port apply made for it.
    w.apply(
        &format!(
            "{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p4, namespace: team-a, annotations: {{ovnvpc.io/ip_address: 10.0.1.44}}}}\nspec: {{containers: []}}\n",
            one_vpc("", true)
        ),
        false,
    );
    let lsp = nbctl(
        &w.nb(),
        &["get", "Logical_Switch_Port", "p4.team-a", "addresses"],
    );
    let mac = lsp
        .trim()
        .trim_matches(|c| c == '[' || c == ']' || c == '"')
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let pod_json = dir.path().join("pod.json");
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p4", "namespace": "team-a", "annotations": {
            "ovnvpc.io/allocated": "true", "ovnvpc.io/ip_address": "10.0.1.44",
            "ovnvpc.io/mac_address": mac, "ovnvpc.io/cidr": "10.0.1.0/24",
            "ovnvpc.io/gateway": "10.0.1.1", "ovnvpc.io/logical_switch": "a-net1"}}});
    std::fs::write(&pod_json, pod.to_string()).unwrap();
    let api = StandInApi::start(tcp_peer(), w.chassis_ns(), "127.0.0.1:16443", &pod_json);
    let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:16443");
    let mut conf: Value = serde_json::from_str(&w.plugin.conf).unwrap();
    conf.as_object_mut().unwrap().remove("nb");
    conf["kubeconfig"] = Value::String(kubeconfig.display().to_string());
    w.plugin.conf = conf.to_string();

    let p4 = w.pod("team-a", "p4");
    assert_eq!(w.pods[p4].result["ips"][0]["address"], "10.0.1.44/24");
    assert_eq!(w.pods[p4].result["interfaces"][1]["mac"], mac.as_str());
    // Packets: the gateway and the standalone-plumbed p1 answer the cluster-plumbed pod.
    w.pings(&w.ns(p4), "10.0.1.1");
    w.serve(p1, "p1");
    assert_eq!(w.reach(&w.ns(p4), &at("10.0.1.2")), "p1 10.0.1.44");
    drop(api);
}
