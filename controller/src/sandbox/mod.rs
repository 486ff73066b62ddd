//! The OVN sandbox launcher: real `ovsdb-server`, `ovn-northd`, `ovs-vswitchd` (userspace
//! `netdev` datapath) and `ovn-controller` from the distribution's packages, started in a fresh
//! temporary directory for `ovn-vpc demo` and for every test.
//!
//! - Databases listen on unix sockets in the sandbox directory and on TCP ports of 127.0.0.1
//!   (chosen by the server, so parallel sandboxes never collide).
//! - A chassis runs `ovs-vswitchd` inside a network namespace of its own (its `br-int` and every
//!   port plugged into it live there, never in the root namespace) and `ovn-controller` beside it.
//! - Readiness is polled (a database answers `list_dbs`, a cluster has a leader, northd reports
//!   `active`, a chassis is registered in the Southbound database); there are no fixed sleeps.
//! - Teardown ends exactly the processes this sandbox started, by pid, and deletes the
//!   namespaces it created — also when a test panics (the directory, with every log, is then kept
//!   and its path printed). Each daemon also gets `PR_SET_PDEATHSIG` so even a SIGKILLed test
//!   process leaves nothing running.
//! - With `OVN_NB_DB` / `OVN_SB_DB` set, [`SandboxBuilder::from_env`] uses that OVN (e.g. the
//!   `docker compose` one) instead of starting databases and northd.
//!
//! ```no_run
//! use ovn_vpc::sandbox::Sandbox;
//! let sandbox = Sandbox::builder().northd().chassis(1).start()?;
//! println!("NB at {}", sandbox.nb_remote());
//! # Ok::<(), ovn_vpc::sandbox::SandboxError>(())
//! ```

mod daemon;
mod probe;
mod server;
mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use daemon::{tail, Daemon, DaemonSpec};
use server::{path_str, ServerConfig};
pub use server::{DbStatus, OvsdbServer, SslFiles};
use util::{free_port, run_tool, schema_file, unique_netns_name, wait_until};
pub use util::{Netns, NETNS_PREFIX};

/// Prefix of every sandbox directory (under `$TMPDIR`); `.ci/run` checks that no process whose
/// command line names such a directory outlives the tests.
pub const DIR_PREFIX: &str = "ovn-vpc-sandbox-";

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

const NB_SCHEMA: &str = include_str!("../../../schemas/ovn-nb.ovsschema");
const SB_SCHEMA: &str = include_str!("../../../schemas/ovn-sb.ovsschema");
const VSWITCH_SCHEMA: &str = include_str!("../../../schemas/vswitch.ovsschema");

/// Why the sandbox could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started (usually: not installed; run `scripts/setup`).
    #[error("cannot run {program} (is it installed? see scripts/setup): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A daemon exited while it should have been running.
    #[error("{name} exited ({status}); its stderr ends with:\n{stderr}")]
    Exited {
        /// The daemon's sandbox name.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A readiness condition was not met in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A helper tool (`ovsdb-tool`, `ip`, `ovs-appctl`) failed.
    #[error("`{command}` failed: {stderr}")]
    Tool {
        /// The command line.
        command: String,
        /// Its stderr.
        stderr: String,
    },
    /// An ovsdb-server answered a probe with an error or garbage.
    #[error("ovsdb-server at {socket}: {message}")]
    Rpc {
        /// The server's socket.
        socket: String,
        /// What went wrong.
        message: String,
    },
    /// The request does not apply to this sandbox (e.g. killing a member of an external OVN).
    #[error("{0}")]
    Unsupported(String),
    /// Starting failed; the directory with every log was kept for inspection.
    #[error("starting the OVN sandbox failed (logs kept in {dir}): {source}")]
    Start {
        /// The kept sandbox directory.
        dir: PathBuf,
        /// The first error.
        #[source]
        source: Box<SandboxError>,
    },
}

/// What to start. Obtain with [`Sandbox::builder`] or [`SandboxBuilder::from_env`].
#[derive(Debug, Clone, Default)]
pub struct SandboxBuilder {
    nb_cluster: Option<usize>,
    northd: bool,
    chassis: usize,
    external_nb: Option<String>,
    external_sb: Option<String>,
    nb_ssl: Option<SslFiles>,
}

