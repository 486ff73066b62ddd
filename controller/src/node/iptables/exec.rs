//! Running the distribution's tools (`iptables-*`, `ipset`), optionally inside a network
//! namespace (`ip netns exec NS ...`, used by the tests): stdout on success, the command line and
//! trimmed stderr on failure.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::IptablesError;

/// Runs `program args` (in `netns` when given) with `stdin` fed to it, and `XTABLES_LOCKFILE`
/// set to `lock_file` when given.
pub(crate) fn run_tool(
    program: &str,
    args: &[&str],
    netns: Option<&str>,
    lock_file: Option<&Path>,
    stdin: Option<&str>,
) -> Result<String, IptablesError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    if let Some(lock) = lock_file {
        cmd.env("XTABLES_LOCKFILE", lock);
    }
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| IptablesError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(IptablesError::Tool {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
