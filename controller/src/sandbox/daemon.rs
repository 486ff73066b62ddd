//! One supervised child process: started in the foreground (never `--detach`, so the pid we hold
//! is the daemon's), logged to files in the sandbox, and always ended by that pid.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::SandboxError;

/// How long a daemon gets to exit after SIGTERM before it is sent SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// What to run: program, arguments, environment, optionally inside a network namespace.
#[derive(Debug, Clone)]
pub(crate) struct DaemonSpec {
    /// Short name, used for log file names and error messages (`nb`, `northd`, `ch0-vswitchd`).
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub netns: Option<String>,
    /// Directory that receives `<name>.stderr`.
    pub log_dir: PathBuf,
}

impl DaemonSpec {
    pub fn new(name: &str, program: &str, log_dir: &Path) -> Self {
        DaemonSpec {
            name: name.to_string(),
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            netns: None,
            log_dir: log_dir.to_path_buf(),
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }

    pub fn netns(mut self, ns: Option<&str>) -> Self {
        self.netns = ns.map(str::to_string);
        self
    }

    /// The file the daemon's stderr goes to (startup failures land here before `--log-file`
    /// takes over).
    pub fn stderr_path(&self) -> PathBuf {
        self.log_dir.join(format!("{}.stderr", self.name))
    }
}

/// A running daemon. Dropping it ends the process (SIGTERM, then SIGKILL) and reaps it.
#[derive(Debug)]
pub(crate) struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
}

impl Daemon {
    pub fn spawn(spec: DaemonSpec) -> Result<Daemon, SandboxError> {
        let stderr = File::create(spec.stderr_path()).map_err(|e| SandboxError::Io {
            what: format!("creating {}", spec.stderr_path().display()),
            source: e,
        })?;
        // `setpriv --pdeathsig KILL` is a safety net for the case Drop cannot cover (the test
        // process itself killed with SIGKILL): the kernel then kills the daemon too. Both
        // `setpriv` and `ip netns exec` exec() in place, so the pid stays the daemon's.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]);
        if let Some(ns) = &spec.netns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.arg(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().map_err(|e| SandboxError::Spawn {
            program: spec.program.clone(),
            source: e,
        })?;
        tracing::debug!(name = %spec.name, pid = child.id(), "started");
        Ok(Daemon {
            spec,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Ok(()) while the process runs; an error naming the daemon and quoting its stderr once it
    /// has exited (used by readiness waits to fail fast instead of timing out).
    pub fn check_running(&mut self) -> Result<(), SandboxError> {
        let Some(child) = self.child.as_mut() else {
            return Err(SandboxError::Exited {
                name: self.spec.name.clone(),
                status: "stopped by the sandbox".into(),
                stderr: String::new(),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(SandboxError::Exited {
                name: self.spec.name.clone(),
                status: status.to_string(),
                stderr: tail(&self.spec.stderr_path(), 2000),
            }),
            Err(e) => Err(SandboxError::Io {
                what: format!("waiting for {}", self.spec.name),
                source: e,
            }),
        }
    }

    /// SIGTERM, wait up to [`TERM_GRACE`], then SIGKILL; always reaps.
    pub fn terminate(&mut self) {
        self.end(Signal::SIGTERM, TERM_GRACE);
    }

    /// SIGKILL at once (a crash, as far as peers can tell); reaps.
    pub fn kill(&mut self) {
        self.end(Signal::SIGKILL, Duration::ZERO);
    }

    fn end(&mut self, signal: Signal, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        tracing::debug!(name = %self.spec.name, pid = pid.as_raw(), ?signal, "ended");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The last `max` bytes of a file, lossily decoded (for error messages).
pub(crate) fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(_) => String::new(),
    }
}
