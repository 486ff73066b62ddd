//! `ovn_vpc::node::chassis::configure` against a sandbox chassis: the Open_vSwitch row read back
//! with ovs-vsctl, and ovn-controller acting on it as seen in the Southbound database.

use ovn_vpc::node::chassis::{configure, ChassisConfig, ChassisError};
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{eventually, sbctl, vsctl};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn configure_sets_our_keys_keeps_the_others_and_ovn_controller_follows() {
    let sandbox = Sandbox::builder().chassis(1).start().unwrap();
    let ch = &sandbox.chassis()[0];
    let ovs = ch.ovs_remote();
    let sb = sandbox.sb_remote().unwrap();
    let mut cfg = ChassisConfig {
        system_id: ch.system_id().to_string(),
        ovn_remote: sb.clone(),
        encap_type: "geneve".into(),
        encap_ip: "127.0.0.99".into(),
        bridge_mappings: vec![
            ("physnet".into(), "br-ex".into()),
            ("st".into(), "br-st".into()),
        ],
    };
    block_on(configure(&ovs, &cfg)).unwrap();
    let get = |key: &str| {
        vsctl(
            &ovs,
            &["get", "Open_vSwitch", ".", &format!("external_ids:{key}")],
        )
        .trim()
        .trim_matches('"')
        .to_string()
    };
    assert_eq!(get("ovn-encap-ip"), "127.0.0.99");
    assert_eq!(get("ovn-bridge-mappings"), "physnet:br-ex,st:br-st");
    assert_eq!(get("system-id"), ch.system_id());
    // A key that is not ours is left alone.
    assert_eq!(get("ovn-bridge-datapath-type"), "netdev");
    // ovn-controller re-registers its tunnel endpoint with the new address.
    let moved = eventually(30, || {
        sbctl(&sb, &["--columns=ip", "list", "Encap"]).contains("127.0.0.99")
    });
    assert!(moved, "{}", sbctl(&sb, &["list", "Encap"]));

    // No mappings: the key goes away.
    cfg.bridge_mappings.clear();
    block_on(configure(&ovs, &cfg)).unwrap();
    let ids = vsctl(&ovs, &["get", "Open_vSwitch", ".", "external_ids"]);
    assert!(!ids.contains("ovn-bridge-mappings"), "{ids}");
}

/// An ovsdb-server child process, killed by pid on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_uninitialized_database_is_an_error_not_a_silent_no_op() {
    // A fresh Open_vSwitch database with no Open_vSwitch row (before `ovs-vsctl init`).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("conf.db");
    let sock = dir.path().join("db.sock");
    let ctl = dir.path().join("db.ctl");
    ovn_vpc_tests::run(
        "ovsdb-tool",
        &[
            "create",
            db.to_str().unwrap(),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ],
    );
    let _server = Server(
        std::process::Command::new("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--unixctl={}", ctl.display()))
            .arg("--no-chdir")
            .arg("-vconsole:off")
            .spawn()
            .unwrap(),
    );
    assert!(
        eventually(10, || sock.exists()),
        "ovsdb-server did not start"
    );
    let cfg = ChassisConfig {
        system_id: "x".into(),
        ovn_remote: "tcp:127.0.0.1:6642".into(),
        encap_type: "geneve".into(),
        encap_ip: "127.0.0.1".into(),
        bridge_mappings: vec![],
    };
    let e = block_on(configure(&format!("unix:{}", sock.display()), &cfg)).unwrap_err();
    assert!(matches!(e, ChassisError::NotInitialized(_)), "{e}");
}
