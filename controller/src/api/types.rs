//! Spec and status of each kind. Field names are the API contract (camelCase on the wire).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition (`Ready`, with reason and message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason (`SubnetNotReady`, `InvalidSpec`).
    #[serde(default)]
    pub reason: String,
    /// For people.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Status shared by kinds that only report readiness.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Which address a static route matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoutePolicy {
    /// Destination (`dst-ip`).
    #[default]
    Dst,
    /// Source (`src-ip`).
    Src,
}

/// A static route of a VPC router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticRoute {
    /// The prefix.
    pub cidr: String,
    /// The next hop.
    pub next_hop: String,
    /// Match destination (default) or source.
    #[serde(default)]
    pub policy: RoutePolicy,
}

/// What a policy route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Let it through.
    Allow,
    /// Drop it.
    Drop,
    /// Send it to `nextHop`.
    Reroute,
}

/// A policy route (`Logical_Router_Policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRoute {
    /// 0–32767.
    pub priority: i64,
    /// An OVN match expression.
    #[serde(rename = "match")]
    pub match_: String,
    /// The action.
    pub action: PolicyAction,
    /// For `reroute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
}

/// A VPC: one logical router.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "Vpc",
    plural = "vpcs",
    status = "CommonStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct VpcSpec {
    /// Namespaces whose pods belong to this VPC.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Static routes.
    #[serde(default)]
    pub static_routes: Vec<StaticRoute>,
    /// Policy routes.
    #[serde(default)]
    pub policy_routes: Vec<PolicyRoute>,
    /// The external Subnet giving this VPC a gateway port for NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_subnet: Option<String>,
}

/// A localnet uplink for NAT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct External {
    /// The bridge mapping name on the gateway chassis.
    pub physical_network: String,
    /// A VLAN tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

fn default_vpc() -> String {
    "default".into()
}

/// A Subnet: one logical switch of a VPC.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "Subnet",
    plural = "subnets",
    status = "SubnetStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSpec {
    /// The VPC (default `default`).
    #[serde(default = "default_vpc")]
    pub vpc: String,
    /// One IPv4 and/or one IPv6 CIDR.
    pub cidrs: Vec<String>,
    /// The gateway (default: the first address); one per family, comma-separated for dual stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Addresses never given out: `a.b.c.d` or `a..b`.
    #[serde(default)]
    pub exclude_ips: Vec<String>,
    /// Namespaces whose pods take addresses here.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Masquerade traffic leaving the cluster.
    #[serde(default)]
    pub nat_outgoing: bool,
    /// The cluster default subnet.
    #[serde(default)]
    pub default: bool,
    /// A localnet switch for NAT uplinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    /// Addresses unique across every VPC (chained CNIs with one global endpoint table).
    #[serde(default)]
    pub globally_unique: bool,
}

/// Subnet status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetStatus {
    /// Free IPv4 addresses.
    #[serde(default)]
    pub v4_available: u64,
    /// Used IPv4 addresses.
    #[serde(default)]
    pub v4_using: u64,
    /// Free IPv6 addresses (saturating).
    #[serde(default)]
    pub v6_available: u64,
    /// Used IPv6 addresses.
    #[serde(default)]
    pub v6_using: u64,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One allocation, written by the controller; IPAM is rebuilt from these.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "IP",
    plural = "ips",
    shortname = "ovnip"
)]
#[serde(rename_all = "camelCase")]
pub struct IpSpec {
    /// The subnet.
    pub subnet: String,
    /// Its VPC.
    pub vpc: String,
    /// `Pod/namespace/name` or `Eip/name`.
    pub owner: String,
    /// The addresses (one per family).
    pub ips: Vec<String>,
    /// The MAC.
    pub mac: String,
}

/// An external address of a VPC.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "Eip",
    plural = "eips",
    status = "EipStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct EipSpec {
    /// The VPC.
    pub vpc: String,
    /// The external Subnet it comes from.
    pub external_subnet: String,
    /// A requested address (allocated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Eip status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EipStatus {
    /// The address in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A floating IP: the Eip maps one-to-one onto a pod or an address (`dnat_and_snat`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "Fip",
    plural = "fips",
    status = "CommonStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct FipSpec {
    /// The Eip.
    pub eip: String,
    /// `namespace/name` of the pod (or use `ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// An internal address (or use `pod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Source NAT of a subnet or CIDR behind an Eip.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "SnatRule",
    plural = "snatrules",
    status = "CommonStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct SnatRuleSpec {
    /// The Eip.
    pub eip: String,
    /// A Subnet of the Eip's VPC (or use `cidr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// A CIDR (or use `subnet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Port forwarding from an Eip (a load balancer on the VPC router).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ovnvpc.io",
    version = "v1",
    kind = "DnatRule",
    plural = "dnatrules",
    status = "CommonStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct DnatRuleSpec {
    /// The Eip.
    pub eip: String,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// The port on the Eip.
    pub external_port: u16,
    /// The internal address.
    pub internal_ip: String,
    /// The internal port.
    pub internal_port: u16,
}

/// The `IP` kind under a Rust-style name.
pub type Ip = IP;
