//! The veth pair between the host (the namespace the plugin runs in, where ovs-vswitchd sees
//! the host end) and the pod's network namespace, through iproute2 and ethtool. Commands inside
//! the pod run under `nsenter --net=PATH`, so `CNI_NETNS` may be any namespace path
//! (`/var/run/netns/x`, `/proc/PID/ns/net`), not only a name `ip netns` knows.

use std::process::Command;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::alloc::PodAllocation;
use super::spec::{CniError, ErrorCode};

/// The host end's name for a container interface: stable for `(container id, ifname)`, so DEL
/// finds it without any state, and within Linux's 15 characters (`ovpc` + 11 hex digits of an
/// FNV-1a hash).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    use std::hash::Hasher as _;
    let mut h = fnv::FnvHasher::default();
    h.write(container_id.as_bytes());
    h.write_u8(0);
    h.write(ifname.as_bytes());
    format!("ovpc{:011x}", h.finish() & 0xfff_ffff_ffff)
}

/// Where a command runs.
#[derive(Debug, Clone, Copy)]
pub enum Ns<'a> {
    /// The plugin's own namespace.
    Host,
    /// A namespace given by path.
    Pod(&'a str),
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn exec(ns: Ns, program: &str, args: &[&str]) -> Result<Output, CniError> {
    let mut cmd = match ns {
        Ns::Host => Command::new(program),
        Ns::Pod(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={path}")).arg("--").arg(program);
            c
        }
    };
    let out = cmd.args(args).output().map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            format!("cannot run {program}"),
            format!("{e} (iproute2, ethtool and util-linux' nsenter are required)"),
        )
    })?;
    tracing::debug!(?ns, program, ?args, status = %out.status, "ran");
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn run(ns: Ns, program: &str, args: &[&str]) -> Result<String, CniError> {
    let out = exec(ns, program, args)?;
    if !out.ok {
        return Err(CniError::new(
            ErrorCode::Io,
            format!("`{program} {}` failed", args.join(" ")),
            out.stderr,
        ));
    }
    Ok(out.stdout)
}

/// Whether the namespace path exists.
pub fn netns_exists(path: &str) -> bool {
    !path.is_empty() && std::path::Path::new(path).exists()
}

/// `ip -j link show DEV` in `ns`, `None` when there is no such device.
pub fn link_show(ns: Ns, dev: &str) -> Result<Option<Value>, CniError> {
    let out = exec(ns, "ip", &["-j", "-d", "link", "show", "dev", dev])?;
    if !out.ok {
        // "Device "x" does not exist." — anything else is a real failure.
        if out.stderr.contains("does not exist") || out.stderr.contains("Cannot find device") {
            return Ok(None);
        }
        return Err(CniError::new(
            ErrorCode::Io,
            format!("`ip link show {dev}` failed"),
            out.stderr,
        ));
    }
    let v: Value = serde_json::from_str(&out.stdout).map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            "cannot read `ip -j link` output",
            e.to_string(),
        )
    })?;
    Ok(v.as_array().and_then(|a| a.first()).cloned())
}

/// `ip -j addr show dev DEV` in `ns`: the addresses with prefixes.
pub fn addresses(ns: Ns, dev: &str) -> Result<Vec<IpNetwork>, CniError> {
    let out = run(ns, "ip", &["-j", "addr", "show", "dev", dev])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            "cannot read `ip -j addr` output",
            e.to_string(),
        )
    })?;
    let mut found = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "link" {
                continue; // the kernel's IPv6 link-local address
            }
            let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            if let Ok(n) = format!("{ip}/{len}").parse() {
                found.push(n);
            }
        }
    }
    Ok(found)
}

/// The gateways of the default routes of one family in `ns` (`ip -j -4 route show default`).
pub fn default_gateways(ns: Ns, ipv4: bool) -> Result<Vec<std::net::IpAddr>, CniError> {
    let family = if ipv4 { "-4" } else { "-6" };
    let out = run(ns, "ip", &["-j", family, "route", "show", "default"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            "cannot read `ip -j route` output",
            e.to_string(),
        )
    })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["gateway"].as_str().and_then(|g| g.parse().ok()))
        .collect())
}

