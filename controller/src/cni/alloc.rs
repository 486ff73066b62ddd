//! Where a pod's addresses come from: in standalone mode the logical switch port `ovn-vpc
//! apply` wrote (`addresses` = `MAC IP…`; prefix and gateway from the VPC router port of its
//! switch), in a cluster the annotations the controller wrote on the pod.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use ovsdb::{Atom, Condition, Datum, Operation, OperationResult, Row};

use super::spec::{CniError, ErrorCode};

/// Annotation: the controller has allocated (`"true"`).
pub const ALLOCATED_ANNOTATION: &str = "ovnvpc.io/allocated";
/// Annotation: the addresses, comma-separated for dual stack.
pub const IP_ADDRESS_ANNOTATION: &str = "ovnvpc.io/ip_address";
/// Annotation: the MAC.
pub const MAC_ADDRESS_ANNOTATION: &str = "ovnvpc.io/mac_address";
/// Annotation: the subnet CIDRs, comma-separated, in the order of the addresses' families.
pub const CIDR_ANNOTATION: &str = "ovnvpc.io/cidr";
/// Annotation: the gateways, comma-separated.
pub const GATEWAY_ANNOTATION: &str = "ovnvpc.io/gateway";
/// Annotation: the logical switch.
pub const LOGICAL_SWITCH_ANNOTATION: &str = "ovnvpc.io/logical_switch";

/// What the pod interface gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAllocation {
    /// The MAC (the logical port's port security allows only it).
    pub mac: String,
    /// Addresses with their subnet's prefix length.
    pub addresses: Vec<IpNetwork>,
    /// Default gateway per address family (same order as found).
    pub gateways: Vec<IpAddr>,
}

impl PodAllocation {
    /// The gateway in `addr`'s subnet.
    pub fn gateway_for(&self, addr: &IpNetwork) -> Option<IpAddr> {
        self.gateways.iter().copied().find(|g| addr.contains(*g))
    }
}

/// The logical switch port of a pod, as `ovn-vpc` names it: `<pod>.<namespace>`.
pub fn logical_port(namespace: &str, pod: &str) -> String {
    format!("{pod}.{namespace}")
}

