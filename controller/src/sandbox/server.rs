//! ovsdb-server instances: standalone (NB, SB, a chassis' Open_vSwitch) and RAFT members.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::daemon::{tail, Daemon, DaemonSpec};
use super::util::{run_tool, wait_until};
use super::{probe, SandboxError};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a server keeps its files and how it listens.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    /// Short name, e.g. `nb`, `sb`, `nb-2`, `ch0-ovs`.
    pub name: String,
    /// The database it serves (`OVN_Northbound`, ...).
    pub db_name: String,
    pub db_file: PathBuf,
    pub dir: PathBuf,
    /// Whether to listen on TCP (127.0.0.1, port chosen by the server) besides the unix socket.
    pub tcp: bool,
    /// Also listen for TLS (`pssl:`, 127.0.0.1, port chosen by the server) with these files.
    pub ssl: Option<SslFiles>,
}

/// The PEM files an ovsdb-server's `pssl:` listener uses: `--private-key`, `--certificate` and
/// `--ca-cert` (which signs the certificates clients must present).
#[derive(Debug, Clone)]
pub struct SslFiles {
    /// The server's private key.
    pub key: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The CA certificate clients' certificates must chain to.
    pub ca: PathBuf,
}

impl ServerConfig {
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }
    pub fn ctl(&self) -> PathBuf {
        self.dir.join(format!("{}.ctl", self.name))
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }
}

/// RAFT-related state of a database as the server reports it in `_Server.Database`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStatus {
    /// The server is connected to the cluster (always true for a standalone database).
    pub connected: bool,
    /// The server is the cluster leader (always true for a standalone database).
    pub leader: bool,
    /// The last RAFT log index the server has seen (0 for a standalone database).
    pub index: u64,
}

/// One ovsdb-server process with its configuration; it can be stopped, killed and restarted on
/// the same files, socket and TCP port.
#[derive(Debug)]
pub struct OvsdbServer {
    cfg: ServerConfig,
    tcp_port: Option<u16>,
    ssl_port: Option<u16>,
    daemon: Option<Daemon>,
}

impl OvsdbServer {
    pub(crate) fn new(cfg: ServerConfig) -> Self {
        OvsdbServer {
            cfg,
            tcp_port: None,
            ssl_port: None,
            daemon: None,
        }
    }

    /// Creates a standalone database file from `schema`.
    pub(crate) fn create_standalone(
        cfg: ServerConfig,
        schema: &Path,
    ) -> Result<Self, SandboxError> {
        run_tool(
            "ovsdb-tool",
            &["create", path_str(&cfg.db_file)?, path_str(schema)?],
            &[],
        )?;
        Ok(Self::new(cfg))
    }

    /// The database file (every committed write transaction appends a record to it).
    pub fn db_file(&self) -> &Path {
        &self.cfg.db_file
    }

    /// Short name (`nb`, `nb-1`, ...).
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// `unix:<sandbox>/<name>.sock`.
    pub fn unix_remote(&self) -> String {
        format!("unix:{}", self.cfg.socket().display())
    }

