//! The CNI 1.0 protocol as the container runtime speaks it: the command and its parameters from
//! environment variables, the network configuration on stdin, a result or an error as JSON on
//! stdout. No I/O here: plain data in, plain data out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The CNI version this plugin implements.
pub const CNI_VERSION: &str = "1.0.0";

/// Versions of the configuration this plugin accepts (results are always 1.0.0-shaped).
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// Default MTU of the pod interface when the configuration names none: room for the Geneve
/// header on a 1500-byte underlay.
pub const DEFAULT_MTU: u32 = 1400;

/// The CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Plug the container in.
    Add,
    /// Unplug it; must succeed when already gone.
    Del,
    /// Verify that what ADD did is still in place.
    Check,
    /// Report the supported versions.
    Version,
}

/// The well-known CNI error codes (spec §"Error"), and ours from 100 up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion = 1,
    /// 2: unsupported field in the network configuration.
    UnsupportedField = 2,
    /// 3: container unknown or does not exist.
    UnknownContainer = 3,
    /// 4: invalid necessary environment variables.
    InvalidEnvironment = 4,
    /// 5: I/O failure.
    Io = 5,
    /// 6: failed to decode content.
    Decode = 6,
    /// 7: invalid network configuration.
    InvalidConfig = 7,
    /// 11: try again later (e.g. the pod has no address yet).
    TryAgainLater = 11,
    /// 100: CHECK found the plumbing missing or different from what ADD made.
    CheckFailed = 100,
    /// 101: OVS or OVN did not do its part (no br-int, port not installed in time).
    Datapath = 101,
}

/// A CNI error: printed as `{"cniVersion", "code", "msg", "details"}` with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if .details.is_empty() { String::new() } else { format!(": {}", .details) })]
pub struct CniError {
    /// The code.
    pub code: ErrorCode,
    /// A short message.
    pub msg: String,
    /// Longer details.
    pub details: String,
}

impl CniError {
    /// An error with a code, message and details.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The JSON the runtime reads from stdout.
    pub fn to_json(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "code": self.code as u32,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// The parameters from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: a path (`/var/run/netns/x`, `/proc/PID/ns/net`); may be empty on DEL.
    pub netns: String,
    /// `CNI_IFNAME`: the interface name inside the container.
    pub ifname: String,
    /// `CNI_ARGS` as pairs (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, …).
    pub args: BTreeMap<String, String>,
}

impl Params {
    /// Reads the parameters through `get` (e.g. `std::env::var`), checking what the command
    /// needs: everything for ADD and CHECK; container id and interface for DEL.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Params, CniError> {
        let var = |k: &str| get(k).unwrap_or_default();
        let command = match var("CNI_COMMAND").as_str() {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    "unknown CNI_COMMAND",
                    format!("{other:?} is not ADD, DEL, CHECK or VERSION"),
                ))
            }
        };
        let args = parse_args(&var("CNI_ARGS"))?;
        let p = Params {
            command,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args,
        };
        let mut missing = Vec::new();
        if command != Command::Version {
            if p.container_id.is_empty() {
                missing.push("CNI_CONTAINERID");
            }
            if p.ifname.is_empty() {
                missing.push("CNI_IFNAME");
            }
            if command != Command::Del && p.netns.is_empty() {
                missing.push("CNI_NETNS");
            }
        }
        if !missing.is_empty() {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                "missing environment variables",
                missing.join(", "),
            ));
        }
        if p.ifname.len() > 15 || p.ifname.contains('/') || p.ifname.contains(char::is_whitespace) {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                "invalid CNI_IFNAME",
                format!("{:?} is not a Linux interface name", p.ifname),
            ));
        }
        Ok(p)
    }

    /// The pod as `(namespace, name)` from `CNI_ARGS`.
    pub fn pod(&self) -> Result<(String, String), CniError> {
        match (
            self.args.get("K8S_POD_NAMESPACE"),
            self.args.get("K8S_POD_NAME"),
        ) {
            (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
                Ok((ns.clone(), name.clone()))
            }
            _ => Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                "CNI_ARGS must name the pod",
                "K8S_POD_NAMESPACE and K8S_POD_NAME are required",
            )),
        }
    }
}

/// `CNI_ARGS`: `K=V;K=V`.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                "malformed CNI_ARGS",
                format!("{pair:?} is not KEY=VALUE"),
            ));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The network configuration (shared/DESIGN.md, "CNI contract").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `type` (`ovn-vpc-cni`).
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    /// The local Open_vSwitch database (`unix:/run/openvswitch/db.sock`).
    #[serde(default = "default_ovs")]
    pub ovs: String,
    /// The Northbound remote: standalone mode (the allocation is the pod's logical switch port).
    /// Absent: cluster mode (the allocation comes from the pod's annotations).
    #[serde(default)]
    pub nb: Option<String>,
    /// MTU of the pod interface.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The integration bridge (default `br-int`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Seconds ADD waits for ovn-controller to report the port installed (default 60).
    #[serde(default)]
    pub install_timeout: Option<u64>,
    /// Cluster mode: the kubeconfig to read pods with (default: inferred — `KUBECONFIG`,
    /// `~/.kube/config`, or the in-cluster service account).
    #[serde(default)]
    pub kubeconfig: Option<String>,
}