/// Reads a pod's annotations from the cluster (the binary reads them from the API server
/// before it runs, see `cni::pod_annotations`); [`from_annotations`] decodes them.
pub trait PodAnnotations {
    /// The pod's annotations, `None` when the pod does not exist.
    fn annotations(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<Option<BTreeMap<String, String>>, CniError>;
}

/// Decodes the controller's annotations; `Err(TryAgainLater)` while it has not allocated.
pub fn from_annotations(a: &BTreeMap<String, String>) -> Result<PodAllocation, CniError> {
    let later = |what: &str| {
        CniError::new(
            ErrorCode::TryAgainLater,
            "the pod has no address yet",
            format!("annotation {what} is missing"),
        )
    };
    if a.get(ALLOCATED_ANNOTATION).map(String::as_str) != Some("true") {
        return Err(later(ALLOCATED_ANNOTATION));
    }
    let list = |key: &str| -> Result<Vec<String>, CniError> {
        let v = a.get(key).ok_or_else(|| later(key))?;
        Ok(v.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect())
    };
    let bad = |what: String| CniError::new(ErrorCode::InvalidConfig, "bad pod annotation", what);
    let mac = a
        .get(MAC_ADDRESS_ANNOTATION)
        .cloned()
        .ok_or_else(|| later(MAC_ADDRESS_ANNOTATION))?;
    let cidrs: Vec<IpNetwork> = list(CIDR_ANNOTATION)?
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|_| bad(format!("{CIDR_ANNOTATION}: {c}")))
        })
        .collect::<Result<_, _>>()?;
    let mut addresses = Vec::new();
    for ip in list(IP_ADDRESS_ANNOTATION)? {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| bad(format!("{IP_ADDRESS_ANNOTATION}: {ip}")))?;
        let net = cidrs
            .iter()
            .find(|c| c.contains(ip))
            .ok_or_else(|| bad(format!("{ip} is in none of the CIDRs {cidrs:?}")))?;
        addresses.push(IpNetwork::new(ip, net.prefix()).map_err(|e| bad(e.to_string()))?);
    }
    let gateways = list(GATEWAY_ANNOTATION)?
        .iter()
        .map(|g| {
            g.parse()
                .map_err(|_| bad(format!("{GATEWAY_ANNOTATION}: {g}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(PodAllocation {
        mac,
        addresses,
        gateways,
    })
}

/// Decodes an LSP's `addresses` entry (`MAC IP…`) against the router port networks of its
/// switch (`10.0.1.1/24`), which give the prefix lengths and the gateways.
pub fn from_logical_port(
    addresses: &str,
    router_networks: &[String],
) -> Result<PodAllocation, CniError> {
    let mut parts = addresses.split_whitespace();
    let mac = parts.next().unwrap_or_default().to_string();
    let nets: Vec<IpNetwork> = router_networks
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let mut out = PodAllocation {
        mac,
        addresses: Vec::new(),
        gateways: Vec::new(),
    };
    for ip in parts {
        let ip: IpAddr = ip.parse().map_err(|_| {
            CniError::new(
                ErrorCode::InvalidConfig,
                "bad logical port address",
                format!("{addresses:?}"),
            )
        })?;
        let Some(net) = nets.iter().find(|n| n.contains(ip)) else {
            return Err(CniError::new(
                ErrorCode::TryAgainLater,
                "no router port in the pod's subnet",
                format!("{ip} is in none of {router_networks:?}"),
            ));
        };
        out.addresses.push(
            IpNetwork::new(ip, net.prefix()).map_err(|e| {
                CniError::new(ErrorCode::InvalidConfig, "bad prefix", e.to_string())
            })?,
        );
        out.gateways.push(net.ip());
    }
    if out.mac.is_empty() || out.addresses.is_empty() {
        return Err(CniError::new(
            ErrorCode::TryAgainLater,
            "the pod's logical port has no address yet",
            format!("addresses {addresses:?}"),
        ));
    }
    Ok(out)
}

fn select(table: &str, conditions: Vec<Condition>, columns: &[&str]) -> Operation {
    Operation::Select {
        table: table.into(),
        conditions,
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    }
}

fn rows(r: Vec<OperationResult>) -> Vec<Vec<Row>> {
    r.into_iter()
        .map(|x| match x {
            OperationResult::Select(rows) => rows,
            _ => Vec::new(),
        })
        .collect()
}

fn str_col<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col).and_then(Datum::as_atom).and_then(Atom::as_str)
}

