//! `ovn-vpc-cni`: the CNI 1.0 plugin of ovn-vpc (see `ovn_vpc::cni`). The container runtime runs
//! it with `CNI_COMMAND` and friends in the environment and the network configuration on stdin;
//! it prints the result (ADD), the versions (VERSION) or nothing (DEL, CHECK), or a CNI error
//! object, on stdout. Logs go to stderr (`OVN_VPC_LOG`, default `warn`).

use std::io::Read;
use std::process::ExitCode;

use ovn_vpc::cni::{
    kube_client, pod_annotations, require_netns, run, CniError, Command, ErrorCode, NetConf,
    Params, PodAnnotations,
};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OVN_VPC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match plugin() {
        Ok(out) => {
            if !out.is_null() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(code = e.code as u32, "{e}");
            println!("{}", e.to_json());
            ExitCode::FAILURE
        }
    }
}

fn plugin() -> Result<serde_json::Value, CniError> {
    let params = Params::from_env(|k| std::env::var(k).ok())?;
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin).map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            "cannot read the configuration from stdin",
            e.to_string(),
        )
    })?;
    if params.command == Command::Version {
        // VERSION gets only {"cniVersion": …}; answer whatever it says.
        return Ok(ovn_vpc::cni::version_json());
    }
    let conf = NetConf::parse(&stdin)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(ErrorCode::Io, "cannot start the runtime", e.to_string()))?;
    // Cluster mode (no "nb"): ADD and CHECK need the pod's annotations; DEL needs nothing.
    let prefetched = match (&conf.nb, params.command) {
        (None, Command::Add | Command::Check) => {
            if params.command == Command::Add {
                require_netns(&params)?;
            }
            let (ns, pod) = params.pod()?;
            Some(rt.block_on(async {
                let client = kube_client(conf.kubeconfig.as_deref()).await?;
                pod_annotations(client, &ns, &pod).await
            })?)
        }
        _ => None,
    };
    let source = prefetched.as_ref().map(|p| p as &dyn PodAnnotations);
    rt.block_on(run(&params, &conf, source))
}