impl SandboxBuilder {
    /// Like [`Sandbox::builder`], but when the environment has `OVN_NB_DB` (and `OVN_SB_DB`)
    /// that OVN is used instead of starting databases and ovn-northd.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        SandboxBuilder::default().external(get("OVN_NB_DB"), get("OVN_SB_DB"))
    }

    /// Use an existing OVN: the NB (and SB) remotes, e.g. `tcp:127.0.0.1:6641`. `None` keeps
    /// starting our own.
    pub fn external(mut self, nb: Option<String>, sb: Option<String>) -> Self {
        self.external_nb = nb;
        self.external_sb = sb;
        self
    }

    /// Serve the Northbound database from a RAFT cluster of `members` ovsdb-servers instead of
    /// one standalone server. Always started locally (tests kill and restart its members), even
    /// when an external OVN is configured.
    pub fn nb_cluster(mut self, members: usize) -> Self {
        self.nb_cluster = Some(members.max(1));
        self
    }

    /// Let the Northbound ovsdb-server(s) also listen for TLS on 127.0.0.1 (`pssl:`, port chosen
    /// by the server, see [`Sandbox::nb_ssl_remote`]) with this key, certificate and CA
    /// certificate. ovsdb-server then requires clients to present a certificate signed by that
    /// CA. Not possible with an external NB.
    pub fn nb_ssl(mut self, files: SslFiles) -> Self {
        self.nb_ssl = Some(files);
        self
    }

    /// Also start ovn-northd (skipped when both databases are external: that OVN runs its own).
    pub fn northd(mut self) -> Self {
        self.northd = true;
        self
    }

    /// Also start `n` chassis (each: a network namespace, ovs-vswitchd with
    /// `datapath_type=netdev`, ovn-controller, br-int). Implies northd.
    pub fn chassis(mut self, n: usize) -> Self {
        self.chassis = n;
        if n > 0 {
            self.northd = true;
        }
        self
    }

    /// Starts everything and waits until it is ready.
    pub fn start(self) -> Result<Sandbox, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|e| SandboxError::Io {
                what: "creating the sandbox directory".into(),
                source: e,
            })?;
        let mut sandbox = Sandbox {
            chassis: Vec::new(),
            northd: None,
            sb: Db::None,
            nb: Db::None,
            keep_dir: std::env::var_os("OVN_VPC_KEEP_SANDBOX").is_some(),
            dir: Some(dir),
        };
        match self.start_into(&mut sandbox) {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.keep_dir = true;
                Err(SandboxError::Start {
                    dir: sandbox.dir().to_path_buf(),
                    source: Box::new(e),
                })
            }
        }
    }

    fn start_into(&self, sandbox: &mut Sandbox) -> Result<(), SandboxError> {
        let dir = sandbox.dir().to_path_buf();
        let nb_schema = schema_file(
            &dir,
            &["/usr/share/ovn/ovn-nb.ovsschema"],
            "ovn-nb.ovsschema",
            NB_SCHEMA,
        )?;
        let ssl = self.nb_ssl.clone();
        if ssl.is_some() && self.nb_cluster.is_none() && self.external_nb.is_some() {
            return Err(SandboxError::Unsupported(
                "nb_ssl needs a Northbound database the sandbox runs, not an external one".into(),
            ));
        }
        sandbox.nb = match (&self.nb_cluster, &self.external_nb) {
            (Some(n), _) => Db::Cluster(start_cluster(
                &dir,
                "nb",
                "OVN_Northbound",
                &nb_schema,
                *n,
                ssl,
            )?),
            (None, Some(remote)) => Db::External(remote.clone()),
            (None, None) => Db::Standalone(Box::new(start_standalone(
                &dir,
                "nb",
                "OVN_Northbound",
                &nb_schema,
                ssl,
            )?)),
        };
        let need_sb = self.northd || self.chassis > 0;
        sandbox.sb = match &self.external_sb {
            Some(remote) => Db::External(remote.clone()),
            None if need_sb => {
                let sb_schema = schema_file(
                    &dir,
                    &["/usr/share/ovn/ovn-sb.ovsschema"],
                    "ovn-sb.ovsschema",
                    SB_SCHEMA,
                )?;
                Db::Standalone(Box::new(start_standalone(
                    &dir,
                    "sb",
                    "OVN_Southbound",
                    &sb_schema,
                    None,
                )?))
            }
            None => Db::None,
        };
        let external_pair =
            matches!(sandbox.nb, Db::External(_)) && matches!(sandbox.sb, Db::External(_));
        if self.northd && !external_pair {
            sandbox.northd = Some(start_northd(
                &dir,
                &sandbox.nb.unix_remote(),
                &sandbox.sb.unix_remote(),
            )?);
        }
        for i in 0..self.chassis {
            let chassis = Chassis::start(&dir, i, &sandbox.sb)?;
            sandbox.chassis.push(chassis);
        }
        Ok(())
    }
}

