//! The `ovn-vpc` binary as a user runs it.

use ovn_vpc_tests::{nbctl, ovn_vpc};

#[test]
fn demo_starts_the_sandbox_shows_it_and_cleans_up() {
    let out = ovn_vpc(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("export OVN_NB_DB=unix:"), "{stdout}");
    assert!(stdout.contains("chassis ch0: netns ovnvpc-"), "{stdout}");
    // It applied the bundled examples: both VPCs with their NAT gateways on ch0, and a
    // re-apply would change nothing.
    assert!(stdout.contains("vpc vpc-a (router vpc-a)"), "{stdout}");
    assert!(stdout.contains("vpc vpc-b (router vpc-b)"), "{stdout}");
    assert!(
        stdout.contains("ha-chassis-group vpc-a-gateway [ch0:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nat dnat_and_snat 172.16.0.100 <-> 10.0.1.2 (Fip/web-a)"),
        "{stdout}"
    );
    assert!(stdout.contains("would change 0 row(s)"), "{stdout}");
    // The sandbox directory it printed is gone after it exits.
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OVN sandbox in "))
        .expect("sandbox directory line");
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[test]
fn unknown_subcommands_are_refused_with_usage() {
    let out = ovn_vpc(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn dump_and_show_read_a_live_database() {
    let sandbox = ovn_vpc::sandbox::Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    nbctl(&nb, &["ls-add", "sw0", "--", "lsp-add", "sw0", "p0"]);
    let run = |args: &[&str]| {
        let out = ovn_vpc(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run(&[
        "dump",
        "--db",
        &nb,
        "--format",
        "json",
        "Logical_Switch",
    ]))
    .unwrap();
    assert_eq!(json["Logical_Switch"][0]["name"], "sw0");
    let text = run(&["dump", "--db", &nb]);
    assert!(
        text.contains("Logical_Switch_Port table") && text.contains("p0"),
        "{text}"
    );
    let tree = run(&["show", "--db", &nb]);
    assert!(
        tree.contains("switch sw0") && tree.contains("    port p0"),
        "{tree}"
    );
    // A bad remote is a clear error, not a panic.
    let out = ovn_vpc(&["dump", "--db", "tcp:127.0.0.1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ovn-vpc:"));
}
