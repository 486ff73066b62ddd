//! `ovn-vpc node`: the per-node shim. Derives the node rules from Subnets (from manifests with
//! `-f`, else listed from the Kubernetes API and re-listed every `--subnet-poll`), optionally
//! points the chassis at the Southbound (`--ovn-remote`), then reconciles once (`--once`), removes everything of ours (`--cleanup`), or
//! keeps them in place with the refresh loop and serves `/healthz` and `/readyz` until SIGINT
//! or SIGTERM. Rules stay in place on exit: a restarting DaemonSet pod must not cut traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ovn_vpc::api::{Object, Subnet};
use ovn_vpc::node::chassis::{configure, ChassisConfig};
use ovn_vpc::node::{node_refresh, parse_duration, Backend, NodeRules, Refresh, RefreshStats};

/// `ovn-vpc node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Manifest files or directories to read Subnets from (standalone mode).
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Reconcile once and exit; non-zero when anything failed.
    #[arg(long, conflicts_with = "cleanup")]
    once: bool,
    /// Remove every rule, chain and ipset of ours and exit; foreign rules are untouched.
    #[arg(long)]
    cleanup: bool,
    /// How often every table is re-read and repaired (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    refresh_interval: Duration,
    /// How often the chains of ours are polled for a flush (`0s` turns the poll off).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    canary_interval: Duration,
    /// The iptables backend: detected as kube-proxy does, or forced.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:10665")]
    health_addr: SocketAddr,
    /// Kubernetes mode (no -f): the kubeconfig to read Subnets with (default: inferred —
    /// in-cluster service account, `KUBECONFIG`, `~/.kube/config`).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: how often Subnets are re-listed; changed rules are applied at once.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    subnet_poll: Duration,
    #[command(flatten)]
    chassis: ChassisArgs,
}

/// Where the Subnets come from.
enum Source {
    Files(Vec<PathBuf>),
    Kube(kube::Client, tokio::runtime::Runtime),
}

impl Source {
    fn rules(&self) -> anyhow::Result<NodeRules> {
        match self {
            Source::Files(files) => {
                let m = ovn_vpc::manifest::load(files)?;
                let subnets = m.objects.iter().filter_map(|o| match o {
                    Object::Subnet(s) => Some(s),
                    _ => None,
                });
                NodeRules::from_subnets(subnets).map_err(anyhow::Error::msg)
            }
            Source::Kube(client, rt) => {
                let api: kube::Api<Subnet> = kube::Api::all(client.clone());
                let list = rt
                    .block_on(api.list(&Default::default()))
                    .context("listing Subnets from the Kubernetes API")?;
                NodeRules::from_subnets(list.items.iter()).map_err(anyhow::Error::msg)
            }
        }
    }
}

fn kube_source(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Source> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(async {
        let config = match kubeconfig {
            Some(p) => {
                let kc = kube::config::Kubeconfig::read_from(p)?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
            }
            None => kube::Config::infer().await?,
        };
        anyhow::Ok(kube::Client::try_from(config)?)
    })?;
    Ok(Source::Kube(client, rt))
}

/// The chassis configuration `ovn-vpc node` writes into the local Open_vSwitch database at
/// start (through our OVSDB client) when `--ovn-remote` is given.
#[derive(Debug, clap::Args)]
pub struct ChassisArgs {
    /// The Southbound remote ovn-controller should use (`ovn-remote`); configures the chassis.
    #[arg(long, env = "OVN_SB_DB")]
    ovn_remote: Option<String>,
    /// The local Open_vSwitch database.
    #[arg(long, env = "OVS_DB", default_value = "unix:/run/openvswitch/db.sock")]
    ovs: String,
    /// The chassis name (`system-id`); default: the node name, else the host name.
    #[arg(long, env = "NODE_NAME")]
    system_id: Option<String>,
    /// The tunnel endpoint address of this node (`ovn-encap-ip`).
    #[arg(long, env = "NODE_IP")]
    encap_ip: Option<String>,
    /// `ovn-encap-type`.
    #[arg(long, default_value = "geneve")]
    encap_type: String,
    /// Physical networks to bridges, `physnet:br-ex[,net2:br2]` (`ovn-bridge-mappings`).
    #[arg(long, value_delimiter = ',')]
    bridge_mappings: Vec<String>,
}