/// How a database is served.
#[derive(Debug)]
enum Db {
    None,
    Standalone(Box<OvsdbServer>),
    Cluster(Vec<OvsdbServer>),
    External(String),
}

impl Db {
    fn servers(&self) -> &[OvsdbServer] {
        match self {
            Db::Standalone(s) => std::slice::from_ref(s),
            Db::Cluster(v) => v,
            Db::None | Db::External(_) => &[],
        }
    }

    fn servers_mut(&mut self) -> &mut [OvsdbServer] {
        match self {
            Db::Standalone(s) => std::slice::from_mut(s),
            Db::Cluster(v) => v,
            Db::None | Db::External(_) => &mut [],
        }
    }

    /// Unix remotes of every member, comma-separated as OVN writes remote lists; the external
    /// remote as given.
    fn unix_remote(&self) -> String {
        match self {
            Db::External(r) => r.clone(),
            _ => join(self.servers().iter().map(OvsdbServer::unix_remote)),
        }
    }

    fn tcp_remote(&self) -> Option<String> {
        match self {
            Db::External(r) => Some(r.clone()),
            Db::None => None,
            _ => self
                .servers()
                .iter()
                .map(OvsdbServer::tcp_remote)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
        }
    }

    fn ssl_remote(&self) -> Option<String> {
        self.servers()
            .iter()
            .map(OvsdbServer::ssl_remote)
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .map(|v| v.join(","))
    }
}

fn join(it: impl Iterator<Item = String>) -> String {
    it.collect::<Vec<_>>().join(",")
}

fn start_standalone(
    dir: &Path,
    name: &str,
    db_name: &str,
    schema: &Path,
    ssl: Option<SslFiles>,
) -> Result<OvsdbServer, SandboxError> {
    let cfg = ServerConfig {
        name: name.to_string(),
        db_name: db_name.to_string(),
        db_file: dir.join(format!("{name}.db")),
        dir: dir.to_path_buf(),
        tcp: true,
        ssl,
    };
    let mut server = OvsdbServer::create_standalone(cfg, schema)?;
    server.start()?;
    Ok(server)
}

fn start_cluster(
    dir: &Path,
    name: &str,
    db_name: &str,
    schema: &Path,
    members: usize,
    ssl: Option<SslFiles>,
) -> Result<Vec<OvsdbServer>, SandboxError> {
    let mut servers: Vec<OvsdbServer> = Vec::with_capacity(members);
    let mut first_addr = String::new();
    for i in 0..members {
        let raft_addr = format!("tcp:127.0.0.1:{}", free_port()?);
        let cfg = ServerConfig {
            name: format!("{name}-{i}"),
            db_name: db_name.to_string(),
            db_file: dir.join(format!("{name}-{i}.db")),
            dir: dir.to_path_buf(),
            tcp: true,
            ssl: ssl.clone(),
        };
        let db_file = path_str(&cfg.db_file)?.to_string();
        if i == 0 {
            run_tool(
                "ovsdb-tool",
                &["create-cluster", &db_file, path_str(schema)?, &raft_addr],
                &[],
            )?;
            first_addr = raft_addr;
        } else {
            run_tool(
                "ovsdb-tool",
                &["join-cluster", &db_file, db_name, &raft_addr, &first_addr],
                &[],
            )?;
        }
        let mut server = OvsdbServer::new(cfg);
        server.start()?;
        servers.push(server);
    }
    wait_cluster_formed(&servers, None)?;
    Ok(servers)
}

