//! `ovn-vpc apply -f` on hostile input, through the binary against a real ovsdb-server with
//! ovn-nbctl as the witness: manifest files that would block or exhaust memory, YAML that would
//! take minutes, and objects that are wrong in ways the server would have taken (or reset the
//! connection over). Each is refused or skipped with a message naming what, and nothing is
//! applied.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{nbctl, ovn_vpc_bin, write_file as write};

/// Runs the binary, killing it (by its pid: our own child) if it outlives `limit`: the limit
/// turns a hang into a failure that names it, it is not a timing claim. Returns the output and
/// the CPU time the run used (user + system): a measure of its work that does not grow when
/// the machine is busy, as wall-clock time does.
fn ovn_vpc_within(limit: Duration, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(ovn_vpc_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Exited, but not reaped (WNOWAIT): its /proc entry still holds its CPU times.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let mut killed = false;
    while matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive)) {
        if started.elapsed() > limit {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = cpu_time(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(
        !killed,
        "ovn-vpc {args:?} still ran after {limit:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, cpu)
}

/// User + system CPU time of process `pid` (`utime`, `stime` of /proc/PID/stat, in clock
/// ticks).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn ovn_vpc(args: &[&str]) -> Output {
    ovn_vpc_within(Duration::from_secs(60), args).0
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const SUBNET: &str = "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: default}\nspec: {cidrs: [10.16.0.0/16], default: true}\n";

#[test]
fn fifos_devices_huge_and_deep_files_never_block_and_a_bom_is_accepted() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("manifests");
    std::fs::create_dir(&d).unwrap();
    // A byte order mark at the start of the file and of its second document.
    write(
        &d,
        "a.yaml",
        &format!("\u{feff}{SUBNET}---\n\u{feff}apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: x}}\nspec: {{containers: []}}\n"),
    );
    nix::unistd::mkfifo(&d.join("b.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("c.yaml")).unwrap();
    let dir_arg = d.display().to_string();
    // Opening the FIFO for reading would block for ever (no writer): the limit catches that.
    let (out, _) = ovn_vpc_within(
        Duration::from_secs(30),
        &["apply", "--db", &nb, "-f", &dir_arg],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for want in [
        "b.yaml (a FIFO, not a regular file)",
        "c.yaml (a character device, not a regular file)",
    ] {
        assert!(err.contains(want), "skipped list lacks {want:?}: {err}");
    }
    let ports = nbctl(&nb, &["--columns=name", "list", "Logical_Switch_Port"]);
    assert!(
        ports.contains("web.x"),
        "the BOM document was lost: {ports}"
    );

    // Named explicitly, a device is an error naming it.
    let (out, _) = ovn_vpc_within(
        Duration::from_secs(30),
        &["apply", "--db", &nb, "-f", "/dev/zero"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/dev/zero: a character device, not a manifest file"),
        "{}",
        stderr(&out)
    );

    // A pipe streaming without end stops at the size limit (memory stays bounded).
    let fifo = dir.path().join("stream.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let chunk = vec![b'#'; 1 << 20];
            // Ends with EPIPE once the reader gave up.
            while f.write_all(&chunk).is_ok() {}
        })
    };
    let fifo_arg = fifo.display().to_string();
    let (out, _) = ovn_vpc_within(
        Duration::from_secs(30),
        &["apply", "--db", &nb, "-f", &fifo_arg],
    );
    writer.join().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stream.yaml: larger than 64 MiB, the limit for one manifest file"),
        "{}",
        stderr(&out)
    );

    // 100,000 levels of flow nesting (500 KB): refused in well under a second of work (CPU
    // time, the whole process: start, connect, read, refuse).
    let deep = write(
        dir.path(),
        "deep.yaml",
        &format!(
            "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {{name: v}}\nspec: {}x{}\n",
            "{a: ".repeat(100_000),
            "}".repeat(100_000)
        ),
    );
    let (out, cpu) = ovn_vpc_within(Duration::from_secs(30), &["plan", "--db", &nb, "-f", &deep]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("deep.yaml, document 1: nested deeper than 128 levels (at line 4)"),
        "{}",
        stderr(&out)
    );
    eprintln!("deep.yaml refused after {cpu:?} of CPU time");
    assert!(cpu < Duration::from_secs(1), "{cpu:?} of CPU time");
}

/// Each hole of issue 12 item 6 in one world; applied whole, it went in with exit 0.
const HOLES: &str = r#"
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: ext}
spec: {cidrs: [172.16.0.0/24], gateway: 172.16.0.1, excludeIps: ["172.16.0.2..172.16.0.9"], external: {physicalNetwork: physnet}}
---
apiVersion: ovnvpc.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec:
  externalSubnet: ext
  staticRoutes: [{cidr: 192.168.0.0/16, nextHop: "fd00::1"}]
  policyRoutes:
  - {priority: 10, match: "ip4.src == \"10.0.1.5", action: drop}
  - {priority: 11, match: "ip4\n&& tcp", action: drop}
  - {priority: 12, match: "(ip4", action: drop}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: a-net1}
spec: {vpc: vpc-a, cidrs: [10.0.1.0/24], gateway: 10.0.1.255, excludeIps: ["fd00::5"], namespaces: [team-a]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: whole}
spec: {vpc: vpc-a, cidrs: [0.0.0.0/0]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: p2p}
spec: {vpc: vpc-a, cidrs: [10.9.0.0/31, "fd00:9::/127"]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: host}
spec: {vpc: vpc-a, cidrs: [10.8.0.1/32]}
---
apiVersion: ovnvpc.io/v1
kind: Subnet
metadata: {name: "a\u0000b"}
spec: {vpc: vpc-a, cidrs: [10.7.0.0/24]}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: gw}
spec: {vpc: vpc-a, externalSubnet: ext, address: 172.16.0.1}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: net}
spec: {vpc: vpc-a, externalSubnet: ext, address: 172.16.0.0}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: bcast}
spec: {vpc: vpc-a, externalSubnet: ext, address: 172.16.0.255}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: excl}
spec: {vpc: vpc-a, externalSubnet: ext, address: 172.16.0.5}
---
apiVersion: ovnvpc.io/v1
kind: Eip
metadata: {name: e1}
spec: {vpc: vpc-a, externalSubnet: ext, address: 172.16.0.20}
---
apiVersion: ovnvpc.io/v1
kind: Fip
metadata: {name: f1}
spec: {eip: e1, ip: 10.0.1.10}
---
apiVersion: ovnvpc.io/v1
kind: Fip
metadata: {name: f2}
spec: {eip: e1, ip: 10.0.1.11}
---
apiVersion: ovnvpc.io/v1
kind: DnatRule
metadata: {name: d6}
spec: {eip: e1, protocol: tcp, externalPort: 8080, internalIp: "fd00:a::5", internalPort: 80}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: team-a, annotations: {ovnvpc.io/mac_address: "0a:00:00:00:00:01"}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: team-a, annotations: {ovnvpc.io/mac_address: "0a:00:00:00:00:01"}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: p3, namespace: team-a, annotations: {ovnvpc.io/mac_address: "zz:zz"}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: p4, namespace: team-a, annotations: {ovnvpc.io/mac_address: "01:00:5e:00:00:01"}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: p5, namespace: team-a, annotations: {ovnvpc.io/ip_address: "10.9.9.9"}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: p6, namespace: team-a, annotations: {ovnvpc.io/ip_address: "10.0.1.7,10.0.1.8"}}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: b/c, namespace: a}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: a/b}
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: "x\"y", namespace: team-a}
spec: {containers: []}
"#;

