//! `ovn-vpc bench apply`: the controller core's cold start and no-op re-apply at scale, timed
//! through the real command (`ovn-vpc apply`, a child process) against a fresh sandbox
//! Northbound. Peak memory is the child's own (`wait4` rusage); "writes" is how much the
//! database file grew, since every committed transaction appends to it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

use ovn_vpc::sandbox::Sandbox;

/// `bench apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// VPCs (all of them reuse the same subnet CIDRs, as tenants do).
    #[arg(long, default_value_t = 5)]
    vpcs: usize,
    /// Subnets per VPC (a /24 and a namespace each).
    #[arg(long, default_value_t = 20)]
    subnets: usize,
    /// Pods per subnet (at most 250).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Re-applies to time after the cold start (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

/// The manifests of the world, one multi-document YAML text.
pub fn world(vpcs: usize, subnets: usize, pods: usize) -> String {
    let mut y = String::new();
    for v in 0..vpcs {
        let _ = write!(
            y,
            "---\napiVersion: ovnvpc.io/v1\nkind: Vpc\nmetadata: {{name: vpc{v}}}\nspec: {{}}\n"
        );
        for s in 0..subnets {
            let ns = format!("v{v}-s{s}");
            let _ = write!(
                y,
                "---\napiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: {ns}}}\n\
                 spec: {{vpc: vpc{v}, cidrs: [10.{}.{}.0/24], namespaces: [{ns}]}}\n\
                 ---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n",
                s / 256,
                s % 256
            );
            for p in 0..pods {
                let _ = write!(
                    y,
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: pod{p}, namespace: {ns}}}\n\
                     spec: {{containers: [{{name: app, image: nginx}}]}}\n"
                );
            }
        }
    }
    y
}

struct Run {
    seconds: f64,
    max_rss_kb: i64,
    operations: u64,
}

/// Runs `ovn-vpc apply -f manifests --db db` as a child; its wall time and peak RSS.
fn apply(manifests: &Path, db: &str) -> anyhow::Result<Run> {
    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args(["apply", "--db", db, "-f"])
        .arg(manifests)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as i32;
    // Read the output first (the child may fill a pipe), then reap it with its rusage.
    let mut stdout = child.stdout.expect("piped");
    let mut stderr = child.stderr.expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut e);
        e
    });
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out)?;
    let err = err_reader.join().unwrap_or_default();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; status and usage point to live locals.
    let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(r == pid, "wait4: {}", std::io::Error::last_os_error());
    anyhow::ensure!(
        nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0,
        "ovn-vpc apply failed: {err}{out}"
    );
    let operations = out
        .lines()
        .find_map(|l| l.strip_prefix("applied: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected output of ovn-vpc apply: {out}"))?;
    Ok(Run {
        seconds,
        max_rss_kb: usage.ru_maxrss,
        operations,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs the benchmark and prints its JSON line.
pub fn run(a: &ApplyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.pods <= 250, "--pods: at most 250 fit a /24 subnet");
    anyhow::ensure!(a.repeat >= 1, "--repeat: at least 1");
    let dir = tempfile::Builder::new()
        .prefix("ovn-vpc-bench-apply-")
        .tempdir()?;
    let manifests: PathBuf = dir.path().join("world.yaml");
    std::fs::write(&manifests, world(a.vpcs, a.subnets, a.pods))?;
    let sandbox = Sandbox::builder().start()?;
    let db = sandbox.nb_remote();
    let file = sandbox.nb_servers()[0].db_file().to_path_buf();

    let cold = apply(&manifests, &db)?;
    let mut again = Vec::new();
    let size_before = std::fs::metadata(&file)?.len();
    for _ in 0..a.repeat {
        again.push(apply(&manifests, &db)?);
    }
    let grown = std::fs::metadata(&file)?.len() - size_before;
    let line = json!({
        "vpcs": a.vpcs,
        "subnets": a.vpcs * a.subnets,
        "pods": a.vpcs * a.subnets * a.pods,
        "cold": {
            "seconds": round(cold.seconds),
            "operations": cold.operations,
            "max_rss_kb": cold.max_rss_kb,
        },
        "reapply": {
            "seconds_median": round(median(again.iter().map(|r| r.seconds).collect())),
            "seconds_all": again.iter().map(|r| round(r.seconds)).collect::<Vec<_>>(),
            "operations": again.iter().map(|r| r.operations).sum::<u64>(),
            "max_rss_kb": again.iter().map(|r| r.max_rss_kb).max(),
            "db_file_growth_bytes": grown,
        },
    });
    println!("{line}");
    Ok(())
}