fn default_ovs() -> String {
    "unix:/run/openvswitch/db.sock".to_string()
}

impl NetConf {
    /// Parses stdin; checks the version.
    pub fn parse(text: &str) -> Result<NetConf, CniError> {
        let conf: NetConf = serde_json::from_str(text).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                "incompatible CNI version",
                format!(
                    "configuration has {}, this plugin supports {}",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if conf.mtu.is_some_and(|m| !(576..=65535).contains(&m)) {
            return Err(CniError::new(
                ErrorCode::InvalidConfig,
                "invalid mtu",
                format!("{:?} is outside 576..=65535", conf.mtu),
            ));
        }
        Ok(conf)
    }

    /// The MTU to use.
    pub fn mtu(&self) -> u32 {
        self.mtu.unwrap_or(DEFAULT_MTU)
    }

    /// The integration bridge.
    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or("br-int")
    }
}

/// The `VERSION` answer.
pub fn version_json() -> Value {
    json!({"cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS})
}

/// An interface of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC.
    pub mac: String,
    /// The netns path for the container's interface; absent for the host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// `10.0.1.2/24`.
    pub address: String,
    /// The subnet's gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: usize,
}

/// A route of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination (`0.0.0.0/0`).
    pub dst: String,
    /// Next hop.
    pub gw: IpAddr,
}

/// The ADD result (CNI 1.0 "Success").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// Always [`CNI_VERSION`].
    pub cni_version: String,
    /// Host end first, container end second.
    pub interfaces: Vec<Interface>,
    /// The addresses of the container end.
    pub ips: Vec<IpConfig>,
    /// Default routes.
    pub routes: Vec<Route>,
    /// Empty: DNS is the runtime's business.
    pub dns: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn add_needs_every_variable_del_does_not_need_the_netns() {
        let e =
            Params::from_env(env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert_eq!(e.details, "CNI_CONTAINERID, CNI_NETNS");
        let p = Params::from_env(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web",
            ),
        ]))
        .unwrap();
        assert_eq!(p.command, Command::Del);
        assert_eq!(p.pod().unwrap(), ("team-a".into(), "web".into()));
        let v = Params::from_env(env(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert_eq!(v.command, Command::Version);
        let bad = Params::from_env(env(&[("CNI_COMMAND", "FROB")])).unwrap_err();
        assert_eq!(bad.code, ErrorCode::InvalidEnvironment);
    }

    #[test]
    fn malformed_args_and_long_ifnames_are_refused() {
        assert!(parse_args("A=1;B").is_err());
        let e = Params::from_env(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "an-interface-name-too-long"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.details,
            "\"an-interface-name-too-long\" is not a Linux interface name"
        );
    }

    #[test]
    fn the_design_config_parses_and_other_versions_are_refused() {
        let c = NetConf::parse(
            r#"{"cniVersion":"1.0.0","name":"ovn-vpc","type":"ovn-vpc-cni","ovs":"unix:/run/openvswitch/db.sock","nb":"tcp:127.0.0.1:6641","mtu":1400}"#,
        )
        .unwrap();
        assert_eq!(c.nb.as_deref(), Some("tcp:127.0.0.1:6641"));
        assert_eq!((c.mtu(), c.bridge()), (1400, "br-int"));
        let old = NetConf::parse(r#"{"cniVersion":"0.3.1","name":"x","type":"y"}"#).unwrap_err();
        assert_eq!(old.code, ErrorCode::IncompatibleVersion);
        let junk = NetConf::parse("{").unwrap_err();
        assert_eq!(junk.code, ErrorCode::Decode);
        let mtu = NetConf::parse(r#"{"cniVersion":"1.0.0","mtu":10}"#).unwrap_err();
        assert_eq!(mtu.code, ErrorCode::InvalidConfig);
    }

    #[test]
    fn errors_and_results_have_the_spec_shape() {
        let e = CniError::new(ErrorCode::TryAgainLater, "no address yet", "pod x");
        assert_eq!(
            e.to_json(),
            json!({"cniVersion":"1.0.0","code":11,"msg":"no address yet","details":"pod x"})
        );
        let r = CniResult {
            cni_version: CNI_VERSION.into(),
            interfaces: vec![
                Interface {
                    name: "ovpc0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:00:00:00:00:02".into(),
                    sandbox: Some("/var/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.0.1.2/24".into(),
                gateway: Some("10.0.1.1".parse().unwrap()),
                interface: 1,
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: "10.0.1.1".parse().unwrap(),
            }],
            dns: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "ovpc0", "mac": "02:00:00:00:00:01"},
                    {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": "/var/run/netns/p"}
                ],
                "ips": [{"address": "10.0.1.2/24", "gateway": "10.0.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}],
                "dns": {}
            })
        );
        assert_eq!(version_json()["supportedVersions"], json!(["1.0.0"]));
    }
}