#[test]
fn each_validation_hole_is_refused_naming_object_and_field_and_nothing_is_applied() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "holes.yaml", HOLES);
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for want in [
        "Eip/gw: spec.address: 172.16.0.1 is the gateway of Subnet ext: it cannot be an Eip",
        "Eip/net: spec.address: 172.16.0.0 is the network address of 172.16.0.0/24: it cannot be an Eip",
        "Eip/bcast: spec.address: 172.16.0.255 is the broadcast address of 172.16.0.0/24: it cannot be an Eip",
        "Eip/excl: spec.address: 172.16.0.5 is excluded (spec.excludeIps) in Subnet ext: it cannot be an Eip",
        "Fip/f2: spec.eip: Eip e1 already has Fip f1; an Eip maps to one Fip",
        "Pod/team-a/p2: metadata.annotations[ovnvpc.io/mac_address]: 0a:00:00:00:00:01 is also requested by Pod team-a/p1 in Subnet a-net1",
        "Pod/team-a/p3: metadata.annotations[ovnvpc.io/mac_address]: \"zz:zz\" is not a MAC address",
        "Pod/team-a/p4: metadata.annotations[ovnvpc.io/mac_address]: 01:00:5e:00:00:01 is a multicast or broadcast address",
        "Pod/team-a/p5: metadata.annotations[ovnvpc.io/ip_address]: 10.9.9.9 is outside Subnet a-net1 (10.0.1.0/24)",
        "Pod/team-a/p6: metadata.annotations[ovnvpc.io/ip_address]: 10.0.1.8 and 10.0.1.7 are of one family",
        "Pod/\"a/b/c\": metadata.name: \"b/c\" is not a valid name: '/' is not allowed",
        "Pod/\"a/b/c\": metadata.namespace: \"a/b\" is not a valid name: '/' is not allowed",
        "Pod/\"team-a/x\\\"y\": metadata.name: \"x\\\"y\" is not a valid name",
        "Subnet/a-net1: spec.gateway: 10.0.1.255 is the broadcast address of 10.0.1.0/24, which cannot be a gateway",
        "Subnet/whole: spec.cidrs[0]: 0.0.0.0/0 is the default route, not a subnet",
        "Subnet/p2p: spec.cidrs[0]: 10.9.0.0/31 leaves no room for a gateway and a pod (IPv4 subnets need a prefix of /30 or shorter)",
        "Subnet/p2p: spec.cidrs[1]: fd00:9::/127 leaves no room for a gateway and a pod (IPv6 subnets need a prefix of /126 or shorter)",
        "Subnet/host: spec.cidrs[0]: 10.8.0.1/32 leaves no room",
        "Subnet/a-net1: spec.excludeIps[0]: \"fd00::5\" is IPv6 and the Subnet has no IPv6 CIDR",
        "Subnet/\"a\\0b\": metadata.name: \"a\\0b\" is not a valid name: '\\0' is not allowed",
        "Vpc/vpc-a: spec.staticRoutes[0].nextHop: fd00::1 is IPv6 but the route's cidr 192.168.0.0/16 is IPv4",
        "Vpc/vpc-a: spec.policyRoutes[0].match: a string (\") is not closed",
        "Vpc/vpc-a: spec.policyRoutes[1].match: contains the control character '\\n'",
        "Vpc/vpc-a: spec.policyRoutes[2].match: '(' is not closed",
        "DnatRule/d6: spec.internalIp: fd00:a::5 is IPv6, but Eip e1 is IPv4",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(!err.contains('\0'), "a NUL reached the output");
    assert!(
        nbctl(&nb, &["show"]).trim().is_empty(),
        "something was applied"
    );

    // The same object twice: refused, naming both places.
    let twice = write(dir.path(), "twice.yaml", &format!("{SUBNET}---\n{SUBNET}"));
    let other = write(dir.path(), "other.yaml", SUBNET);
    for (args, want) in [
        (vec![twice.as_str()], format!("{twice}, document 2 (Subnet/default): metadata.name: Subnet/default is also given in {twice}, document 1")),
        (vec![other.as_str(), twice.as_str()], format!("{twice}, document 1 (Subnet/default): metadata.name: Subnet/default is also given in {other}, document 1")),
    ] {
        let mut a = vec!["apply", "--db", &nb];
        for f in args {
            a.extend(["-f", f]);
        }
        let out = ovn_vpc(&a);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    }
    // A name of 300 characters.
    let long = write(
        dir.path(),
        "long.yaml",
        &format!(
            "apiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {{name: {}}}\nspec: {{}}\n",
            "v".repeat(300)
        ),
    );
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &long]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("metadata.name: \"vvvv"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("it has 300 characters"),
        "{}",
        stderr(&out)
    );
    assert!(
        nbctl(&nb, &["show"]).trim().is_empty(),
        "something was applied"
    );
}

