//! `ovn-vpc doctor`: pods whose address is not in the subnet that claims them — the
//! Kube-OVN failure where a pod created before its subnet was Ready got a default-subnet
//! address and kept it. Compares the manifests' claims (annotation, namespace, default) with
//! the pod ports in the Northbound.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use kube::ResourceExt;
use ovsdb::{Operation, OperationResult};

use crate::api::Object;
use crate::manifest;
use crate::translate::{Claims, SUBNET_KEY};

/// One thing doctor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `namespace/name`.
    pub pod: String,
    /// True for a pod placed in the wrong subnet or outside its subnet's CIDRs, or a port
    /// nobody claims; false for notes (a pod that waits, or has no port yet).
    pub mismatch: bool,
    /// For people.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = if self.mismatch { "MISMATCH" } else { "note" };
        write!(f, "{tag} Pod {}: {}", self.pod, self.message)
    }
}

struct Port {
    subnet: String,
    ips: Vec<IpAddr>,
}

/// The pod ports of ours in the Northbound, by `namespace/name`.
async fn pod_ports(db: &str) -> anyhow::Result<BTreeMap<String, Port>> {
    let (client, conn) = crate::connect::connect(db).await?;
    tokio::spawn(conn);
    let r = client
        .transact(
            "OVN_Northbound",
            &[Operation::Select {
                table: "Logical_Switch_Port".into(),
                conditions: vec![],
                columns: Some(vec!["addresses".into(), "external_ids".into()]),
            }],
        )
        .await?;
    let mut out = BTreeMap::new();
    let Some(OperationResult::Select(rows)) = r.first() else {
        return Ok(out);
    };
    for row in rows {
        let Some(ids) = row.get("external_ids") else {
            continue;
        };
        let Some(pod) = ids
            .get_str(crate::owner::OWNER_KEY)
            .and_then(|o| o.strip_prefix("Pod/"))
        else {
            continue;
        };
        let ips = row
            .get("addresses")
            .map(|a| {
                a.as_set()
                    .iter()
                    .filter_map(|x| x.as_str())
                    .flat_map(|s| s.split_whitespace().skip(1))
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            pod.to_string(),
            Port {
                subnet: ids.get_str(SUBNET_KEY).unwrap_or_default().to_string(),
                ips,
            },
        );
    }
    Ok(out)
}

fn show(ips: &[IpAddr]) -> String {
    let v: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    v.join(",")
}

/// Checks every pod of the manifests against its port in the NB at `db`.
pub async fn doctor(db: &str, files: &[PathBuf]) -> anyhow::Result<Vec<Finding>> {
    let m = manifest::load(files)?;
    let subnets: Vec<&crate::api::Subnet> = m
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Subnet(s) => Some(s),
            _ => None,
        })
        .collect();
    let cidrs: BTreeMap<String, Vec<IpNetwork>> = subnets
        .iter()
        .map(|s| {
            let nets = s.spec.cidrs.iter().filter_map(|c| c.parse().ok()).collect();
            (s.name_any(), nets)
        })
        .collect();
    let claims = Claims::new(subnets.iter().copied());
    let mut ports = pod_ports(db).await?;
    let mut out = Vec::new();
    let mut pods: Vec<_> = m.pods.iter().collect();
    pods.sort_by_key(|p| (p.namespace(), p.name_any()));
    for p in pods {
        let pod = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
        let port = ports.remove(&pod);
        let finding = |mismatch, message| Finding {
            pod: pod.clone(),
            mismatch,
            message,
        };
        match (claims.choose(p), port) {
            (Ok(subnet), Some(port)) if port.subnet != subnet => out.push(finding(
                true,
                format!(
                    "address {} is in subnet {}, but subnet {subnet} claims it",
                    show(&port.ips),
                    port.subnet
                ),
            )),
            (Ok(subnet), Some(port)) => {
                let nets = &cidrs[subnet];
                let outside: Vec<IpAddr> = port
                    .ips
                    .iter()
                    .copied()
                    .filter(|ip| !nets.iter().any(|n| n.contains(*ip)))
                    .collect();
                if !outside.is_empty() {
                    out.push(finding(
                        true,
                        format!("address {} is outside subnet {subnet}'s CIDRs", show(&outside)),
                    ));
                }
            }
            (Ok(subnet), None) => out.push(finding(
                false,
                format!("belongs to subnet {subnet} but has no port yet (not applied, or no address free)"),
            )),
            (Err(why), Some(port)) => out.push(finding(
                true,
                format!(
                    "has address {} in subnet {}, but should wait: {why}",
                    show(&port.ips),
                    port.subnet
                ),
            )),
            (Err(why), None) => out.push(finding(false, format!("waits: {why}"))),
        }
    }
    for (pod, port) in ports {
        out.push(Finding {
            pod,
            mismatch: true,
            message: format!(
                "has a port ({} in subnet {}) but is not in the manifests (apply --prune removes it)",
                show(&port.ips),
                port.subnet
            ),
        });
    }
    Ok(out)
}