impl ChassisArgs {
    /// The configuration to write, or `None` without `--ovn-remote`.
    fn config(&self) -> anyhow::Result<Option<ChassisConfig>> {
        let Some(remote) = &self.ovn_remote else {
            return Ok(None);
        };
        let system_id = match &self.system_id {
            Some(s) => s.clone(),
            None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
        };
        let encap_ip = self
            .encap_ip
            .clone()
            .context("--encap-ip (or NODE_IP) is required with --ovn-remote")?;
        let bridge_mappings = self
            .bridge_mappings
            .iter()
            .map(|m| {
                m.split_once(':')
                    .map(|(n, b)| (n.to_string(), b.to_string()))
                    .with_context(|| format!("--bridge-mappings: {m:?} is not NETWORK:BRIDGE"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(ChassisConfig {
            system_id,
            ovn_remote: remote.clone(),
            encap_type: self.encap_type.clone(),
            encap_ip,
            bridge_mappings,
        }))
    }
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// kubelet's hint chains, else the backend holding more rules (nft on a tie).
    Auto,
    /// iptables-legacy.
    Legacy,
    /// iptables-nft.
    Nft,
}

/// How long the loop may go without a beat before `/healthz` fails.
const LIVENESS_WINDOW: Duration = Duration::from_secs(30);

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let source = if !args.files.is_empty() {
        Source::Files(args.files.clone())
    } else if args.cleanup {
        // Cleanup needs only the names of our chains and sets, which do not depend on Subnets.
        Source::Files(Vec::new())
    } else {
        kube_source(args.kubeconfig.as_deref()).context("Kubernetes mode (no -f given)")?
    };
    let rules = source.rules()?;
    let backend = match args.backend {
        BackendArg::Legacy => Backend::Legacy,
        BackendArg::Nft => Backend::Nft,
        BackendArg::Auto => Backend::detect(None).context("detecting the iptables backend")?,
    };
    let refresh = node_refresh(&rules, backend, None)
        .interval(args.refresh_interval)
        .canary_interval((!args.canary_interval.is_zero()).then_some(args.canary_interval));

    if args.cleanup {
        return match refresh.cleanup() {
            Ok(writes) => {
                println!("cleanup: {writes} write(s); nothing of ours is left");
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("ovn-vpc node --cleanup: {e}");
                }
                Ok(ExitCode::FAILURE)
            }
        };
    }
    if let Some(cfg) = args.chassis.config()? {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(configure(&args.chassis.ovs, &cfg))?;
        println!(
            "chassis {}: ovn-remote {}, encap {} {}",
            cfg.system_id, cfg.ovn_remote, cfg.encap_type, cfg.encap_ip
        );
    }
    let pods = rules.sets.iter().map(|s| s.members.len()).sum::<usize>();
    if args.once {
        let mut stats = Default::default();
        refresh.pass(&mut stats);
        let problems = refresh.problems();
        println!(
            "reconciled ({backend:?}): {} write(s), {} error(s); {pods} set member(s)",
            stats.writes, stats.errors
        );
        for p in &problems {
            eprintln!("not ready: {p}");
        }
        return Ok(if stats.errors == 0 && problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            if let Some(e) = stats.last_error {
                eprintln!("ovn-vpc node --once: {e}");
            }
            ExitCode::FAILURE
        });
    }

    // Block the stop signals before any thread starts, so only `wait` below receives them.
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;

