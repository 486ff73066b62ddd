//! `ovn-vpc bench node`: the node shim's reconcile timed on N subnets' rules, from empty and as
//! a no-op, with real iptables (legacy or nft) and ipset. Each run happens in a fresh network
//! namespace of its own (the benchmark thread unshares one, so nothing of the host is read or
//! written and nothing is left behind when the thread ends). Prints one JSON line.
//!
//! The default workload is what `ovn-vpc node` writes: the ipsets plus the IPv4 and IPv6 nat
//! and filter tables, with N natOutgoing subnets of the default VPC. `--per-cidr-rules`
//! instead writes the same N subnets as one masquerade and two FORWARD accepts per CIDR
//! (3×N rules, IPv4 only, no ipsets): the shape the node rules avoid, kept for comparison.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use ovn_vpc::api::{Subnet, SubnetSpec};
use ovn_vpc::node::{per_cidr_tables, Backend, DesiredTable, Family, Ipset, Iptables, NodeRules};
use serde_json::json;

/// `bench node`.
#[derive(Debug, clap::Args)]
pub struct NodeBenchArgs {
    /// Subnets (a /24 each, natOutgoing, default VPC).
    #[arg(long, default_value_t = 1000)]
    subnets: usize,
    /// The iptables backend.
    #[arg(long, value_enum)]
    backend: BackendName,
    /// Runs, each in a fresh network namespace; the medians are printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// One rule per CIDR instead of ipsets (3×N rules, IPv4), for comparison.
    #[arg(long)]
    per_cidr_rules: bool,
}

/// `--backend` of `bench node` (no auto: a benchmark names what it measures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendName {
    /// iptables-legacy.
    Legacy,
    /// iptables-nft.
    Nft,
}

/// One run's timings.
#[derive(Debug, Clone, Default)]
struct Run {
    from_empty: Duration,
    from_empty_writes: u32,
    noop: Duration,
    noop_writes: u32,
    /// Time of each no-op step (`ipsets`, `ipv4 nat`, ...).
    noop_steps: Vec<(String, Duration)>,
    rules: usize,
}

pub fn run(args: NodeBenchArgs) -> anyhow::Result<()> {
    ensure!(
        args.subnets <= 65536,
        "--subnets: at most 65536 /24s fit in 10.0.0.0/8"
    );
    ensure!(args.runs >= 1, "--runs must be at least 1");
    let backend = match args.backend {
        BackendName::Legacy => Backend::Legacy,
        BackendName::Nft => Backend::Nft,
    };
    let subnets: Vec<Subnet> = (0..args.subnets)
        .map(|i| -> anyhow::Result<Subnet> {
            let spec: SubnetSpec = serde_yaml::from_str(&format!(
                "cidrs: [10.{}.{}.0/24]\nnatOutgoing: true",
                i / 256,
                i % 256
            ))?;
            Ok(Subnet::new(&format!("s{i}"), spec))
        })
        .collect::<Result<_, _>>()?;
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let subnets = subnets.clone();
        let per_cidr = args.per_cidr_rules;
        let r = std::thread::spawn(move || -> anyhow::Result<Run> {
            // This thread, and the tools it starts, get a network namespace of their own.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("unshare(CLONE_NEWNET): the benchmark needs root")?;
            if per_cidr {
                per_cidr_run(&subnets, backend)
            } else {
                node_run(&subnets, backend)
            }
        })
        .join()
        .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))??;
        runs.push(r);
    }
    let median = |f: &dyn Fn(&Run) -> Duration| -> f64 {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let steps: serde_json::Map<String, serde_json::Value> = runs[0]
        .noop_steps
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let ms = median(&|r: &Run| r.noop_steps[i].1);
            (name.clone(), json!((ms * 100.0).round() / 100.0))
        })
        .collect();
    let round = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "bench": "node",
            "backend": format!("{backend:?}").to_lowercase(),
            "mode": if args.per_cidr_rules { "per-cidr-rules" } else { "ipsets" },
            "subnets": args.subnets,
            "rules": runs[0].rules,
            "runs": args.runs,
            "from_empty_ms": round(median(&|r: &Run| r.from_empty)),
            "from_empty_writes": runs[0].from_empty_writes,
            "noop_ms": round(median(&|r: &Run| r.noop)),
            "noop_writes": runs.iter().map(|r| r.noop_writes).max().unwrap_or(0),
            "noop_steps_ms": steps,
        })
    );
    Ok(())
}

/// What `ovn-vpc node` does: ipsets, then the tables of both families; timed step by step.
fn node_run(subnets: &[Subnet], backend: Backend) -> anyhow::Result<Run> {
    let rules = NodeRules::from_subnets(subnets).map_err(anyhow::Error::msg)?;
    let ipset = Ipset::new();
    let mut run = Run {
        rules: rules.v4.iter().chain(&rules.v6).map(count_rules).sum(),
        ..Run::default()
    };
    let pass = |steps: &mut Vec<(String, Duration)>| -> anyhow::Result<u32> {
        let t = Instant::now();
        let mut writes = ipset.reconcile(&rules.sets)?;
        steps.push(("ipsets".into(), t.elapsed()));
        for f in [Family::V4, Family::V6] {
            let t = Instant::now();
            for r in Iptables::new(backend, f).reconcile_all(rules.tables(f)) {
                writes += r?.writes;
            }
            steps.push((format!("{f:?} tables").to_lowercase(), t.elapsed()));
        }
        Ok(writes)
    };
    let t = Instant::now();
    run.from_empty_writes = pass(&mut Vec::new())?;
    run.from_empty = t.elapsed();
    let t = Instant::now();
    run.noop_writes = pass(&mut run.noop_steps)?;
    run.noop = t.elapsed();
    let counted: usize = ipset
        .save(&rules.set_names())?
        .values()
        .map(|s| s.members.len())
        .sum();
    ensure!(
        counted == 2 * subnets.len(),
        "the sets hold {counted} members, want {}",
        2 * subnets.len()
    );
    Ok(run)
}

/// The comparison shape: a masquerade and two accepts per CIDR, IPv4 only.
fn per_cidr_run(subnets: &[Subnet], backend: Backend) -> anyhow::Result<Run> {
    let cidrs: Vec<&str> = subnets
        .iter()
        .flat_map(|s| s.spec.cidrs.iter().map(String::as_str))
        .collect();
    let tables = per_cidr_tables(&cidrs);
    let ipt = Iptables::new(backend, Family::V4);
    let mut run = Run {
        rules: tables.iter().map(count_rules).sum(),
        ..Run::default()
    };
    let t = Instant::now();
    for r in ipt.reconcile_all(&tables) {
        run.from_empty_writes += r?.writes;
    }
    run.from_empty = t.elapsed();
    let t = Instant::now();
    for r in ipt.reconcile_all(&tables) {
        run.noop_writes += r?.writes;
    }
    run.noop = t.elapsed();
    run.noop_steps.push(("v4 tables".into(), run.noop));
    Ok(run)
}

fn count_rules(t: &DesiredTable) -> usize {
    t.chains.iter().map(|c| c.rules.len()).sum::<usize>() + t.jumps.len()
}