    /// The unix socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.cfg.socket()
    }

    /// `tcp:127.0.0.1:PORT` once the server has listened on TCP (the port is kept across
    /// restarts).
    pub fn tcp_remote(&self) -> Option<String> {
        self.tcp_port.map(|p| format!("tcp:127.0.0.1:{p}"))
    }

    /// `ssl:127.0.0.1:PORT` when the server listens for TLS (the port is kept across restarts).
    pub fn ssl_remote(&self) -> Option<String> {
        self.ssl_port.map(|p| format!("ssl:127.0.0.1:{p}"))
    }

    /// The server's unixctl socket (for `ovs-appctl -t`).
    pub fn ctl_path(&self) -> PathBuf {
        self.cfg.ctl()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.cfg.log()
    }

    /// The pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Daemon::pid)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|d| d.check_running().is_ok())
    }

    /// Starts the process and waits until it serves its database (on TCP too, when asked).
    pub(crate) fn start(&mut self) -> Result<(), SandboxError> {
        if self.is_running() {
            return Ok(());
        }
        let cfg = self.cfg.clone();
        // Restarts reuse the port learned on the first start so remotes handed out stay valid.
        let tcp_listen = self.tcp_port.map_or("ptcp:0:127.0.0.1".to_string(), |p| {
            format!("ptcp:{p}:127.0.0.1")
        });
        let dir = cfg.dir.display().to_string();
        let mut spec = DaemonSpec::new(&cfg.name, "ovsdb-server", &cfg.dir)
            .arg(path_str(&cfg.db_file)?)
            .arg(format!("--remote=punix:{}", cfg.socket().display()))
            .arg(format!("--unixctl={}", cfg.ctl().display()))
            .arg(format!("--log-file={}", cfg.log().display()))
            .arg("-vconsole:off")
            .arg("-vfile:info")
            .arg("--no-chdir")
            .env("OVS_RUNDIR", &dir)
            .env("OVS_DBDIR", &dir)
            .env("OVS_LOGDIR", &dir);
        if cfg.tcp {
            spec = spec.arg(format!("--remote={tcp_listen}"));
        }
        if let Some(ssl) = &cfg.ssl {
            spec = spec
                .arg(format!("--private-key={}", ssl.key.display()))
                .arg(format!("--certificate={}", ssl.cert.display()))
                .arg(format!("--ca-cert={}", ssl.ca.display()));
            // The first start adds the listener only once the TCP port is known (below).
            if let Some(p) = self.ssl_port {
                spec = spec.arg(format!("--remote=pssl:{p}:127.0.0.1"));
            }
        }
        // Remember how far the log had got so the port line of *this* start is the one read.
        let log_offset = std::fs::metadata(cfg.log()).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(cfg.socket());
        self.daemon = Some(Daemon::spawn(spec)?);
        self.wait_serving()?;
        if cfg.tcp && self.tcp_port.is_none() {
            let log = cfg.log();
            let daemon = &mut self.daemon;
            let port = wait_until(
                &format!("{} to report its TCP port", cfg.name),
                READY_TIMEOUT,
                || {
                    if let Some(d) = daemon.as_mut() {
                        d.check_running()?;
                    }
                    Ok(listening_port(&log, log_offset))
                },
            )?;
            self.tcp_port = Some(port);
        }
        if cfg.ssl.is_some() && self.ssl_port.is_none() {
            self.ssl_port = Some(self.add_ssl_listener()?);
        }
        Ok(())
    }

    /// Adds a `pssl:0:127.0.0.1` listener to the running server and learns its port. The log
    /// says "listening on port N" for TCP and TLS listeners alike (same text, same address) and
    /// the server opens the listeners of its command line in no documented order (a hash
    /// table's), so the TLS port is only unambiguous when it is the one listener opened after
    /// the log offset taken here.
    fn add_ssl_listener(&mut self) -> Result<u16, SandboxError> {
        let log = self.cfg.log();
        let log_offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        run_tool(
            "ovs-appctl",
            &[
                "-t",
                path_str(&self.cfg.ctl())?,
                "ovsdb-server/add-remote",
                "pssl:0:127.0.0.1",
            ],
            &[],
        )?;
        let daemon = &mut self.daemon;
        wait_until(
            &format!("{} to report its TLS port", self.cfg.name),
            READY_TIMEOUT,
            || {
                if let Some(d) = daemon.as_mut() {
                    d.check_running()?;
                }
                Ok(listening_port(&log, log_offset))
            },
        )
    }

    /// Waits until `list_dbs` over the unix socket names our database.
    fn wait_serving(&mut self) -> Result<(), SandboxError> {
        let socket = self.cfg.socket();
        let db = self.cfg.db_name.clone();
        let daemon = &mut self.daemon;
        wait_until(
            &format!("{} to serve {db}", self.cfg.name),
            READY_TIMEOUT,
            || {
                if let Some(d) = daemon.as_mut() {
                    d.check_running()?;
                }
                if !socket.exists() {
                    return Ok(None);
                }
                match probe::call(&socket, "list_dbs", json!([]), PROBE_TIMEOUT) {
                    Ok(v) if v.as_array().is_some_and(|a| a.contains(&json!(db))) => Ok(Some(())),
                    _ => Ok(None),
                }
            },
        )
    }

    /// Graceful stop (SIGTERM).
    pub(crate) fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.terminate();
        }
    }

    /// Crash (SIGKILL).
    pub(crate) fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    /// The server's own view of its database, from `_Server.Database`.
    pub fn status(&self) -> Result<DbStatus, SandboxError> {
        let rows = probe::select_where(
            &self.cfg.socket(),
            "_Server",
            "Database",
            "name",
            &self.cfg.db_name,
            &["connected", "leader", "index"],
            PROBE_TIMEOUT,
        )?;
        let row = rows.first().ok_or_else(|| SandboxError::Rpc {
            socket: self.cfg.socket().display().to_string(),
            message: format!("_Server has no row for {}", self.cfg.db_name),
        })?;
        Ok(DbStatus {
            connected: row.get("connected") == Some(&Value::Bool(true)),
            leader: row.get("leader") == Some(&Value::Bool(true)),
            // `index` is an optional integer: a bare integer, or ["set", []] when absent.
            index: row.get("index").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    pub(crate) fn log_tail(&self) -> String {
        tail(&self.cfg.log(), 4000)
    }
}

/// Parses ovsdb-server's "…: listening on port N" line written after `offset`.
fn listening_port(log: &Path, offset: u64) -> Option<u16> {
    let bytes = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(bytes.get(offset as usize..)?);
    text.lines()
        .filter_map(|l| l.split_once("listening on port ").map(|(_, p)| p))
        .filter_map(|p| p.trim().parse().ok())
        .next_back()
}

pub(crate) fn path_str(p: &Path) -> Result<&str, SandboxError> {
    p.to_str().ok_or_else(|| SandboxError::Io {
        what: format!("path {} is not UTF-8", p.display()),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_port_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let first = "2026|00003|socket_util|INFO|0:127.0.0.1: listening on port 33075\n";
        std::fs::write(
            &log,
            format!("{first}2026|00009|socket_util|INFO|0:127.0.0.1: listening on port 41000\n"),
        )
        .unwrap();
        assert_eq!(listening_port(&log, 0), Some(41000));
        assert_eq!(listening_port(&log, 10_000), None);
        std::fs::write(&log, "nothing here\n").unwrap();
        assert_eq!(listening_port(&log, 0), None);
    }
}
