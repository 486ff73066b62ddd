//! The `ovn-vpc` binary as a user runs it.

use std::process::Command;

#[test]
fn demo_starts_the_sandbox_shows_it_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_ovn-vpc"))
        .arg("demo")
        .output()
        .expect("run ovn-vpc demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("export OVN_NB_DB=unix:"), "{stdout}");
    assert!(stdout.contains("chassis ch0: netns ovnvpc-"), "{stdout}");
    // The sandbox directory it printed is gone after it exits.
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OVN sandbox in "))
        .expect("sandbox directory line");
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[test]
fn unknown_subcommands_are_refused_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_ovn-vpc"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}
