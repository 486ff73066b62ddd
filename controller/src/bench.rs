//! `ovn-vpc bench`: the workloads of the comparison against ovsdbapp and ovn-nbctl (`bench/`),
//! driven through the native OVSDB client ([`ovsdb::Client`]).
//!
//! - `bench nb` builds one logical router and S logical switches, each attached to the router
//!   (a Logical_Router_Port with a network, and a Logical_Switch_Port of type `router` naming it
//!   in `options:router-port`) and holding P ports whose `addresses` are `"MAC IP"`, unique.
//!   `per-switch` commits one transaction per switch (switch, router port pair and its P
//!   ports); `per-port` commits one per switch for the switch and its router port pair, then
//!   one per port (insert the port, mutate the switch's `ports`). `--concurrency C` keeps C
//!   transactions in flight: C tokio tasks share one [`ovsdb::Client`], which pipelines them
//!   over one connection. The count is then checked with a `select` and a mismatch fails.
//! - `bench sync` replicates the whole database (every table, every column) with
//!   `monitor_cond_since` into an [`ovsdb::Replica`].
//!
//! Each prints one JSON line. `ports` counts every Logical_Switch_Port created, the router-type
//! ones included: S=100, P=100 is the "10,100-port build" of the benchmark targets.
//!
//! Names and addresses are the ones `bench/workload.py` gives the Python and ovn-nbctl runs:
//! router `lr0`; switch `ls{i}` with network `10.{i/16}.{(i%16)*16}.0/20`, router port
//! `lrp-ls{i}` at `.1` with MAC `0a:00:ii:ii:00:01`, its peer `ls{i}-lr0`; port `ls{i}-p{j}`
//! at host number `j+2` with MAC `0a:00:ii:ii:jj:jj` (`jj` = `j+2`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use ovsdb::{
    Atom, Client, Condition, Datum, MonitorMethod, MonitorRequest, MonitorRequests, Mutation,
    Operation, OperationResult, Replica, Row, Uuid,
};
use serde_json::json;

const NB: &str = "OVN_Northbound";
const ROUTER: &str = "lr0";
/// Switches fit in `10.0.0.0/8` as /20s, ports in a /20 after the network, broadcast and the
/// router's `.1`.
const MAX_SWITCHES: usize = 4096;
const MAX_PORTS: usize = 4093;

/// The `bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Build a router, S switches attached to it and P addressed ports per switch in the
    /// Northbound database; print `{"mode","concurrency","ports","seconds",…}`.
    Nb(NbArgs),
    /// Replicate the whole Northbound database; print `{"rows","seconds","rss_kb",…}`.
    Sync(SyncArgs),
    /// Generate V VPCs × S subnets × P pods as manifests and time `ovn-vpc apply` of them on
    /// a fresh sandbox Northbound: a cold start, then re-applies; print one JSON line.
    Apply(crate::bench_apply::ApplyArgs),
    /// The node shim's reconcile of N subnets' rules from empty and as a no-op, in a fresh
    /// network namespace per run; print `{"from_empty_ms","noop_ms","noop_writes",…}`.
    Node(crate::bench_node::NodeBenchArgs),
}

/// `bench nb`.
#[derive(Debug, clap::Args)]
pub struct NbArgs {
    /// The Northbound database (`unix:PATH`, `tcp:IP:PORT`, …); the database should be empty.
    #[arg(long, env = "OVN_NB_DB")]
    db: String,
    /// Logical switches to create.
    #[arg(long, default_value_t = 100)]
    switches: usize,
    /// Addressed ports per switch (besides its router-type port).
    #[arg(long, default_value_t = 100)]
    ports: usize,
    /// One transaction per port, or one per switch.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Runtime worker threads; 0 runs everything on the calling thread.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// `bench sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The Northbound database.
    #[arg(long, env = "OVN_NB_DB")]
    db: String,
    /// Runtime worker threads; 0 runs everything on the calling thread.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// How the build is cut into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One transaction per switch (with its router port pair), then one per port.
    PerPort,
    /// One transaction per switch with everything of that switch.
    PerSwitch,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::PerPort => "per-port",
            Mode::PerSwitch => "per-switch",
        }
    }
}

