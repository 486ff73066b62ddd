//! A chassis' own settings in its local Open_vSwitch database: what `ovs-vsctl set open .
//! external_ids:ovn-remote=… ovn-encap-type=… ovn-encap-ip=… ovn-bridge-mappings=… system-id=…`
//! does, through our OVSDB client (shared/DESIGN.md: the product never shells out to
//! ovs-vsctl). ovn-controller reads these keys and reacts to changes: it (re)connects to the
//! Southbound database, registers the chassis and its encapsulation, and creates the patch ports
//! of each bridge mapping.

use ovsdb::{Datum, Operation, OperationResult};

/// `external_ids` keys of the `Open_vSwitch` row this module owns.
pub const KEYS: &[&str] = &[
    "system-id",
    "ovn-remote",
    "ovn-encap-type",
    "ovn-encap-ip",
    "ovn-bridge-mappings",
];

/// What a chassis is told about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisConfig {
    /// `system-id`: the chassis name in the Southbound database.
    pub system_id: String,
    /// `ovn-remote`: the Southbound remote(s), as OVN writes them (`tcp:a:6642,tcp:b:6642`).
    pub ovn_remote: String,
    /// `ovn-encap-type`: `geneve` (or `vxlan`, `stt`; comma-separated for several).
    pub encap_type: String,
    /// `ovn-encap-ip`: the tunnel endpoint address of this chassis.
    pub encap_ip: String,
    /// `ovn-bridge-mappings`: physical network name → bridge (`physnet:br-ex`). Empty removes
    /// the key.
    pub bridge_mappings: Vec<(String, String)>,
}

impl ChassisConfig {
    /// `ovn-bridge-mappings` as OVN spells it: `net1:br1,net2:br2`.
    pub fn bridge_mappings_value(&self) -> String {
        self.bridge_mappings
            .iter()
            .map(|(net, br)| format!("{net}:{br}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `external_ids` pairs this configuration sets.
    pub fn external_ids(&self) -> Vec<(String, String)> {
        let mut ids = vec![
            ("system-id".to_string(), self.system_id.clone()),
            ("ovn-remote".to_string(), self.ovn_remote.clone()),
            ("ovn-encap-type".to_string(), self.encap_type.clone()),
            ("ovn-encap-ip".to_string(), self.encap_ip.clone()),
        ];
        if !self.bridge_mappings.is_empty() {
            ids.push((
                "ovn-bridge-mappings".to_string(),
                self.bridge_mappings_value(),
            ));
        }
        ids
    }
}

/// Why the chassis could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ChassisError {
    /// Talking to the Open_vSwitch database failed.
    #[error("Open_vSwitch database at {remote}: {source}")]
    Ovsdb {
        /// The remote.
        remote: String,
        /// The client's error.
        #[source]
        source: ovsdb::Error,
    },
    /// The database has no `Open_vSwitch` row yet (`ovs-vsctl init` or the ovs-vswitchd
    /// start-up script creates it).
    #[error("the Open_vSwitch database at {0} has no Open_vSwitch row (not initialized)")]
    NotInitialized(String),
}

/// The one transaction that sets the configuration: our keys are deleted and set again in the
/// same transaction (an OVSDB map `insert` does not replace an existing key), every other key of
/// `external_ids` is left alone. A pure function, so its shape is unit-tested.
pub fn operations(cfg: &ChassisConfig) -> Vec<Operation> {
    vec![
        Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![ovsdb::Mutation::delete(
                "external_ids",
                Datum::set(KEYS.iter().map(|k| k.to_string())),
            )],
        },
        Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![ovsdb::Mutation::insert(
                "external_ids",
                Datum::map(cfg.external_ids()),
            )],
        },
    ]
}

/// Writes `cfg` into the `Open_vSwitch` row of the database at `ovs_remote` (e.g.
/// `unix:/run/openvswitch/db.sock`) in one transaction. Equivalent to
/// `ovs-vsctl set open . external_ids:system-id=… external_ids:ovn-remote=…
/// external_ids:ovn-encap-type=… external_ids:ovn-encap-ip=… external_ids:ovn-bridge-mappings=…`
/// (and `remove open . external_ids ovn-bridge-mappings` when there are no mappings).
///
/// ```no_run
/// use ovn_vpc::node::chassis::{configure, ChassisConfig};
/// # async fn f() -> Result<(), ovn_vpc::node::chassis::ChassisError> {
/// configure(
///     "unix:/run/openvswitch/db.sock",
///     &ChassisConfig {
///         system_id: "node-1".into(),
///         ovn_remote: "tcp:10.0.0.1:6642".into(),
///         encap_type: "geneve".into(),
///         encap_ip: "10.0.0.11".into(),
///         bridge_mappings: vec![("physnet".into(), "br-ex".into())],
///     },
/// )
/// .await
/// # }
/// ```
pub async fn configure(ovs_remote: &str, cfg: &ChassisConfig) -> Result<(), ChassisError> {
    let err = |source| ChassisError::Ovsdb {
        remote: ovs_remote.to_string(),
        source,
    };
    let (client, conn) = ovsdb::connect(ovs_remote).await.map_err(err)?;
    let driver = tokio::spawn(conn);
    let result = client.transact("Open_vSwitch", &operations(cfg)).await;
    driver.abort();
    let results = result.map_err(err)?;
    match results.last() {
        Some(OperationResult::Count(0)) | None => {
            Err(ChassisError::NotInitialized(ovs_remote.to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mappings: &[(&str, &str)]) -> ChassisConfig {
        ChassisConfig {
            system_id: "ch0".into(),
            ovn_remote: "tcp:127.0.0.1:6642".into(),
            encap_type: "geneve".into(),
            encap_ip: "192.0.2.10".into(),
            bridge_mappings: mappings
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn mappings_are_written_as_ovn_spells_them() {
        let c = cfg(&[("physnet", "br-ex"), ("storage", "br-st")]);
        assert_eq!(c.bridge_mappings_value(), "physnet:br-ex,storage:br-st");
        assert!(c.external_ids().contains(&(
            "ovn-bridge-mappings".into(),
            "physnet:br-ex,storage:br-st".into()
        )));
    }

    #[test]
    fn our_keys_are_deleted_then_set_and_no_mappings_means_no_key() {
        let ops = operations(&cfg(&[]));
        assert_eq!(ops.len(), 2);
        let Operation::Mutate { mutations, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!(mutations[0].mutator, ovsdb::Mutator::Delete);
        assert_eq!(mutations[0].value.len(), KEYS.len());
        let Operation::Mutate { mutations, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert_eq!(mutations[0].mutator, ovsdb::Mutator::Insert);
        assert_eq!(mutations[0].value.get_str("system-id"), Some("ch0"));
        assert_eq!(mutations[0].value.get_str("ovn-bridge-mappings"), None);
    }
}
