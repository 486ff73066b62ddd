//! `ovn-vpc`: command-line entry point.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ovn_vpc::sandbox::{Sandbox, SandboxBuilder};

/// VPC networking for Kubernetes on OVN.
#[derive(Debug, Parser)]
#[command(name = "ovn-vpc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local OVN sandbox (ovsdb-server, ovn-northd, a netdev chassis from the
    /// distribution's packages), show what runs, and tear it down (or keep it with --keep).
    Demo {
        /// Keep the sandbox running until interrupted (Ctrl-C).
        #[arg(long)]
        keep: bool,
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
    match cli.command {
        Command::Demo { keep } => {
            let sandbox = Sandbox::builder().northd().chassis(1).start()?;
            print_sandbox(&sandbox);
            println!();
            println!("The controller core (VPCs, subnets, NAT from examples/) is not built yet;");
            println!("this demo shows the OVN sandbox every test runs on.");
            if keep {
                wait_for_interrupt()?;
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
    }
    Ok(ExitCode::SUCCESS)
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