/// Waits until every running member is connected and one of them leads; returns the leader.
fn wait_cluster_formed(
    servers: &[OvsdbServer],
    skip: Option<usize>,
) -> Result<usize, SandboxError> {
    wait_until("the RAFT cluster to elect a leader", READY_TIMEOUT, || {
        let mut leader = None;
        for (i, s) in servers.iter().enumerate() {
            if Some(i) == skip || s.pid().is_none() {
                continue;
            }
            match s.status() {
                Ok(st) if st.connected => {
                    if st.leader {
                        leader = Some(i);
                    }
                }
                _ => return Ok(None),
            }
        }
        Ok(leader)
    })
}

fn start_northd(dir: &Path, nb: &str, sb: &str) -> Result<Daemon, SandboxError> {
    let ctl = dir.join("northd.ctl");
    let rundir = dir.display().to_string();
    let spec = DaemonSpec::new("northd", "ovn-northd", dir)
        .arg(format!("--ovnnb-db={nb}"))
        .arg(format!("--ovnsb-db={sb}"))
        .arg(format!("--unixctl={}", ctl.display()))
        .arg(format!("--log-file={}", dir.join("northd.log").display()))
        .arg("-vconsole:off")
        .arg("--no-chdir")
        .env("OVN_RUNDIR", &rundir)
        .env("OVS_RUNDIR", &rundir)
        .env("OVN_LOGDIR", &rundir);
    let mut northd = Daemon::spawn(spec)?;
    let ctl_s = path_str(&ctl)?.to_string();
    wait_until("ovn-northd to become active", READY_TIMEOUT, || {
        northd.check_running()?;
        if !ctl.exists() {
            return Ok(None);
        }
        Ok(run_tool("ovs-appctl", &["-t", &ctl_s, "status"], &[])
            .ok()
            .filter(|out| out.contains("Status: active"))
            .map(|_| ()))
    })?;
    Ok(northd)
}

/// One hypervisor: a network namespace holding ovs-vswitchd's userspace datapath and br-int, its
/// Open_vSwitch database, and ovn-controller. Fields drop in this order: ovn-controller, then
/// ovs-vswitchd, then the database, then the namespace.
#[derive(Debug)]
pub struct Chassis {
    controller: Daemon,
    vswitchd: Daemon,
    ovs: OvsdbServer,
    netns: Netns,
    name: String,
    system_id: String,
    encap_ip: String,
    dir: PathBuf,
}

