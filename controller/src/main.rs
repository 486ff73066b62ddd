//! `ovn-vpc`: command-line entry point.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ovn_vpc::sandbox::{Sandbox, SandboxBuilder};

mod bench;
mod bench_apply;

/// mimalloc: the reconcile of a large world allocates and frees millions of small values
/// (YAML documents, rows, keys); glibc's malloc spent a fifth of a re-apply's CPU there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bundled example topology (examples/vpcs.yaml), applied by `ovn-vpc demo`.
const EXAMPLES: &str = include_str!("../../examples/vpcs.yaml");
mod bench_node;
mod node_cmd;

/// VPC networking for Kubernetes on OVN.
#[derive(Debug, Parser)]
#[command(name = "ovn-vpc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Deadline of each OVSDB request, in seconds (0: none).
    #[arg(
        long,
        global = true,
        env = "OVN_VPC_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30.0
    )]
    timeout: f64,
    /// Keep trying this many seconds while no OVSDB server is usable (missing socket,
    /// connection refused, not the RAFT leader) instead of failing at once.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0.0)]
    wait: f64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local OVN sandbox (ovsdb-server, ovn-northd, a netdev chassis from the
    /// distribution's packages), apply the bundled examples (two VPCs on the same CIDR with NAT
    /// gateways) or -f manifests, print `show`, and tear it down (or keep it with --keep).
    Demo {
        /// Keep the sandbox running until interrupted (Ctrl-C).
        #[arg(long)]
        keep: bool,
        /// Manifests to apply instead of the bundled examples/.
        #[arg(short = 'f', long = "filename")]
        files: Vec<std::path::PathBuf>,
    },
    /// List pods whose address is not in the subnet that claims them (annotation, namespace,
    /// default), pods that wait, and ports of pods that are gone. Exit 1 on a mismatch.
    Doctor {
        /// The manifests holding the subnets and pods (files or directories).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<std::path::PathBuf>,
        /// The OVN Northbound remote (comma-separated for a cluster).
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
    },
    /// Remove every Northbound row of ours (rows tagged external_ids:ovn-vpc/owner) in one
    /// transaction. Refuses, listing them, when rows of others would go with ours or lose a
    /// reference to them (--force to go ahead).
    Uninstall {
        /// The OVN Northbound remote (comma-separated for a cluster).
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove our rows even when foreign rows would go with them (foreign children of
        /// our rows, which ovsdb-server collects) or lose references to them; they are listed.
        #[arg(long)]
        force: bool,
        /// In a cluster: first stop the controller Deployment (it would put rows back), and
        /// after the OVN rows remove our finalizers from every object.
        #[arg(long)]
        cluster: bool,
        /// A kubeconfig file for --cluster (default: the in-cluster service account).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Namespace of the controller Deployment (--cluster).
        #[arg(long, env = "POD_NAMESPACE", default_value = "ovn-vpc")]
        namespace: String,
    },
    /// Start an OVN sandbox for development and print its remotes; runs until interrupted.
    Sandbox {
        /// Serve the Northbound database from a RAFT cluster of this many members.
        #[arg(long)]
        cluster: Option<usize>,
        /// Number of chassis (netdev ovs-vswitchd + ovn-controller, each in a netns).
        #[arg(long, default_value_t = 0)]
        chassis: usize,
        /// Do not start ovn-northd.
        #[arg(long)]
        no_northd: bool,
    },
    /// Print every row of the database's tables (all, or those named), like `ovsdb-client
    /// dump`, as aligned text or as one JSON document (`{table: [{"_uuid": …, column: …}]}`).
    Dump {
        /// The OVSDB remote (comma-separated for a cluster).
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
        /// The database to dump.
        #[arg(long, default_value = "OVN_Northbound")]
        database: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DumpFormat::Table)]
        format: DumpFormat,
        /// Tables to dump (default: all).
        tables: Vec<String>,
    },
    /// Print the Northbound topology as a tree grouped by VPC: routers with their ports, NAT,
    /// routes and policies; switches under the router they attach to, with their ports.
    Show {
        /// The Northbound remote.
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
    },
    /// Reconcile the Northbound with the objects in manifest files (Vpc, Subnet, Pod, …), in
    /// one transaction: VPC routers with routes, subnets (switch, router port pair, DHCPv4),
    /// pod ports with their addresses, external subnets, VPC gateways, Eip/Fip/SnatRule NAT
    /// and DnatRule load balancers.
    Apply {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<std::path::PathBuf>,
        /// The Northbound remote.
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
        /// The Southbound remote, to find gateway chassis when no Node is labelled
        /// ovnvpc.io/gateway=true.
        #[arg(long, env = "OVN_SB_DB")]
        sb: Option<String>,
        /// Also remove rows of ours whose objects are not in the manifests.
        #[arg(long)]
        prune: bool,
        /// With --prune: allow manifests that hold no object (removes every row of ours).
        #[arg(long)]
        force: bool,
    },
    /// Print the OVN changes `apply` would make; exit 0 when there are none, 2 when there are.
    Plan {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<std::path::PathBuf>,
        /// The Northbound remote.
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
        /// The Southbound remote (gateway chassis, as for apply).
        #[arg(long, env = "OVN_SB_DB")]
        sb: Option<String>,
        /// Include removals of rows whose objects are not in the manifests.
        #[arg(long)]
        prune: bool,
        /// With --prune: allow manifests that hold no object (removes every row of ours).
        #[arg(long)]
        force: bool,
    },
    /// Run the controller in a cluster: watch Vpcs, Subnets, IPs, Eips, Fips, SnatRules,
    /// DnatRules, Pods, Namespaces and Nodes and keep the Northbound in line, one transaction
    /// per change; finalizers, status, Events; leader election on a Lease; /healthz, /readyz,
    /// /metrics.
    Controller {
        /// The Northbound remote.
        #[arg(
            long,
            env = "OVN_NB_DB",
            default_value = "unix:/var/run/ovn/ovnnb_db.sock"
        )]
        db: String,
        /// The Southbound remote (gateway chassis when no Node is labelled ovnvpc.io/gateway).
        #[arg(long, env = "OVN_SB_DB")]
        sb: Option<String>,
        /// A kubeconfig file (default: the in-cluster service account, then $KUBECONFIG).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Namespace of the leader-election Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "ovn-vpc")]
        lease_namespace: String,
        /// This replica's identity in the Lease.
        #[arg(long, env = "POD_NAME", default_value = "ovn-vpc-controller")]
        identity: String,
        /// Run without leader election (one replica only).
        #[arg(long)]
        no_leader_election: bool,
        /// Address of the /healthz, /readyz and /metrics endpoints.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
    },
    /// Keep the host iptables rules and ipsets the overlay needs on this node (the node shim):
    /// masquerade for natOutgoing subnets of the default VPC, the overlay mark, FORWARD accepts
    /// for pod CIDRs; IPv4 and IPv6. Subnets from -f manifests, else from the Kubernetes API;
    /// with --ovn-remote it also configures the chassis. Serves /healthz and /readyz until
    /// SIGINT/SIGTERM.
    Node(node_cmd::NodeArgs),
    /// Print the CustomResourceDefinitions of the ovnvpc.io API (what deploy/crds.yaml holds).
    Crds,
    /// Benchmarks of the native OVSDB client (compared with ovsdbapp and ovn-nbctl by
    /// bench/run); each prints one JSON line.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OVN_VPC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ovn-vpc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use ovn_vpc::connect::{connect, set_limits, Limits};
    set_limits(Limits::from_secs(cli.timeout, cli.wait).map_err(anyhow::Error::msg)?);
    match cli.command {
        Command::Demo { keep, files } => {
            let sandbox = Sandbox::builder().northd().chassis(1).start()?;
            print_sandbox(&sandbox);
            let files = if files.is_empty() {
                let path = sandbox.dir().join("examples.yaml");
                std::fs::write(&path, EXAMPLES)?;
                vec![path]
            } else {
                files
            };
            let nb = sandbox.nb_remote();
            let sb = sandbox.sb_remote();
            let rt = runtime()?;
            let r = rt.block_on(ovn_vpc::standalone::apply(
                &nb,
                sb.as_deref(),
                &files,
                ovn_vpc::standalone::ApplyOptions::merge(),
            ))?;
            report(&r);
            let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            println!();
            println!(
                "applied {}: {} operation(s) in one transaction",
                shown.join(" "),
                r.operations
                    .iter()
                    .filter(|o| !matches!(o, ovsdb::Operation::Wait { .. }))
                    .count()
            );
            let again = rt.block_on(ovn_vpc::standalone::plan(
                &nb,
                sb.as_deref(),
                &files,
                ovn_vpc::standalone::ApplyOptions::merge(),
            ))?;
            println!(
                "re-applying the same manifests would change {} row(s)",
                again.changes.len()
            );
            println!();
            let dump = rt.block_on(async {
                let (client, conn) = connect(&nb).await?;
                tokio::spawn(conn);
                ovn_vpc::dump::dump(&client, "OVN_Northbound", &[]).await
            })?;
            print!("{}", ovn_vpc::show::render(&dump));
            if keep {
                println!();
                println!("try: OVN_NB_DB={nb} ovn-vpc show   |   ovn-nbctl --db={nb} show");
                wait_for_interrupt()?;
            }
        }
        Command::Doctor { files, db } => {
            let findings = runtime()?.block_on(ovn_vpc::doctor::doctor(&db, &files))?;
            for f in &findings {
                println!("{f}");
            }
            let bad = findings.iter().filter(|f| f.mismatch).count();
            if bad > 0 {
                println!("{bad} mismatch(es)");
                return Ok(ExitCode::from(1));
            }
            println!("no mismatches");
        }
        Command::Uninstall {
            db,
            dry_run,
            force,
            cluster,
            kubeconfig,
            namespace,
        } => {
            let rt = runtime()?;
            let client = if cluster && !dry_run {
                {
                    let client =
                        rt.block_on(ovn_vpc::runtime::kube_client(kubeconfig.as_deref()))?;
                    rt.block_on(ovn_vpc::runtime::stop_controller(
                        &client,
                        &namespace,
                        "ovn-vpc-controller",
                        std::time::Duration::from_secs(120),
                    ))?;
                    println!("stopped the controller ({namespace}/ovn-vpc-controller)");
                    Some(client)
                }
            } else {
                None
            };
            let u = rt.block_on(ovn_vpc::standalone::uninstall(&db, dry_run, force))?;
            for l in &u.changes {
                println!("{l}");
            }
            let verb = if dry_run { "would remove" } else { "removed" };
            let ours = u
                .changes
                .iter()
                .filter(|l| l.starts_with("- ") && !l.contains("(not ovn-vpc's)"))
                .count();
            println!("{verb} {ours} row(s) of ours");
            if !u.foreign.is_empty() {
                let head = match (dry_run, force) {
                    (true, false) => "without --force uninstall refuses: it would change",
                    (true, true) => "--force would change",
                    _ => "--force changed",
                };
                println!("{head} {} row(s) that are not ours:", u.foreign.len());
                for f in &u.foreign {
                    println!("  {f}");
                }
            }
            if let Some(client) = client {
                let freed = rt.block_on(ovn_vpc::runtime::remove_finalizers(&client))?;
                for o in &freed {
                    println!("- finalizer of {o}");
                }
                println!("removed {} finalizer(s) of ours", freed.len());
            }
        }
        Command::Sandbox {
            cluster,
            chassis,
            no_northd,
        } => {
            let mut b = SandboxBuilder::default().chassis(chassis);
            if let Some(n) = cluster {
                b = b.nb_cluster(n);
            }
            if !no_northd {
                b = b.northd();
            }
            let sandbox = b.start()?;
            print_sandbox(&sandbox);
            wait_for_interrupt()?;
        }
        Command::Bench { which } => bench::run(which)?,
        Command::Controller {
            db,
            sb,
            kubeconfig,
            lease_namespace,
            identity,
            no_leader_election,
            listen,
        } => {
            let mut opts = ovn_vpc::runtime::Options::new(&db);
            opts.sb = sb;
            opts.kubeconfig = kubeconfig;
            opts.lease_namespace = lease_namespace;
            opts.identity = identity;
            opts.leader_election = !no_leader_election;
            opts.listen = listen;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(ovn_vpc::runtime::run(opts))?;
        }
        Command::Node(args) => return node_cmd::run(args),
        Command::Crds => print!("{}", ovn_vpc::api::crds_yaml()),
        Command::Apply {
            files,
            db,
            sb,
            prune,
            force,
        } => {
            let r = runtime()?.block_on(ovn_vpc::standalone::apply(
                &db,
                sb.as_deref(),
                &files,
                ovn_vpc::standalone::ApplyOptions { prune, force },
            ))?;
            report(&r);
            for l in &r.changes {
                println!("{l}");
            }
            if r.reply_lost > 0 {
                println!(
                    "the reply to the transaction was lost {} time(s); a fresh read of the Northbound shows the change in place",
                    r.reply_lost
                );
            }
            if r.raced > 0 {
                println!(
                    "another writer changed the Northbound meanwhile: planned again {} time(s)",
                    r.raced
                );
            }
            println!(
                "applied: {} operation(s) in one transaction",
                r.operations
                    .iter()
                    .filter(|o| !matches!(o, ovsdb::Operation::Wait { .. }))
                    .count()
            );
        }
        Command::Plan {
            files,
            db,
            sb,
            prune,
            force,
        } => {
            let r = runtime()?.block_on(ovn_vpc::standalone::plan(
                &db,
                sb.as_deref(),
                &files,
                ovn_vpc::standalone::ApplyOptions { prune, force },
            ))?;
            report(&r);
            let lines = &r.changes;
            if lines.is_empty() {
                println!("no changes");
                return Ok(ExitCode::SUCCESS);
            }
            for l in lines {
                println!("{l}");
            }
            return Ok(ExitCode::from(2));
        }
        Command::Dump {
            db,
            database,
            format,
            tables,
        } => {
            let dump = block_on(async {
                let (client, conn) = connect(&db).await?;
                tokio::spawn(conn);
                ovn_vpc::dump::dump(&client, &database, &tables).await
            })?;
            match format {
                DumpFormat::Table => print!("{}", dump.to_text()),
                DumpFormat::Json => println!("{}", dump.to_json()),
            }
        }
        Command::Show { db } => {
            let dump = block_on(async {
                let (client, conn) = connect(&db).await?;
                tokio::spawn(conn);
                ovn_vpc::dump::dump(&client, "OVN_Northbound", &[]).await
            })?;
            print!("{}", ovn_vpc::show::render(&dump));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ovn-vpc dump --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DumpFormat {
    /// Aligned columns, one block per table.
    Table,
    /// One JSON document.
    Json,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Objects that wait, and documents that were skipped, on stderr.
fn report(r: &ovn_vpc::standalone::Reconcile) {
    for s in r.statuses.iter().filter(|s| !s.ready) {
        eprintln!("{}: {} ({})", s.object, s.message, s.reason);
    }
    for s in &r.skipped {
        eprintln!("skipped {s}");
    }
}

/// Runs a future on a small runtime (the CLI commands are one-shot).
fn block_on<T>(f: impl std::future::Future<Output = Result<T, ovsdb::Error>>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f)?)
}

fn print_sandbox(s: &Sandbox) {
    println!("OVN sandbox in {}", s.dir().display());
    println!("  export OVN_NB_DB={}", s.nb_remote());
    if let Some(sb) = s.sb_remote() {
        println!("  export OVN_SB_DB={sb}");
    }
    if let Some(tcp) = s.nb_tcp_remote() {
        println!("  NB over TCP: {tcp}");
    }
    if let Some(tcp) = s.sb_tcp_remote() {
        println!("  SB over TCP: {tcp}");
    }
    if let Some(leader) = s.nb_leader() {
        if s.nb_servers().len() > 1 {
            println!("  NB cluster leader: {}", s.nb_servers()[leader].name());
        }
    }
    for c in s.chassis() {
        println!(
            "  chassis {}: netns {}, Open_vSwitch at {}",
            c.name(),
            c.netns(),
            c.ovs_remote()
        );
    }
    println!("  pids: {:?}", s.pids());
}

/// Blocks until SIGINT or SIGTERM; the sandbox is then dropped, which stops everything.
fn wait_for_interrupt() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    println!("running; Ctrl-C to stop");
    let sig = set.wait()?;
    eprintln!("ovn-vpc: {sig:?}, stopping");
    Ok(())
}
