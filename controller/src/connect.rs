//! How the one-shot commands (`apply`, `plan`, `uninstall`, `dump`, `show`, `doctor`, `demo`)
//! reach OVSDB: the deadline of each request and how long to wait for a usable server, set
//! once from the CLI's global `--timeout SECONDS` (env `OVN_VPC_TIMEOUT`) and `--wait SECONDS`.
//!
//! A process-wide setting rather than a parameter of every command function: `main` sets it
//! once before any command runs, and the commands' signatures stay what their callers (tests,
//! benches) already use. Library users and tests that never set it get the defaults: a 30 s
//! deadline per request, and no waiting for a server that is missing, refuses connections or
//! is not the leader (the error then comes at once and names each remote and why).

use std::sync::RwLock;
use std::time::Duration;

use ovsdb::{Client, ConnectOptions, Connection, SessionOptions};

/// The limits of one run of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deadline of each request (`None`: none), from `--timeout`.
    pub timeout: Option<Duration>,
    /// How long to keep trying while no server is usable, from `--wait`.
    pub wait: Duration,
}

impl Limits {
    /// 30 s per request, no wait.
    pub const DEFAULT: Limits = Limits {
        timeout: Some(ovsdb::DEFAULT_REQUEST_TIMEOUT),
        wait: Duration::ZERO,
    };

    /// From the CLI's seconds: a `timeout` of 0 means no deadline.
    pub fn from_secs(timeout: f64, wait: f64) -> Result<Limits, String> {
        let secs = |what: &str, v: f64| {
            Duration::try_from_secs_f64(v)
                .map_err(|_| format!("--{what} takes a number of seconds ≥ 0, not {v}"))
        };
        let timeout = secs("timeout", timeout)?;
        Ok(Limits {
            timeout: (!timeout.is_zero()).then_some(timeout),
            wait: secs("wait", wait)?,
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

static LIMITS: RwLock<Limits> = RwLock::new(Limits::DEFAULT);

/// Sets the limits for the rest of the process (the CLI does, once, from its flags).
pub fn set_limits(limits: Limits) {
    *LIMITS.write().unwrap_or_else(|p| p.into_inner()) = limits;
}

/// The limits in force.
pub fn limits() -> Limits {
    *LIMITS.read().unwrap_or_else(|p| p.into_inner())
}

/// Connection options with the request deadline in force.
pub fn connect_options() -> ConnectOptions {
    ConnectOptions {
        request_timeout: limits().timeout,
        ..ConnectOptions::default()
    }
}

/// Session options for `db` with the limits in force (add the monitor).
pub fn session_options(db: &str) -> SessionOptions {
    let mut opts = SessionOptions::new(db);
    opts.connect = connect_options();
    opts.wait = limits().wait;
    opts
}

/// How long a command lets [`ovsdb::Session::client`] wait for a connected, synced session:
/// the `--wait` for a server to become usable plus one deadline for the sync itself. (A
/// missing or refusing server fails sooner: see [`ovsdb::SessionOptions::wait`].)
pub fn session_timeout() -> Duration {
    let l = limits();
    l.wait
        .saturating_add(l.timeout.unwrap_or(Duration::from_secs(3600)))
}

/// [`ovsdb::connect_with`] with the limits in force: tries every remote, again and again with
/// a short backoff until `--wait` has passed; the error names each remote and why.
pub async fn connect(remotes: &str) -> Result<(Client, Connection), ovsdb::Error> {
    let opts = connect_options();
    let wait = limits().wait;
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match ovsdb::connect_with(remotes, &opts).await {
            Ok(c) => return Ok(c),
            // Only connecting happens here: whatever failed may work a moment later.
            Err(_) if started.elapsed() < wait => {
                let left = wait.saturating_sub(started.elapsed());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(ovsdb::Error::Unavailable { db, tried, .. }) if !wait.is_zero() => {
                return Err(ovsdb::Error::Unavailable {
                    db,
                    waited: wait,
                    tried,
                })
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_from_the_command_line() {
        assert_eq!(
            Limits::from_secs(30.0, 0.0).unwrap(),
            Limits {
                timeout: Some(Duration::from_secs(30)),
                wait: Duration::ZERO
            }
        );
        assert_eq!(
            Limits::from_secs(0.0, 2.5).unwrap(),
            Limits {
                timeout: None,
                wait: Duration::from_millis(2500)
            }
        );
        assert!(Limits::from_secs(-1.0, 0.0)
            .unwrap_err()
            .contains("--timeout"));
        assert!(Limits::from_secs(1.0, f64::NAN)
            .unwrap_err()
            .contains("--wait"));
    }
}