/// Standalone mode: the allocation of logical port `lport` in the Northbound database at `nb`.
/// Three reads: the port; its switch; the switch's router ports and the VPC router ports they
/// point at.
pub async fn from_northbound(nb: &str, lport: &str) -> Result<PodAllocation, CniError> {
    let io = |e: ovsdb::Error| {
        CniError::new(
            ErrorCode::Io,
            "cannot read the Northbound database",
            format!("{nb}: {e}"),
        )
    };
    let (client, conn) = ovsdb::connect(nb).await.map_err(io)?;
    let driver = tokio::spawn(conn);
    let db = "OVN_Northbound";
    let result = async {
        let r = client
            .transact(
                db,
                &[select(
                    "Logical_Switch_Port",
                    vec![Condition::eq("name", lport)],
                    &["_uuid", "addresses"],
                )],
            )
            .await
            .map_err(io)?;
        let port = rows(r).into_iter().flatten().next().ok_or_else(|| {
            CniError::new(
                ErrorCode::TryAgainLater,
                "the pod has no logical switch port yet",
                format!("no Logical_Switch_Port {lport:?} in {nb} (run ovn-vpc apply)"),
            )
        })?;
        let uuid = port
            .get("_uuid")
            .and_then(Datum::as_atom)
            .and_then(Atom::as_uuid)
            .ok_or_else(|| io(ovsdb::Error::InvalidMessage("select reply without _uuid")))?;
        let addresses = port
            .get("addresses")
            .and_then(|d| d.as_set().first())
            .and_then(Atom::as_str)
            .unwrap_or_default()
            .to_string();
        let r = client
            .transact(
                db,
                &[
                    select(
                        "Logical_Switch",
                        vec![Condition::includes("ports", Datum::atom(uuid))],
                        &["ports"],
                    ),
                    select(
                        "Logical_Switch_Port",
                        vec![Condition::eq("type", "router")],
                        &["_uuid", "options"],
                    ),
                    select("Logical_Router_Port", vec![], &["name", "networks"]),
                ],
            )
            .await
            .map_err(io)?;
        let mut r = rows(r).into_iter();
        let (switches, router_lsps, lrps) = (
            r.next().unwrap_or_default(),
            r.next().unwrap_or_default(),
            r.next().unwrap_or_default(),
        );
        let members: Vec<&Atom> = switches
            .iter()
            .flat_map(|s| s.get("ports").map(Datum::as_set).unwrap_or_default())
            .collect();
        let router_ports: Vec<&str> = router_lsps
            .iter()
            .filter(|p| {
                p.get("_uuid")
                    .and_then(Datum::as_atom)
                    .is_some_and(|u| members.contains(&u))
            })
            .filter_map(|p| p.get("options").and_then(|o| o.get_str("router-port")))
            .collect();
        let networks: Vec<String> = lrps
            .iter()
            .filter(|p| str_col(p, "name").is_some_and(|n| router_ports.contains(&n)))
            .flat_map(|p| {
                p.get("networks")
                    .map(Datum::as_set)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Atom::as_str)
                    .map(str::to_string)
            })
            .collect();
        from_logical_port(&addresses, &networks)
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_logical_port_gets_prefix_and_gateway_from_its_router_port() {
        let a = from_logical_port(
            "0a:58:0a:00:01:02 10.0.1.2 fd00::2",
            &["10.0.1.1/24".into(), "fd00::1/64".into()],
        )
        .unwrap();
        assert_eq!(a.mac, "0a:58:0a:00:01:02");
        assert_eq!(
            a.addresses,
            vec![
                "10.0.1.2/24".parse::<IpNetwork>().unwrap(),
                "fd00::2/64".parse().unwrap()
            ]
        );
        assert_eq!(
            a.gateway_for(&a.addresses[0]),
            Some("10.0.1.1".parse().unwrap())
        );
        assert_eq!(
            a.gateway_for(&a.addresses[1]),
            Some("fd00::1".parse().unwrap())
        );
    }

    #[test]
    fn a_port_without_addresses_or_router_is_try_again_later() {
        let e = from_logical_port("0a:00:00:00:00:01", &["10.0.1.1/24".into()]).unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        let e = from_logical_port("0a:00:00:00:00:01 10.0.1.2", &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
    }

    #[test]
    fn annotations_decode_and_a_pod_not_yet_allocated_waits() {
        let a = from_annotations(&map(&[
            (ALLOCATED_ANNOTATION, "true"),
            (IP_ADDRESS_ANNOTATION, "10.0.1.5"),
            (MAC_ADDRESS_ANNOTATION, "0a:00:00:00:00:05"),
            (CIDR_ANNOTATION, "10.0.1.0/24"),
            (GATEWAY_ANNOTATION, "10.0.1.1"),
            (LOGICAL_SWITCH_ANNOTATION, "a-net1"),
        ]))
        .unwrap();
        assert_eq!(a.addresses[0].to_string(), "10.0.1.5/24");
        assert_eq!(a.gateways, vec!["10.0.1.1".parse::<IpAddr>().unwrap()]);
        let e = from_annotations(&map(&[(IP_ADDRESS_ANNOTATION, "10.0.1.5")])).unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        let e = from_annotations(&map(&[
            (ALLOCATED_ANNOTATION, "true"),
            (IP_ADDRESS_ANNOTATION, "10.0.9.5"),
            (MAC_ADDRESS_ANNOTATION, "0a:00:00:00:00:05"),
            (CIDR_ANNOTATION, "10.0.1.0/24"),
            (GATEWAY_ANNOTATION, "10.0.1.1"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
    }
}