impl Chassis {
    fn start(sandbox_dir: &Path, index: usize, sb: &Db) -> Result<Chassis, SandboxError> {
        let name = format!("ch{index}");
        let dir = sandbox_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| SandboxError::Io {
            what: format!("creating {}", dir.display()),
            source: e,
        })?;
        // Chassis names and encapsulation addresses must be unique in the Southbound database;
        // an external one may be shared with other sandboxes, so qualify them there.
        let (system_id, encap_ip) = match sb {
            Db::External(_) => {
                let tag = sandbox_dir
                    .file_name()
                    .map(|n| {
                        n.to_string_lossy()
                            .trim_start_matches(DIR_PREFIX)
                            .to_string()
                    })
                    .unwrap_or_default();
                let h = tag.bytes().fold(index as u32, |h, b| {
                    h.wrapping_mul(31).wrapping_add(b as u32)
                });
                (
                    format!("{name}-{tag}"),
                    format!(
                        "127.{}.{}.{}",
                        1 + (h >> 16) % 254,
                        (h >> 8) & 0xff,
                        1 + (h & 0xff) % 254
                    ),
                )
            }
            _ => (name.clone(), format!("127.0.0.{}", index + 2)),
        };
        let vswitch_schema = schema_file(
            sandbox_dir,
            &["/usr/share/openvswitch/vswitch.ovsschema"],
            "vswitch.ovsschema",
            VSWITCH_SCHEMA,
        )?;
        let netns = Netns::create(&unique_netns_name(&name))?;
        let mut ovs = OvsdbServer::create_standalone(
            ServerConfig {
                name: "ovs".into(),
                db_name: "Open_vSwitch".into(),
                db_file: dir.join("conf.db"),
                dir: dir.clone(),
                tcp: false,
                ssl: None,
            },
            &vswitch_schema,
        )?;
        ovs.start()?;
        // What `ovs-vsctl init` + `set open . external_ids:...` would do. ovn-controller creates
        // br-int itself, with the datapath type named here.
        let external_ids = json!([
            "map",
            [
                ["system-id", system_id],
                ["hostname", system_id],
                ["ovn-remote", sb.unix_remote()],
                ["ovn-encap-type", "geneve"],
                ["ovn-encap-ip", &encap_ip],
                ["ovn-bridge-datapath-type", "netdev"],
            ]
        ]);
        probe::transact(
            &ovs.socket_path(),
            "Open_vSwitch",
            vec![
                json!({"op": "insert", "table": "Open_vSwitch", "row": {"external_ids": external_ids}}),
            ],
            PROBE_TIMEOUT,
        )?;
        let rundir = dir.display().to_string();
        let ovs_remote = ovs.unix_remote();
        // ovs-vswitchd runs inside the namespace: the taps of br-int and every port plugged in
        // later live there. `--disable-system`: there is no kernel datapath here.
        let vswitchd = Daemon::spawn(
            DaemonSpec::new(&format!("{name}-vswitchd"), "ovs-vswitchd", &dir)
                .arg(&ovs_remote)
                .arg("--disable-system")
                .arg(format!(
                    "--unixctl={}",
                    dir.join("ovs-vswitchd.ctl").display()
                ))
                .arg(format!(
                    "--log-file={}",
                    dir.join("ovs-vswitchd.log").display()
                ))
                .arg("-vconsole:off")
                .arg("--no-chdir")
                .env("OVS_RUNDIR", &rundir)
                .netns(Some(netns.name())),
        )?;
        // ovn-controller only talks to unix sockets (databases, br-int.mgmt in OVS_RUNDIR), so it
        // stays in the root namespace where an external SB on 127.0.0.1 is reachable too.
        // OVN 23.03's ovn-controller has no --unixctl: OVN_RUNDIR places its control socket.
        let controller = Daemon::spawn(
            DaemonSpec::new(&format!("{name}-controller"), "ovn-controller", &dir)
                .arg(&ovs_remote)
                .arg(format!(
                    "--log-file={}",
                    dir.join("ovn-controller.log").display()
                ))
                .arg("-vconsole:off")
                .arg("--no-chdir")
                .env("OVS_RUNDIR", &rundir)
                .env("OVN_RUNDIR", &rundir),
        )?;
        let mut chassis = Chassis {
            controller,
            vswitchd,
            ovs,
            netns,
            name,
            system_id: system_id.clone(),
            encap_ip,
            dir,
        };
        chassis.wait_ready(sb, &system_id)?;
        Ok(chassis)
    }

    /// Ready: br-int exists with the netdev datapath and the chassis is registered in the SB.
    fn wait_ready(&mut self, sb: &Db, system_id: &str) -> Result<(), SandboxError> {
        let ovs_socket = self.ovs.socket_path();
        let mgmt = self.dir.join("br-int.mgmt");
        let sb_socket = sb.servers().first().map(OvsdbServer::socket_path);
        let (controller, vswitchd) = (&mut self.controller, &mut self.vswitchd);
        wait_until(
            &format!("chassis {system_id} to come up"),
            READY_TIMEOUT,
            || {
                controller.check_running()?;
                vswitchd.check_running()?;
                let bridges = probe::select_where(
                    &ovs_socket,
                    "Open_vSwitch",
                    "Bridge",
                    "name",
                    "br-int",
                    &["datapath_type"],
                    PROBE_TIMEOUT,
                )?;
                if bridges.first().and_then(|b| b.get("datapath_type")) != Some(&json!("netdev")) {
                    return Ok(None);
                }
                // The row exists before ovs-vswitchd acts on it: wait until it has created the
                // bridge's internal port (an OpenFlow port number is assigned) and its management
                // socket, through which ovn-controller programs the flows.
                let ifaces = probe::select_where(
                    &ovs_socket,
                    "Open_vSwitch",
                    "Interface",
                    "name",
                    "br-int",
                    &["ofport"],
                    PROBE_TIMEOUT,
                )?;
                let ofport = ifaces
                    .first()
                    .and_then(|i| i.get("ofport"))
                    .and_then(|p| p.as_i64());
                if ofport.is_none_or(|p| p <= 0) || !mgmt.exists() {
                    return Ok(None);
                }
                // With an external SB we cannot probe it without a client; br-int being created
                // means ovn-controller has connected and read its configuration.
                let Some(sb_socket) = &sb_socket else {
                    return Ok(Some(()));
                };
                let rows = probe::select_where(
                    sb_socket,
                    "OVN_Southbound",
                    "Chassis",
                    "name",
                    system_id,
                    &["name"],
                    PROBE_TIMEOUT,
                )?;
                Ok((!rows.is_empty()).then_some(()))
            },
        )
    }

    /// The chassis name in the sandbox (`ch0`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The chassis' `system-id`: its name in the Southbound database (`ch0`, or qualified
    /// with the sandbox when the Southbound database is external).
    pub fn system_id(&self) -> &str {
        &self.system_id
    }

    /// The chassis' tunnel endpoint (`ovn-encap-ip`).
    pub fn encap_ip(&self) -> &str {
        &self.encap_ip
    }

    /// The network namespace holding br-int and ovs-vswitchd's datapath.
    pub fn netns(&self) -> &str {
        self.netns.name()
    }

    /// `unix:` remote of this chassis' Open_vSwitch database.
    pub fn ovs_remote(&self) -> String {
        self.ovs.unix_remote()
    }

    /// The directory holding this chassis' sockets and logs (its OVS_RUNDIR).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pids(&self) -> Vec<u32> {
        [self.controller.pid(), self.vswitchd.pid(), self.ovs.pid()]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// A running OVN sandbox. Dropping it stops everything it started.
