//! `ovn-vpc-cni`, the CNI 1.0 plugin (shared/DESIGN.md, "CNI contract"): plugs a pod into
//! br-int and OVN.
//!
//! ADD: reads the pod's allocation (standalone mode: its logical switch port `<pod>.<namespace>`
//! in the Northbound database named by `nb`; cluster mode: the pod's annotations, see
//! [`PodAnnotations`]), creates a veth pair with the container end inside `CNI_NETNS` (MAC, MTU,
//! addresses, default routes; TX checksum offload off when br-int uses the userspace `netdev`
//! datapath), adds the host end to br-int with `external_ids:iface-id` = the logical port through
//! our OVSDB client, and waits until ovn-controller sets `external_ids:ovn-installed=true`.
//! A failed ADD undoes what it did. DEL removes the OVS port and the veth and succeeds when
//! either (or the namespace) is already gone. CHECK verifies all of it. VERSION reports 1.0.0.
//!
//! ```no_run
//! use ovn_vpc::cni::{run, Params, NetConf};
//! let params = Params::from_env(|k| std::env::var(k).ok())?;
//! let conf = NetConf::parse(r#"{"cniVersion":"1.0.0","name":"ovn-vpc","type":"ovn-vpc-cni",
//!     "ovs":"unix:/run/openvswitch/db.sock","nb":"tcp:127.0.0.1:6641","mtu":1400}"#)?;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let out = rt.block_on(run(&params, &conf, None))?;
//! println!("{out}");
//! # Ok::<(), ovn_vpc::cni::CniError>(())
//! ```

mod alloc;
mod kube;
mod link;
mod ovs;
mod spec;

use std::time::Duration;

use serde_json::Value;

pub use alloc::{
    from_annotations, from_logical_port, from_northbound, logical_port, PodAllocation,
    PodAnnotations, ALLOCATED_ANNOTATION, CIDR_ANNOTATION, GATEWAY_ANNOTATION,
    IP_ADDRESS_ANNOTATION, LOGICAL_SWITCH_ANNOTATION, MAC_ADDRESS_ANNOTATION,
};
pub use kube::{client as kube_client, pod_annotations, Prefetched};
pub use link::host_ifname;
pub use ovs::CONTAINER_KEY;
pub use spec::{
    parse_args, version_json, CniError, CniResult, Command, ErrorCode, Interface, IpConfig,
    NetConf, Params, Route, CNI_VERSION, DEFAULT_MTU, SUPPORTED_VERSIONS,
};

use link::Ns;
use ovs::{Ovs, PortSpec};

