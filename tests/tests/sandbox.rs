//! The OVN sandbox launcher against the real daemons: every test asserts on what the daemons
//! serve, read back through the distribution's own tools as independent witnesses.

use std::sync::mpsc;

use ovn_vpc::sandbox::{Sandbox, SandboxBuilder};
use ovn_vpc_tests::{eventually, nbctl, netns_list, pid_exists, run, sbctl, vsctl};

/// A name unique across parallel tests and runs (an external OVN may be shared).
fn unique(base: &str) -> String {
    format!(
        "{base}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[test]
fn a_row_written_with_ovn_nbctl_is_served_over_unix_and_tcp() {
    let sandbox = SandboxBuilder::from_env().start().unwrap();
    let name = unique("sw");
    nbctl(&sandbox.nb_remote(), &["ls-add", &name]);
    let tcp = sandbox.nb_tcp_remote().expect("NB listens on TCP");
    assert!(tcp.starts_with("tcp:127.0.0.1:"), "{tcp}");
    // Read it back with a different client over the other transport.
    let dump = run(
        "ovsdb-client",
        &["dump", &tcp, "OVN_Northbound", "Logical_Switch", "name"],
    );
    assert!(dump.contains(&name), "{name} not in:\n{dump}");
    if !sandbox.nb_is_external() {
        nbctl(&sandbox.nb_remote(), &["ls-del", &name]);
    }
}

#[test]
fn northd_derives_southbound_rows_from_the_northbound() {
    let sandbox = SandboxBuilder::from_env().northd().start().unwrap();
    let nb = sandbox.nb_remote();
    let sb = sandbox.sb_remote().expect("a Southbound database");
    let (ls, lsp) = (unique("ls"), unique("lsp"));
    nbctl(
        &nb,
        &[
            "ls-add",
            &ls,
            "--",
            "lsp-add",
            &ls,
            &lsp,
            "--",
            "lsp-set-addresses",
            &lsp,
            "0a:00:00:00:00:01 10.0.0.5",
        ],
    );
    let found = eventually(30, || {
        let ports = sbctl(&sb, &["--columns=logical_port", "list", "Port_Binding"]);
        let dps = sbctl(&sb, &["--columns=external_ids", "list", "Datapath_Binding"]);
        ports.contains(&lsp) && dps.contains(&ls)
    });
    assert!(
        found,
        "northd did not create the datapath and port binding for {ls}/{lsp}"
    );
    let flows = sbctl(&sb, &["lflow-list", &ls]);
    assert!(
        flows.contains("10.0.0.5"),
        "no logical flow mentions the port address:\n{flows}"
    );
    if !sandbox.nb_is_external() {
        nbctl(&nb, &["ls-del", &ls]);
    }
}

#[test]
fn a_three_member_cluster_elects_a_leader_and_a_new_one_after_the_leader_is_killed() {
    let mut sandbox = Sandbox::builder().nb_cluster(3).start().unwrap();
    assert_eq!(sandbox.nb_servers().len(), 3);
    let remote = sandbox.nb_tcp_remote().unwrap();
    assert_eq!(remote.split(',').count(), 3, "{remote}");

    let first = sandbox.wait_nb_leader(None).unwrap();
    assert_eq!(sandbox.nb_leader(), Some(first));
    nbctl(&remote, &["ls-add", "before"]);

    sandbox.kill_nb(first).unwrap();
    assert!(sandbox.nb_servers()[first].pid().is_none());
    let second = sandbox.wait_nb_leader(Some(first)).unwrap();
    assert_ne!(first, second, "the killed member cannot still lead");
    // ovn-nbctl finds the new leader in the remote list and the write commits.
    nbctl(&remote, &["ls-add", "after"]);

    // The killed member comes back on the same files and port and catches up.
    sandbox.start_nb(first).unwrap();
    let member = sandbox.nb_servers()[first].unix_remote();
    let caught_up = eventually(30, || {
        let out = run(
            "ovsdb-client",
            &["dump", &member, "OVN_Northbound", "Logical_Switch", "name"],
        );
        out.contains("before") && out.contains("after")
    });
    assert!(
        caught_up,
        "restarted member did not catch up:\n{}",
        ovn_vpc::sandbox::nb_logs(&sandbox)
    );
    assert!(sandbox.nb_servers()[first].status().unwrap().connected);
}

#[test]
fn a_standalone_server_restarts_on_its_files_and_port() {
    let mut sandbox = Sandbox::builder().start().unwrap();
    let tcp = sandbox.nb_tcp_remote().unwrap();
    nbctl(&tcp, &["ls-add", "kept"]);
    sandbox.kill_nb(0).unwrap();
    assert!(sandbox.nb_leader().is_none());
    sandbox.start_nb(0).unwrap();
    assert_eq!(
        sandbox.nb_tcp_remote().unwrap(),
        tcp,
        "the TCP remote changed on restart"
    );
    assert!(nbctl(&tcp, &["ls-list"]).contains("kept"));
}

#[test]
fn a_chassis_runs_a_netdev_br_int_in_its_own_namespace_and_registers() {
    let sandbox = SandboxBuilder::from_env().chassis(1).start().unwrap();
    let chassis = &sandbox.chassis()[0];
    let ovs = chassis.ovs_remote();
    assert_eq!(
        vsctl(&ovs, &["get", "Bridge", "br-int", "datapath_type"]).trim(),
        "netdev"
    );
    // br-int's tap lives in the chassis namespace, not in the root one.
    let links = run("ip", &["-n", chassis.netns(), "-o", "link", "show"]);
    assert!(links.contains("br-int"), "{links}");
    if let (Some(sb), false) = (sandbox.sb_remote(), sandbox.nb_is_external()) {
        let chassis_rows = sbctl(&sb, &["--columns=name", "list", "Chassis"]);
        assert!(chassis_rows.contains("ch0"), "{chassis_rows}");
        let encaps = sbctl(&sb, &["--columns=type", "list", "Encap"]);
        assert!(encaps.contains("geneve"), "{encaps}");
    }
    // ovn-controller programmed br-int: OpenFlow tables are populated.
    let ctl = chassis.dir().join("ovs-vswitchd.ctl");
    let programmed = eventually(30, || {
        run(
            "ovs-ofctl",
            &[
                "dump-flows",
                &format!("unix:{}", chassis.dir().join("br-int.mgmt").display()),
            ],
        )
        .lines()
        .count()
            > 10
    });
    assert!(
        programmed,
        "br-int has no flows; vswitchd ctl {}",
        ctl.display()
    );
}

#[test]
fn an_external_ovn_is_used_instead_of_starting_one() {
    // Stand-in for a docker-compose OVN: another sandbox, reached over TCP.
    let central = Sandbox::builder().northd().start().unwrap();
    let nb = central.nb_tcp_remote().unwrap();
    let sb = central.sb_tcp_remote().unwrap();
    let edge = Sandbox::builder()
        .external(Some(nb.clone()), Some(sb.clone()))
        .northd()
        .chassis(1)
        .start()
        .unwrap();
    assert!(edge.nb_is_external());
    assert_eq!(edge.nb_remote(), nb);
    assert!(
        edge.nb_servers().is_empty() && edge.sb_server().is_none(),
        "started its own databases"
    );
    // Only the chassis' three daemons run: no ovsdb-server for NB/SB, no northd.
    assert_eq!(edge.pids().len(), 3, "{:?}", edge.pids());
    let registered = eventually(30, || {
        sbctl(&sb, &["--columns=name", "list", "Chassis"]).contains("ch0-")
    });
    assert!(
        registered,
        "the edge chassis did not register in the external SB"
    );
}

/// Every pid and namespace of a sandbox, and its directory.
fn footprint(s: &Sandbox) -> (Vec<u32>, Vec<String>, std::path::PathBuf) {
    (s.pids(), s.netns_names(), s.dir().to_path_buf())
}

fn assert_gone(pids: &[u32], namespaces: &[String]) {
    for pid in pids {
        assert!(!pid_exists(*pid), "process {pid} outlived its sandbox");
    }
    let left = netns_list();
    for ns in namespaces {
        assert!(!left.contains(ns), "namespace {ns} outlived its sandbox");
    }
}

#[test]
fn teardown_leaves_no_process_namespace_or_directory_behind() {
    let sandbox = Sandbox::builder()
        .nb_cluster(3)
        .northd()
        .chassis(1)
        .start()
        .unwrap();
    let (pids, namespaces, dir) = footprint(&sandbox);
    // 3 NB members, SB, northd, and per chassis: ovsdb-server, ovs-vswitchd, ovn-controller.
    assert_eq!(pids.len(), 8, "{pids:?}");
    assert!(pids.iter().all(|p| pid_exists(*p)));
    assert_eq!(namespaces.len(), 1);
    assert!(netns_list().contains(&namespaces[0]));
    drop(sandbox);
    assert_gone(&pids, &namespaces);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn teardown_also_happens_when_the_test_panics() {
    let (tx, rx) = mpsc::channel();
    let result = std::thread::spawn(move || {
        let sandbox = Sandbox::builder().northd().chassis(1).start().unwrap();
        tx.send(footprint(&sandbox)).unwrap();
        panic!("deliberate failure inside a test holding a sandbox");
    })
    .join();
    assert!(result.is_err());
    let (pids, namespaces, dir) = rx.recv().unwrap();
    assert_eq!(pids.len(), 6, "{pids:?}");
    assert_gone(&pids, &namespaces);
    // The logs of a failed test are kept for inspection; this test removes them itself.
    assert!(
        dir.join("northd.log").exists(),
        "logs of the failed test were not kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
