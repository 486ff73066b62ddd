//! The host end as a port of br-int, through our OVSDB client on the local Open_vSwitch
//! database: what `ovs-vsctl add-port br-int DEV -- set Interface DEV
//! external_ids:iface-id=LPORT` and `ovs-vsctl --if-exists del-port DEV` do, and the wait for
//! ovn-controller's `external_ids:ovn-installed=true` on the Interface.

use std::time::{Duration, Instant};

use ovsdb::{Atom, Client, Condition, Datum, Mutation, Operation, OperationResult, Row};

use super::spec::{CniError, ErrorCode};

const DB: &str = "Open_vSwitch";

/// `external_ids` key on our Port and Interface rows: the container they belong to.
pub const CONTAINER_KEY: &str = "ovn-vpc/container-id";

/// A connection to the local Open_vSwitch database.
pub struct Ovs {
    client: Client,
    driver: tokio::task::JoinHandle<Result<(), ovsdb::Error>>,
    remote: String,
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn io(remote: &str) -> impl Fn(ovsdb::Error) -> CniError + '_ {
    move |e| {
        CniError::new(
            ErrorCode::Io,
            "Open_vSwitch database",
            format!("{remote}: {e}"),
        )
    }
}

fn select(table: &str, conditions: Vec<Condition>, columns: &[&str]) -> Operation {
    Operation::Select {
        table: table.into(),
        conditions,
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    }
}

fn first_rows(r: Vec<OperationResult>) -> Vec<Row> {
    match r.into_iter().next() {
        Some(OperationResult::Select(rows)) => rows,
        _ => Vec::new(),
    }
}

fn uuid_of(row: &Row) -> Option<ovsdb::Uuid> {
    row.get("_uuid")
        .and_then(Datum::as_atom)
        .and_then(Atom::as_uuid)
}

/// What the port should carry.
#[derive(Debug, Clone)]
pub struct PortSpec<'a> {
    /// The integration bridge.
    pub bridge: &'a str,
    /// The host end of the veth.
    pub name: &'a str,
    /// The logical switch port (`iface-id`).
    pub iface_id: &'a str,
    /// The pod's MAC (`attached-mac`).
    pub mac: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
}

impl Ovs {
    /// Connects to `remote`.
    pub async fn connect(remote: &str) -> Result<Ovs, CniError> {
        let (client, conn) = ovsdb::connect(remote).await.map_err(io(remote))?;
        Ok(Ovs {
            client,
            driver: tokio::spawn(conn),
            remote: remote.to_string(),
        })
    }

    async fn transact(&self, ops: &[Operation]) -> Result<Vec<OperationResult>, CniError> {
        self.client
            .transact(DB, ops)
            .await
            .map_err(io(&self.remote))
    }

    /// The bridge's `datapath_type` (`netdev`, `system` or empty), `None` without the bridge.
    pub async fn datapath_type(&self, bridge: &str) -> Result<Option<String>, CniError> {
        let rows = first_rows(
            self.transact(&[select(
                "Bridge",
                vec![Condition::eq("name", bridge)],
                &["datapath_type"],
            )])
            .await?,
        );
        Ok(rows.first().map(|r| {
            r.get("datapath_type")
                .and_then(Datum::as_atom)
                .and_then(Atom::as_str)
                .unwrap_or_default()
                .to_string()
        }))
    }

    /// Removes the port named `name` from whatever bridge holds it (Port and Interface rows go
    /// with it: they are not root rows). `false` when there was none. Equivalent to `ovs-vsctl
    /// --if-exists del-port NAME`.
    pub async fn del_port(&self, name: &str) -> Result<bool, CniError> {
        let ports = first_rows(
            self.transact(&[select(
                "Port",
                vec![Condition::eq("name", name)],
                &["_uuid"],
            )])
            .await?,
        );
        let uuids: Vec<ovsdb::Uuid> = ports.iter().filter_map(uuid_of).collect();
        if uuids.is_empty() {
            return Ok(false);
        }
        let refs = Datum::set(uuids.iter().copied().map(Atom::Uuid));
        self.transact(&[Operation::Mutate {
            table: "Bridge".into(),
            conditions: vec![Condition::includes("ports", refs.clone())],
            mutations: vec![Mutation::delete("ports", refs)],
        }])
        .await?;
        Ok(true)
    }

    /// Adds the port (replacing one of the same name: a retried ADD) in one transaction.
    pub async fn add_port(&self, p: &PortSpec<'_>) -> Result<(), CniError> {
        self.del_port(p.name).await?;
        let ids = Datum::map([
            ("iface-id", p.iface_id),
            ("attached-mac", p.mac),
            ("iface-status", "active"),
            (CONTAINER_KEY, p.container_id),
        ]);
        let mut iface = Row::new();
        iface.insert("name".into(), Datum::atom(p.name));
        iface.insert("external_ids".into(), ids);
        let mut port = Row::new();
        port.insert("name".into(), Datum::atom(p.name));
        port.insert(
            "interfaces".into(),
            Datum::atom(Atom::NamedUuid("iface".into())),
        );
        port.insert(
            "external_ids".into(),
            Datum::map([(CONTAINER_KEY, p.container_id)]),
        );
        let r = self
            .transact(&[
                Operation::Insert {
                    table: "Interface".into(),
                    row: iface,
                    uuid_name: Some("iface".into()),
                },
                Operation::Insert {
                    table: "Port".into(),
                    row: port,
                    uuid_name: Some("port".into()),
                },
                Operation::Mutate {
                    table: "Bridge".into(),
                    conditions: vec![Condition::eq("name", p.bridge)],
                    mutations: vec![Mutation::insert(
                        "ports",
                        Datum::atom(Atom::NamedUuid("port".into())),
                    )],
                },
            ])
            .await?;
        if matches!(r.get(2), Some(OperationResult::Count(0))) {
            // Nothing refers to the new rows: the server drops them with the transaction's
            // garbage collection, so there is nothing to undo.
            return Err(CniError::new(
                ErrorCode::Datapath,
                "no integration bridge",
                format!("bridge {} does not exist in {}", p.bridge, self.remote),
            ));
        }
        Ok(())
    }

    /// The Interface's `external_ids`, `ofport` and `error`, `None` without it.
    pub async fn interface(&self, name: &str) -> Result<Option<Row>, CniError> {
        Ok(first_rows(
            self.transact(&[select(
                "Interface",
                vec![Condition::eq("name", name)],
                &["external_ids", "ofport", "error"],
            )])
            .await?,
        )
        .into_iter()
        .next())
    }

    /// Polls until ovn-controller has set `external_ids:ovn-installed=true` on the Interface
    /// (it does so once the port's flows are in br-int). A vswitchd error on the Interface
    /// (e.g. the device is not in its namespace) is reported in the timeout message.
    pub async fn wait_installed(&self, name: &str, timeout: Duration) -> Result<(), CniError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last;
            if let Some(row) = self.interface(name).await? {
                let installed = row
                    .get("external_ids")
                    .and_then(|d| d.get_str("ovn-installed"))
                    == Some("true");
                if installed {
                    return Ok(());
                }
                last = row
                    .get("error")
                    .and_then(|d| d.as_set().first())
                    .and_then(Atom::as_str)
                    .map(|e| format!("; ovs-vswitchd reports: {e}"))
                    .unwrap_or_default();
            } else {
                last = "; the Interface row is gone".into();
            }
            if Instant::now() >= deadline {
                return Err(CniError::new(
                    ErrorCode::Datapath,
                    "ovn-controller did not install the port",
                    format!(
                        "no external_ids:ovn-installed=true on Interface {name} after {timeout:?}{last}"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
