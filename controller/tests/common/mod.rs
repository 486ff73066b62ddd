//! Helpers shared by the integration tests.

use std::process::Command;

/// Runs ovn-nbctl against `db` (the independent witness) and returns its stdout.
pub fn nbctl(db: &str, args: &[&str]) -> String {
    let out = Command::new("ovn-nbctl")
        .arg(format!("--db={db}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