fn pod(name: &str, created: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: n, creationTimestamp: \"{created}\"}}\nspec: {{containers: []}}\n")
}

#[test]
fn pods_waiting_for_a_full_subnet_get_freed_addresses_oldest_first() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    // A /29: gateway .1, five addresses .2–.6.
    let subnet = "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: small}\nspec: {cidrs: [10.50.0.0/29], namespaces: [n]}\n";
    let holders: String = (0..5)
        .map(|i| pod(&format!("m{i}"), "2024-01-01T00:00:00Z"))
        .collect();
    // Both wait; the one whose name sorts first is the newer.
    let waiting = format!(
        "{}{}",
        pod("a-newer", "2024-03-01T00:00:00Z"),
        pod("z-older", "2024-02-01T00:00:00Z")
    );
    let f = write(
        dir.path(),
        "full.yaml",
        &format!("{subnet}{holders}{waiting}"),
    );
    let out = ovn_vpc(&["apply", "--db", &nb, "-f", &f]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pod/n/a-newer"), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pod/n/z-older"), "{}", stderr(&out));

    // One holder goes: its address goes to the pod that has waited longer.
    let fewer: String = (1..5)
        .map(|i| pod(&format!("m{i}"), "2024-01-01T00:00:00Z"))
        .collect();
    let f = write(
        dir.path(),
        "fewer.yaml",
        &format!("{subnet}{fewer}{waiting}"),
    );
    let out = ovn_vpc(&["apply", "--prune", "--db", &nb, "-f", &f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ports = nbctl(&nb, &["--columns=name", "list", "Logical_Switch_Port"]);
    assert!(ports.contains("z-older.n"), "{ports}");
    assert!(!ports.contains("a-newer.n"), "{ports}");
    assert!(stderr(&out).contains("Pod/n/a-newer"), "{}", stderr(&out));
}
