//! Small helpers of the launcher: readiness polling, free ports, network namespaces, tools.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::SandboxError;

/// Polls `check` every `interval` until it returns `Ok(Some(v))`, a hard error, or `timeout`.
/// `Ok(None)` means "not yet"; the last "not yet" reason is kept for the timeout message.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, SandboxError>,
) -> Result<T, SandboxError> {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(5);
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

/// A TCP port on 127.0.0.1 that is free now, for listeners whose port must be known before the
/// daemon starts (RAFT addresses are written into the database file). Picked below Linux's
/// ephemeral range (32768+) so outgoing connections of parallel tests cannot take it meanwhile.
/// Listeners that can learn their port afterwards use `ptcp:0` instead (see `server.rs`).
pub(crate) fn free_port() -> Result<u16, SandboxError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(SEQ.fetch_add(7919, Ordering::Relaxed))
        .wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
    for i in 0..2000u32 {
        let port = 20000 + ((seed.wrapping_add(i.wrapping_mul(104_729))) % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(SandboxError::Io {
        what: "finding a free TCP port in 20000-31999".into(),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

/// Runs a short-lived tool to completion; a non-zero exit is an error quoting its stderr.
pub(crate) fn run_tool(
    program: &str,
    args: &[&str],
    env: &[(&str, &Path)],
) -> Result<String, SandboxError> {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .map_err(|e| SandboxError::Spawn {
            program: program.to_string(),
            source: e,
        })?;
    if !out.status.success() {
        return Err(SandboxError::Tool {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

/// Prefix of every network namespace the sandbox creates; `.ci/run` checks none is left.
pub const NETNS_PREFIX: &str = "ovnvpc-";

/// A network namespace name unique on this machine: prefix, our pid, a per-process counter and
/// a caller-supplied role (kept short: names appear in `ip netns list`).
pub(crate) fn unique_netns_name(role: &str) -> String {
    let n = NETNS_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{NETNS_PREFIX}{}-{n}-{role}", std::process::id())
}

/// A network namespace we created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME` and bring its loopback up.
    pub fn create(name: &str) -> Result<Netns, SandboxError> {
        run_tool("ip", &["netns", "add", name], &[])?;
        let ns = Netns {
            name: name.to_string(),
        };
        run_tool("ip", &["-n", name, "link", "set", "lo", "up"], &[])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_tool("ip", &["netns", "del", &self.name], &[]) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete network namespace");
        }
    }
}

/// The installed schema of a database if the distribution ships one (it must match the daemons
/// that will use it), else the copy committed under `schemas/` written into `dir`.
pub(crate) fn schema_file(
    dir: &Path,
    installed: &[&str],
    file_name: &str,
    embedded: &str,
) -> Result<PathBuf, SandboxError> {
    if let Some(p) = installed.iter().map(Path::new).find(|p| p.exists()) {
        return Ok(p.to_path_buf());
    }
    let path = dir.join(file_name);
    std::fs::write(&path, embedded).map_err(|e| SandboxError::Io {
        what: format!("writing {}", path.display()),
        source: e,
    })?;
    Ok(path)
}