    let beat = Arc::new(AtomicU64::new(now_ms()));
    let live: ovn_vpc::node::Probe = {
        let beat = Arc::clone(&beat);
        Box::new(move || {
            let age = now_ms().saturating_sub(beat.load(Ordering::Relaxed));
            if u128::from(age) <= LIVENESS_WINDOW.as_millis() {
                Ok(())
            } else {
                Err(vec![format!("the refresh loop has not run for {age} ms")])
            }
        })
    };
    // The refresh in force; replaced when the Subnets change (Kubernetes mode).
    let current = Arc::new(Mutex::new(Arc::new(refresh)));
    let ready: ovn_vpc::node::Probe = {
        let current = Arc::clone(&current);
        Box::new(move || {
            let refresh = Arc::clone(&current.lock().unwrap_or_else(|e| e.into_inner()));
            let p = refresh.problems();
            if p.is_empty() {
                Ok(())
            } else {
                Err(p)
            }
        })
    };
    let bound = ovn_vpc::node::serve_health(args.health_addr, live, ready)
        .with_context(|| format!("serving health on {}", args.health_addr))?;
    println!(
        "node: {backend:?} backend, {pods} set member(s), refresh every {:?}, health on http://{bound}",
        args.refresh_interval
    );
    let stop = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (current, stop, beat) = (Arc::clone(&current), Arc::clone(&stop), Arc::clone(&beat));
        let (refresh_interval, canary_interval) = (args.refresh_interval, args.canary_interval);
        let poll = matches!(source, Source::Kube(..)).then_some(args.subnet_poll);
        std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || {
                supervise(
                    source,
                    rules,
                    &current,
                    &stop,
                    &beat,
                    poll,
                    |r: &NodeRules| {
                        node_refresh(r, backend, None)
                            .interval(refresh_interval)
                            .canary_interval(
                                (!canary_interval.is_zero()).then_some(canary_interval),
                            )
                    },
                )
            })?
    };
    let sig = set.wait()?;
    stop.store(true, Ordering::Relaxed);
    let stats = supervisor
        .join()
        .map_err(|_| anyhow::anyhow!("the refresh loop panicked"))?;
    eprintln!(
        "ovn-vpc node: {sig:?}, stopping; {} pass(es), {} write(s), {} canary repair(s), {} error(s)",
        stats.passes, stats.writes, stats.canary_repairs, stats.errors
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs the refresh loop of `current` until `stop`; with `poll` (Kubernetes mode), re-derives
/// the rules from the Subnets that often and, when they changed, swaps in a refresh of the new
/// rules (its first pass writes the difference: new CIDRs added, removed ones deleted).
fn supervise(
    source: Source,
    mut rules: NodeRules,
    current: &Mutex<Arc<Refresh>>,
    stop: &AtomicBool,
    beat: &AtomicU64,
    poll: Option<Duration>,
    refresh_of: impl Fn(&NodeRules) -> Refresh,
) -> RefreshStats {
    let mut total = RefreshStats::default();
    loop {
        let refresh = Arc::clone(&current.lock().unwrap_or_else(|e| e.into_inner()));
        let inner = AtomicBool::new(false);
        let next_rules = std::thread::scope(|scope| {
            let looper = scope.spawn(|| refresh.run_beating(&inner, beat));
            let mut due = poll.map(|p| Instant::now() + p);
            let changed = loop {
                if stop.load(Ordering::Relaxed) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(100));
                let (Some(at), Some(every)) = (due, poll) else {
                    continue;
                };
                if Instant::now() < at {
                    continue;
                }
                due = Some(Instant::now() + every);
                match source.rules() {
                    Ok(new) if new != rules => break Some(new),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "re-reading the Subnets failed; keeping the rules in force")
                    }
                }
            };
            inner.store(true, Ordering::Relaxed);
            let stats = looper.join().unwrap_or_default();
            total.passes += stats.passes;
            total.writes += stats.writes;
            total.canary_repairs += stats.canary_repairs;
            total.errors += stats.errors;
            if stats.last_error.is_some() {
                total.last_error = stats.last_error;
            }
            changed
        });
        let Some(new) = next_rules else {
            return total;
        };
        tracing::info!("the Subnets changed; applying the new node rules");
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(refresh_of(&new));
        rules = new;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