const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one CNI command; returns what goes to stdout on success (`Value::Null`: nothing, as for
/// DEL). `annotations` serves cluster mode (no `nb` in the configuration).
pub async fn run(
    params: &Params,
    conf: &NetConf,
    annotations: Option<&dyn PodAnnotations>,
) -> Result<Value, CniError> {
    match params.command {
        Command::Version => Ok(version_json()),
        Command::Add => {
            let result = add(params, conf, annotations).await?;
            serde_json::to_value(result).map_err(|e| {
                CniError::new(ErrorCode::Io, "cannot encode the result", e.to_string())
            })
        }
        Command::Del => del(params, conf).await.map(|()| Value::Null),
        Command::Check => check(params, conf, annotations).await.map(|()| Value::Null),
    }
}

async fn allocation(
    params: &Params,
    conf: &NetConf,
    annotations: Option<&dyn PodAnnotations>,
) -> Result<(String, PodAllocation), CniError> {
    let (ns, pod) = params.pod()?;
    let lport = logical_port(&ns, &pod);
    let alloc =
        match (&conf.nb, annotations) {
            (Some(nb), _) => from_northbound(nb, &lport).await?,
            (None, Some(source)) => {
                let a = source.annotations(&ns, &pod)?.ok_or_else(|| {
                    CniError::new(
                        ErrorCode::UnknownContainer,
                        "no such pod",
                        format!("{ns}/{pod}"),
                    )
                })?;
                from_annotations(&a)?
            }
            (None, None) => return Err(CniError::new(
                ErrorCode::TryAgainLater,
                "cluster mode is not available in this build",
                "the network configuration has no \"nb\" (standalone mode) and this plugin has \
                 no Kubernetes client to read the pod's annotations",
            )),
        };
    Ok((lport, alloc))
}

/// ADD needs the container's network namespace: checked before anything else is done.
pub fn require_netns(params: &Params) -> Result<(), CniError> {
    if link::netns_exists(&params.netns) {
        return Ok(());
    }
    Err(CniError::new(
        ErrorCode::UnknownContainer,
        "the container's network namespace does not exist",
        params.netns.clone(),
    ))
}

async fn add(
    params: &Params,
    conf: &NetConf,
    annotations: Option<&dyn PodAnnotations>,
) -> Result<CniResult, CniError> {
    require_netns(params)?;
    let (lport, alloc) = allocation(params, conf, annotations).await?;
    let ovs = Ovs::connect(&conf.ovs).await?;
    let datapath = ovs.datapath_type(conf.bridge()).await?.ok_or_else(|| {
        CniError::new(
            ErrorCode::Datapath,
            "no integration bridge",
            format!("bridge {} does not exist in {}", conf.bridge(), conf.ovs),
        )
    })?;
    let host = host_ifname(&params.container_id, &params.ifname);
    // A retried ADD starts from scratch.
    ovs.del_port(&host).await?;
    link::delete_host_end(&host)?;
    let done = async {
        let plugged = link::create(
            &host,
            &params.netns,
            &params.ifname,
            conf.mtu(),
            &alloc,
            datapath == "netdev",
        )?;
        ovs.add_port(&PortSpec {
            bridge: conf.bridge(),
            name: &host,
            iface_id: &lport,
            mac: &alloc.mac,
            container_id: &params.container_id,
        })
        .await?;
        let timeout = conf
            .install_timeout
            .map_or(DEFAULT_INSTALL_TIMEOUT, Duration::from_secs);
        ovs.wait_installed(&host, timeout).await?;
        Ok::<_, CniError>(plugged)
    }
    .await;
    let plugged = match done {
        Ok(p) => p,
        Err(e) => {
            // Leave nothing half-plugged behind; the runtime may also call DEL.
            let _ = ovs.del_port(&host).await;
            let _ = link::delete_host_end(&host);
            return Err(e);
        }
    };
    let ips = alloc
        .addresses
        .iter()
        .map(|a| IpConfig {
            address: a.to_string(),
            gateway: alloc.gateway_for(a),
            interface: 1,
        })
        .collect();
    let routes = alloc
        .addresses
        .iter()
        .filter_map(|a| {
            alloc.gateway_for(a).map(|gw| Route {
                dst: if a.is_ipv4() { "0.0.0.0/0" } else { "::/0" }.into(),
                gw,
            })
        })
        .collect();
    Ok(CniResult {
        cni_version: CNI_VERSION.into(),
        interfaces: vec![
            Interface {
                name: host,
                mac: plugged.host_mac,
                sandbox: None,
            },
            Interface {
                name: params.ifname.clone(),
                mac: alloc.mac.clone(),
                sandbox: Some(params.netns.clone()),
            },
        ],
        ips,
        routes,
        dns: Default::default(),
    })
}

/// Removes the OVS port and the veth pair. Every piece may already be gone (DEL twice, a
/// deleted namespace, a port removed by hand): that is success, as the spec requires. Deleting
/// the host end deletes the container end with it (and a deleted namespace takes its veth end
/// and so the pair with it), so the namespace itself is never entered.
async fn del(params: &Params, conf: &NetConf) -> Result<(), CniError> {
    let host = host_ifname(&params.container_id, &params.ifname);
    // Both halves are attempted even when one fails (an unreachable database must not keep the
    // veth alive); the first error is reported, and the runtime retries DEL.
    let port = match Ovs::connect(&conf.ovs).await {
        Ok(ovs) => ovs.del_port(&host).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let veth = link::delete_host_end(&host).map(|_| ());
    port.and(veth)
}

async fn check(
    params: &Params,
    conf: &NetConf,
    annotations: Option<&dyn PodAnnotations>,
) -> Result<(), CniError> {
    let fail = |what: String| CniError::new(ErrorCode::CheckFailed, "check failed", what);
    require_netns(params)?;
    let (lport, alloc) = allocation(params, conf, annotations).await?;
    let host = host_ifname(&params.container_id, &params.ifname);
    if link::link_show(Ns::Host, &host)?.is_none() {
        return Err(fail(format!("host interface {host} is missing")));
    }
    let pod = Ns::Pod(&params.netns);
    let Some(l) = link::link_show(pod, &params.ifname)? else {
        return Err(fail(format!(
            "{} is missing in {}",
            params.ifname, params.netns
        )));
    };
    if !l["address"]
        .as_str()
        .is_some_and(|m| m.eq_ignore_ascii_case(&alloc.mac))
    {
        return Err(fail(format!(
            "{} has MAC {} instead of {}",
            params.ifname, l["address"], alloc.mac
        )));
    }
    let have = link::addresses(pod, &params.ifname)?;
    for a in &alloc.addresses {
        if !have.contains(a) {
            return Err(fail(format!("{} lacks address {a}", params.ifname)));
        }
    }
    for a in &alloc.addresses {
        let Some(gw) = alloc.gateway_for(a) else {
            continue;
        };
        if !link::default_gateways(pod, a.is_ipv4())?.contains(&gw) {
            return Err(fail(format!(
                "no default route via {gw} in {}",
                params.netns
            )));
        }
    }
    let ovs = Ovs::connect(&conf.ovs).await?;
    let Some(iface) = ovs.interface(&host).await? else {
        return Err(fail(format!("no OVS interface {host}")));
    };
    let ids = iface.get("external_ids").cloned().unwrap_or_default();
    if ids.get_str("iface-id") != Some(lport.as_str()) {
        return Err(fail(format!(
            "OVS interface {host} has iface-id {:?}, not {lport}",
            ids.get_str("iface-id")
        )));
    }
    if ids.get_str("ovn-installed") != Some("true") {
        return Err(fail(format!("ovn-controller has not installed {lport}")));
    }
    Ok(())
}