/// Runs one benchmark and prints its JSON line.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    // Synchronous (processes, a namespace per run): no runtime.
    let cmd = match cmd {
        BenchCommand::Node(a) => return crate::bench_node::run(a),
        other => other,
    };
    let threads = match &cmd {
        BenchCommand::Nb(a) => a.threads,
        BenchCommand::Sync(a) => a.threads,
        BenchCommand::Apply(a) => return crate::bench_apply::run(a),
        BenchCommand::Node(_) => unreachable!("handled above"),
    };
    // One thread by default: the server is the bottleneck and there are few cores, so the
    // client does best without cross-thread wake-ups.
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let line = rt.block_on(async {
        match cmd {
            BenchCommand::Nb(a) => nb(a).await,
            BenchCommand::Sync(a) => sync(a).await,
            BenchCommand::Apply(_) => unreachable!("run synchronously above"),
            BenchCommand::Node(_) => unreachable!("handled above"),
        }
    })?;
    println!("{line}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The workload: names and addresses (kept in step with bench/workload.py).

fn switch_name(i: usize) -> String {
    format!("ls{i}")
}

fn lrp_name(i: usize) -> String {
    format!("lrp-ls{i}")
}

fn router_lsp_name(i: usize) -> String {
    format!("ls{i}-{ROUTER}")
}

fn port_name(i: usize, j: usize) -> String {
    format!("ls{i}-p{j}")
}

/// Host `h` of switch `i`'s /20.
fn ip(i: usize, h: usize) -> String {
    let base = (i / 16, (i % 16) * 16);
    format!("10.{}.{}.{}", base.0, base.1 + h / 256, h % 256)
}

fn mac(i: usize, h: usize) -> String {
    format!(
        "0a:00:{:02x}:{:02x}:{:02x}:{:02x}",
        i >> 8,
        i & 0xff,
        h >> 8,
        h & 0xff
    )
}

fn lrp_network(i: usize) -> String {
    format!("{}/20", ip(i, 1))
}

fn port_address(i: usize, j: usize) -> String {
    format!("{} {}", mac(i, j + 2), ip(i, j + 2))
}

// ---------------------------------------------------------------------------------------------
// Operations.

fn row<const N: usize>(pairs: [(&str, Datum); N]) -> Row {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn named(n: &str) -> Atom {
    Atom::NamedUuid(n.to_string())
}

fn insert(table: &str, row: Row, uuid_name: Option<&str>) -> Operation {
    Operation::Insert {
        table: table.into(),
        row,
        uuid_name: uuid_name.map(str::to_string),
    }
}

fn port_row(i: usize, j: usize) -> Row {
    row([
        ("name", Datum::atom(port_name(i, j))),
        ("addresses", Datum::atom(port_address(i, j))),
    ])
}

/// Switch `i` with its router port pair, and (per-switch mode) its `ports` addressed ports:
/// the switch is the first operation, so its UUID is the first result.
fn switch_ops(router: Uuid, i: usize, ports: usize) -> Vec<Operation> {
    let mut ops = Vec::with_capacity(ports + 4);
    let mut members = Vec::with_capacity(ports + 1);
    members.push(named("rp"));
    members.extend((0..ports).map(|j| named(&format!("p{j}"))));
    ops.push(insert(
        "Logical_Switch",
        row([
            ("name", Datum::atom(switch_name(i))),
            ("ports", Datum::set(members)),
        ]),
        None,
    ));
    ops.push(insert(
        "Logical_Router_Port",
        row([
            ("name", Datum::atom(lrp_name(i))),
            ("mac", Datum::atom(mac(i, 1))),
            ("networks", Datum::atom(lrp_network(i))),
        ]),
        Some("lrp"),
    ));
    ops.push(Operation::Mutate {
        table: "Logical_Router".into(),
        conditions: vec![Condition::uuid(router)],
        mutations: vec![Mutation::insert("ports", Datum::atom(named("lrp")))],
    });
    ops.push(insert(
        "Logical_Switch_Port",
        row([
            ("name", Datum::atom(router_lsp_name(i))),
            ("type", Datum::atom("router")),
            ("addresses", Datum::atom("router")),
            ("options", Datum::map([("router-port", lrp_name(i))])),
        ]),
        Some("rp"),
    ));
    for j in 0..ports {
        ops.push(insert(
            "Logical_Switch_Port",
            port_row(i, j),
            Some(&format!("p{j}")),
        ));
    }
    ops
}

/// Port `j` of switch `i` (whose row is `switch`), on its own.
fn port_ops(switch: Uuid, i: usize, j: usize) -> Vec<Operation> {
    vec![
        insert("Logical_Switch_Port", port_row(i, j), Some("p")),
        Operation::Mutate {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::uuid(switch)],
            mutations: vec![Mutation::insert("ports", Datum::atom(named("p")))],
        },
    ]
}

fn first_insert(results: &[OperationResult]) -> anyhow::Result<Uuid> {
    match results.first() {
        Some(OperationResult::Insert(u)) => Ok(*u),
        other => bail!("expected the UUID of an insert, got {other:?}"),
    }
}

/// Runs `job(0..n)` on `concurrency` tasks sharing the work, each with one job in flight.
/// The first error stops every task from taking more work and is returned.
async fn run_jobs<F, Fut>(n: usize, concurrency: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let next = next.clone();
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok(());
                }
                if let Err(e) = job(k).await {
                    next.store(n, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("a benchmark task panicked")??;
    }
    Ok(())
}

async fn nb(a: NbArgs) -> anyhow::Result<serde_json::Value> {
    ensure!(
        (1..=MAX_SWITCHES).contains(&a.switches),
        "--switches must be 1..={MAX_SWITCHES}"
    );
    ensure!(a.ports <= MAX_PORTS, "--ports must be at most {MAX_PORTS}");
    ensure!(a.concurrency >= 1, "--concurrency must be at least 1");
    let (client, connection) = ovsdb::connect(&a.db)
        .await
        .with_context(|| format!("connecting to {}", a.db))?;
    tokio::spawn(connection);
    // Fetched (and cached) before the clock starts, as ovsdbapp has it before its first
    // transaction too.
    client.schema(NB).await.context("fetching the schema")?;

    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let router = first_insert(
        &client
            .transact(
                NB,
                &[insert(
                    "Logical_Router",
                    row([("name", Datum::atom(ROUTER))]),
                    None,
                )],
            )
            .await
            .context("creating the router")?,
    )?;
    let per_switch_ports = if a.mode == Mode::PerSwitch {
        a.ports
    } else {
        0
    };
    let switches: Arc<Vec<std::sync::OnceLock<Uuid>>> = Arc::new(
        (0..a.switches)
            .map(|_| std::sync::OnceLock::new())
            .collect(),
    );
    {
        let client = client.clone();
        let switches = switches.clone();
        run_jobs(a.switches, a.concurrency, move |i| {
            let client = client.clone();
            let switches = switches.clone();
            async move {
                let ops = switch_ops(router, i, per_switch_ports);
                let results = client
                    .transact(NB, &ops)
                    .await
                    .with_context(|| format!("creating switch {}", switch_name(i)))?;
                let _ = switches[i].set(first_insert(&results)?);
                Ok(())
            }
        })
        .await?;
    }
    let mut transactions = 1 + a.switches;
    if a.mode == Mode::PerPort {
        let ports = a.ports;
        let client = client.clone();
        let switches = switches.clone();
        run_jobs(a.switches * ports, a.concurrency, move |k| {
            let client = client.clone();
            let (i, j) = (k / ports, k % ports);
            let switch = switches[i].get().copied();
            async move {
                let switch = switch.context("switch missing")?;
                client
                    .transact(NB, &port_ops(switch, i, j))
                    .await
                    .with_context(|| format!("creating port {}", port_name(i, j)))?;
                Ok(())
            }
        })
        .await?;
        transactions += a.switches * a.ports;
    }
    let seconds = started.elapsed();
    let cpu = cpu_seconds() - cpu0;

    let ports = a.switches * (a.ports + 1);
    verify_build(&client, a.switches, a.ports).await?;
    Ok(json!({
        "tool": "ovn-vpc",
        "mode": a.mode.as_str(),
        "concurrency": a.concurrency,
        "ports": ports,
        "seconds": round(seconds),
        "switches": a.switches,
        "ports_per_switch": a.ports,
        "transactions": transactions,
        "client_cpu_seconds": round_f(cpu),
        "bytes_sent": client.stats().bytes_sent.load(Ordering::Relaxed),
        "bytes_received": client.stats().received(),
    }))
}

/// Reads back what the build should have left: the router with S ports, S switches each with
/// P+1 ports, S*(P+1) switch ports and S router ports.
async fn verify_build(client: &Client, switches: usize, ports: usize) -> anyhow::Result<()> {
    let select = |table: &str, columns: &[&str]| Operation::Select {
        table: table.into(),
        conditions: vec![],
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    };
    let ops = [
        select("Logical_Router", &["name", "ports"]),
        select("Logical_Switch", &["name", "ports"]),
        select("Logical_Switch_Port", &["name"]),
        select("Logical_Router_Port", &["name"]),
    ];
    let results = client
        .transact(NB, &ops)
        .await
        .context("reading the result back")?;
    let rows = |k: usize| match &results[k] {
        OperationResult::Select(rows) => Ok(rows),
        other => Err(anyhow::anyhow!("select returned {other:?}")),
    };
    let set_len = |r: &Row, c: &str| r.get(c).map_or(0, Datum::len);
    let routers = rows(0)?;
    ensure!(
        routers.len() == 1 && set_len(&routers[0], "ports") == switches,
        "expected one router with {switches} ports, found {} routers ({:?} ports)",
        routers.len(),
        routers
            .iter()
            .map(|r| set_len(r, "ports"))
            .collect::<Vec<_>>()
    );
    let lss = rows(1)?;
    ensure!(
        lss.len() == switches,
        "expected {switches} switches, found {}",
        lss.len()
    );
    if let Some(bad) = lss.iter().find(|r| set_len(r, "ports") != ports + 1) {
        bail!(
            "switch {:?} has {} ports, expected {}",
            bad.get("name"),
            set_len(bad, "ports"),
            ports + 1
        );
    }
    let lsps = rows(2)?.len();
    ensure!(
        lsps == switches * (ports + 1),
        "expected {} logical switch ports, found {lsps}",
        switches * (ports + 1)
    );
    let lrps = rows(3)?.len();
    ensure!(
        lrps == switches,
        "expected {switches} logical router ports, found {lrps}"
    );
    Ok(())
}

async fn sync(a: SyncArgs) -> anyhow::Result<serde_json::Value> {
    let rss_before = proc_status_kb("VmRSS");
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut stages = Stages::new(started);
    let (client, connection) = ovsdb::connect(&a.db)
        .await
        .with_context(|| format!("connecting to {}", a.db))?;
    tokio::spawn(connection);
    let schema = client.schema(NB).await.context("fetching the schema")?;
    let mut requests = MonitorRequests::new();
    for table in schema.tables.keys() {
        requests.add(table.as_str(), MonitorRequest::new());
    }
    let mut replica = Replica::new(schema.clone());
    replica.monitor(&requests)?;
    stages.mark("connect");
    let monitor_id = json!("bench");
    let raw = client
        .monitor_cond_since(NB, &monitor_id, &requests, None)
        .await
        .context("monitor_cond_since")?;
    stages.mark("reply");
    // Rows are decoded and stored one at a time (Replica::apply_reply_text), so the decoded
    // form of the whole reply never exists at once.
    let applied = replica.apply_reply_text(MonitorMethod::MonitorCondSince, raw.get())?;
    drop(raw);
    stages.mark("decode+apply");
    let changes = applied.changes;
    let seconds = started.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let rows = replica.row_count();
    ensure!(
        changes.len() == rows,
        "{} changes for {rows} rows",
        changes.len()
    );
    drop(changes);
    let ports = replica.table("Logical_Switch_Port").map_or(0, |t| t.len());
    Ok(json!({
        "tool": "ovn-vpc",
        "rows": rows,
        "seconds": round(seconds),
        "rss_kb": proc_status_kb("VmRSS"),
        "logical_switch_ports": ports,
        "client_cpu_seconds": round_f(cpu),
        "rss_before_kb": rss_before,
        "peak_rss_kb": proc_status_kb("VmHWM"),
        "replica_bytes": replica.approx_bytes(),
        "bytes_received": client.stats().received(),
        "stages": stages.done(),
    }))
}

/// Where the time and memory of a sync go: seconds since the previous mark and RSS at it.
struct Stages {
    last: Instant,
    marks: serde_json::Map<String, serde_json::Value>,
}

impl Stages {
    fn new(start: Instant) -> Stages {
        Stages {
            last: start,
            marks: serde_json::Map::new(),
        }
    }

    fn mark(&mut self, name: &str) {
        let now = Instant::now();
        self.marks.insert(
            name.to_string(),
            json!({"seconds": round(now - self.last), "rss_kb": proc_status_kb("VmRSS")}),
        );
        self.last = now;
    }

    fn done(self) -> serde_json::Value {
        serde_json::Value::Object(self.marks)
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements of this process.

/// User + system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => f64::NAN,
    }
}

/// A `kB` figure of /proc/self/status (`VmRSS`, `VmHWM`), 0 when unreadable.
fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn round(d: Duration) -> f64 {
    round_f(d.as_secs_f64())
}

fn round_f(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_and_inside_the_switch_network() {
        assert_eq!(ip(0, 1), "10.0.0.1");
        assert_eq!(lrp_network(17), "10.1.16.1/20");
        assert_eq!(port_address(17, 300), "0a:00:00:11:01:2e 10.1.17.46");
        assert_eq!(ip(4095, MAX_PORTS + 1), "10.255.255.254");
        let mut seen = std::collections::HashSet::new();
        for i in [0, 1, 15, 16, 255, 256, 4095] {
            for j in [0, 1, 253, 254, 255, 1000, MAX_PORTS - 1] {
                assert!(seen.insert(port_address(i, j)), "{i} {j}");
            }
        }
    }
}