#[derive(Debug)]
pub struct Sandbox {
    // Teardown order is explicit in Drop; the directory goes last.
    chassis: Vec<Chassis>,
    northd: Option<Daemon>,
    sb: Db,
    nb: Db,
    keep_dir: bool,
    dir: Option<tempfile::TempDir>,
}

impl Sandbox {
    /// A builder that starts a standalone Northbound ovsdb-server, plus what is asked for.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The sandbox directory (sockets, databases, logs).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The Northbound remote: `unix:` socket(s) (comma-separated for a cluster), or the external
    /// remote.
    pub fn nb_remote(&self) -> String {
        self.nb.unix_remote()
    }

    /// The Northbound remote over TCP (comma-separated for a cluster).
    pub fn nb_tcp_remote(&self) -> Option<String> {
        self.nb.tcp_remote()
    }

    /// The Northbound remote over TLS (`ssl:127.0.0.1:PORT`, comma-separated for a cluster) when
    /// the sandbox was built with [`SandboxBuilder::nb_ssl`].
    pub fn nb_ssl_remote(&self) -> Option<String> {
        self.nb.ssl_remote()
    }

    /// The Southbound remote (`unix:`, or external), if there is a Southbound database.
    pub fn sb_remote(&self) -> Option<String> {
        match self.sb {
            Db::None => None,
            _ => Some(self.sb.unix_remote()),
        }
    }

    /// The Southbound remote over TCP.
    pub fn sb_tcp_remote(&self) -> Option<String> {
        self.sb.tcp_remote()
    }

    /// Whether the Northbound database is an external one (from `OVN_NB_DB`).
    pub fn nb_is_external(&self) -> bool {
        matches!(self.nb, Db::External(_))
    }