/// Deletes the host end (the kernel deletes its peer with it); `false` when it was not there.
/// Equivalent to `ip link del DEV`.
pub fn delete_host_end(host: &str) -> Result<bool, CniError> {
    if link_show(Ns::Host, host)?.is_none() {
        return Ok(false);
    }
    let out = exec(Ns::Host, "ip", &["link", "del", "dev", host])?;
    if out.ok || out.stderr.contains("Cannot find device") {
        return Ok(true);
    }
    Err(CniError::new(
        ErrorCode::Io,
        format!("`ip link del {host}` failed"),
        out.stderr,
    ))
}

/// What [`create`] made.
#[derive(Debug, Clone)]
pub struct Plugged {
    /// The host end's MAC.
    pub host_mac: String,
}

/// Creates the pair with the container end directly inside the pod namespace
/// (`ip link add HOST type veth peer name IFNAME netns PATH`), then configures the container
/// end: MAC, MTU, addresses, up, default routes; and the host end: MTU, up. With `no_tx_csum`
/// TX checksum offload is turned off on both ends (`ethtool -K DEV tx off`): the userspace
/// (netdev) datapath does not complete partial checksums, so with offload on, ping works and TCP
/// silently fails (shared/DESIGN.md, "Facts verified").
pub fn create(
    host: &str,
    netns: &str,
    ifname: &str,
    mtu: u32,
    alloc: &PodAllocation,
    no_tx_csum: bool,
) -> Result<Plugged, CniError> {
    let pod = Ns::Pod(netns);
    if link_show(pod, ifname)?.is_some() {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "the interface already exists in the container",
            format!("{ifname} in {netns} is not ours to replace"),
        ));
    }
    let mtu_s = mtu.to_string();
    run(
        Ns::Host,
        "ip",
        &[
            "link", "add", host, "mtu", &mtu_s, "type", "veth", "peer", "name", ifname, "mtu",
            &mtu_s, "netns", netns,
        ],
    )?;
    run(
        pod,
        "ip",
        &["link", "set", "dev", ifname, "address", &alloc.mac],
    )?;
    if no_tx_csum {
        run(pod, "ethtool", &["-K", ifname, "tx", "off"])?;
        run(Ns::Host, "ethtool", &["-K", host, "tx", "off"])?;
    }
    for a in &alloc.addresses {
        let s = a.to_string();
        // IPv6: the address is ours alone (OVN port security); do not wait for DAD.
        let args: Vec<&str> = ["addr", "add", &s, "dev", ifname]
            .into_iter()
            .chain(a.is_ipv6().then_some("nodad"))
            .collect();
        run(pod, "ip", &args)?;
    }
    run(pod, "ip", &["link", "set", "dev", ifname, "up"])?;
    run(Ns::Host, "ip", &["link", "set", "dev", host, "up"])?;
    for a in &alloc.addresses {
        if let Some(gw) = alloc.gateway_for(a) {
            let family = if a.is_ipv4() { "-4" } else { "-6" };
            let gw = gw.to_string();
            run(
                pod,
                "ip",
                &[
                    family, "route", "replace", "default", "via", &gw, "dev", ifname,
                ],
            )?;
        }
    }
    let host_mac = link_show(Ns::Host, host)?
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(Plugged { host_mac })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_ifname("0123456789abcdef0123456789abcdef", "eth0");
        assert_eq!(a, host_ifname("0123456789abcdef0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("ovpc"));
        assert_ne!(a, host_ifname("0123456789abcdef0123456789abcdef", "net1"));
        assert_ne!(a, host_ifname("0123456789abcdef0123456789abcdee", "eth0"));
        // Pinned: DEL after an upgrade must find the host end an older release created.
        assert_eq!(a, "ovpc6d728a7c156");
        assert_eq!(
            host_ifname("0123456789abcdef0123456789abcdef", "net1"),
            "ovpc08f075dc5c9"
        );
    }
}