    /// The Northbound ovsdb-server(s) we run: one standalone server or the cluster members.
    pub fn nb_servers(&self) -> &[OvsdbServer] {
        self.nb.servers()
    }

    /// The Southbound ovsdb-server we run, if any.
    pub fn sb_server(&self) -> Option<&OvsdbServer> {
        self.sb.servers().first()
    }

    /// The chassis, in start order.
    pub fn chassis(&self) -> &[Chassis] {
        &self.chassis
    }

    /// The index of the NB member that currently leads (standalone: 0), if any.
    pub fn nb_leader(&self) -> Option<usize> {
        self.nb
            .servers()
            .iter()
            .position(|s| s.pid().is_some() && s.status().is_ok_and(|st| st.connected && st.leader))
    }

    /// Waits until a running NB member leads, ignoring member `not` (e.g. a leader just killed,
    /// whose stale view must not count), and returns its index.
    pub fn wait_nb_leader(&self, not: Option<usize>) -> Result<usize, SandboxError> {
        if self.nb.servers().is_empty() {
            return Err(SandboxError::Unsupported(
                "the NB database is not run by this sandbox".into(),
            ));
        }
        wait_cluster_formed(self.nb.servers(), not)
    }

    fn nb_member(&mut self, i: usize) -> Result<&mut OvsdbServer, SandboxError> {
        let n = self.nb.servers().len();
        self.nb.servers_mut().get_mut(i).ok_or_else(|| {
            SandboxError::Unsupported(format!("no NB server {i} (this sandbox runs {n})"))
        })
    }

    /// SIGKILLs NB member `i` (standalone: 0), as a crash would.
    pub fn kill_nb(&mut self, i: usize) -> Result<(), SandboxError> {
        self.nb_member(i)?.kill();
        Ok(())
    }

    /// Stops NB member `i` gracefully (SIGTERM).
    pub fn stop_nb(&mut self, i: usize) -> Result<(), SandboxError> {
        self.nb_member(i)?.stop();
        Ok(())
    }

    /// (Re)starts NB member `i` on its files, socket and TCP port, and waits until it serves.
    pub fn start_nb(&mut self, i: usize) -> Result<(), SandboxError> {
        self.nb_member(i)?.start()
    }

    /// Every pid this sandbox has running (databases, northd, chassis daemons).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .nb
            .servers()
            .iter()
            .chain(self.sb.servers())
            .filter_map(OvsdbServer::pid)
            .collect();
        pids.extend(self.northd.as_ref().and_then(Daemon::pid));
        for c in &self.chassis {
            pids.extend(c.pids());
        }
        pids
    }

    /// The network namespaces this sandbox created.
    pub fn netns_names(&self) -> Vec<String> {
        self.chassis.iter().map(|c| c.netns().to_string()).collect()
    }

    /// Keep the directory (and its logs) after drop; its path is printed then.
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }

    fn log_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack = vec![self.dir().to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "log" || x == "stderr") {
                    files.push(p);
                }
            }
        }
        files.sort();
        files
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            // A failing test: show where its logs are and the end of each (briefly).
            eprintln!(
                "ovn-vpc sandbox: test failed; logs kept in {}",
                self.dir().display()
            );
            for f in self.log_files() {
                let t = tail(&f, 600);
                if !t.trim().is_empty() {
                    eprintln!("--- {} (end) ---\n{}", f.display(), t.trim_end());
                }
            }
        }
        self.chassis.clear();
        self.northd = None;
        for s in self.sb.servers_mut() {
            s.stop();
        }
        for s in self.nb.servers_mut() {
            s.stop();
        }
        if let Some(dir) = self.dir.take() {
            if panicking || self.keep_dir {
                let path = dir.keep();
                eprintln!("ovn-vpc sandbox: kept {}", path.display());
            }
        }
    }
}

/// The last lines of the logs of the NB servers (for error messages of tests).
pub fn nb_logs(sandbox: &Sandbox) -> String {
    sandbox
        .nb_servers()
        .iter()
        .map(|s| format!("--- {} ---\n{}", s.name(), s.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}
