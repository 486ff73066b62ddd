//! `ovn-vpc apply -f` / `plan -f`: the reconcile engine fed from manifest files, no cluster.
//! The NB itself stores the allocations (our pod ports carry their addresses), so a re-apply
//! keeps every address and `plan` after `apply` shows nothing. Rows of objects missing from the
//! manifests are removed only with `--prune`.

use std::path::PathBuf;
use std::time::Duration;

use ovn_nb::diff::{diff, Scope};
use ovsdb::{MonitorRequest, MonitorRequests, Operation, Session, SessionOptions};

use crate::api::{validate, validate_pods};
use crate::manifest;
use crate::translate::{existing_allocations, managed_columns, translate, Status, MANAGED_TABLES};

/// What a reconcile would do (or did).
#[derive(Debug)]
pub struct Reconcile {
    /// The operations of the one transaction.
    pub operations: Vec<Operation>,
    /// Per-object outcome.
    pub statuses: Vec<Status>,
    /// Documents skipped as not ours.
    pub skipped: Vec<String>,
}

/// Reads, validates and translates the manifests, and diffs against the NB at `db`.
pub async fn plan(
    db: &str,
    sb: Option<&str>,
    files: &[PathBuf],
    prune: bool,
) -> anyhow::Result<Reconcile> {
    Ok(reconcile(db, sb, files, prune).await?.0)
}

/// [`plan`], then commits the operations in one transaction; returns what was done. Nothing
/// is written when nothing changed.
pub async fn apply(
    db: &str,
    sb: Option<&str>,
    files: &[PathBuf],
    prune: bool,
) -> anyhow::Result<Reconcile> {
    let (r, session) = reconcile(db, sb, files, prune).await?;
    if !r.operations.is_empty() {
        let client = session.client(Duration::from_secs(30)).await?;
        client.transact("OVN_Northbound", &r.operations).await?;
    }
    Ok(r)
}

async fn reconcile(
    db: &str,
    sb: Option<&str>,
    files: &[PathBuf],
    prune: bool,
) -> anyhow::Result<(Reconcile, Session)> {
    let started = std::time::Instant::now();
    // The server builds the replica's initial reply while the manifests are parsed.
    let session = start_session(db, MANAGED_TABLES, managed_columns)?;
    let paths = files.to_vec();
    let m = tokio::task::spawn_blocking(move || manifest::load(&paths)).await??;
    tracing::debug!(elapsed = ?started.elapsed(), objects = m.objects.len(), pods = m.pods.len(), "manifests loaded");
    let mut errors = validate(&m.objects);
    errors.extend(validate_pods(&m.objects, &m.pods));
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::bail!("invalid manifests, nothing applied:\n{}", list.join("\n"));
    }
    let chassis = gateway_chassis(&m.nodes, sb).await?;
    session.client(Duration::from_secs(30)).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "replica synced");
    let r = {
        let replica = session.replica();
        let replica = replica
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the Northbound replica did not sync"))?;
        let mut existing = existing_allocations(replica);
        // IP objects in the manifests (say, exported from a cluster) seed the allocations
        // of pods the NB does not know yet; what the NB holds wins.
        for ip in &m.ips {
            let s = &ip.spec;
            existing
                .entry(s.owner.clone())
                .or_insert_with(|| crate::translate::Allocation {
                    subnet: s.subnet.clone(),
                    mac: s.mac.clone(),
                    ips: s.ips.iter().filter_map(|a| a.parse().ok()).collect(),
                });
        }
        let t = translate(&m.objects, &m.pods, &existing, &chassis);
        tracing::debug!(elapsed = ?started.elapsed(), rows = t.desired.len(), "translated");
        let scope = if prune {
            Scope::All
        } else {
            Scope::Owners(t.owners.clone())
        };
        let operations = diff(MANAGED_TABLES, &t.desired, replica, &scope)?;
        tracing::debug!(elapsed = ?started.elapsed(), operations = operations.len(), "diffed");
        Reconcile {
            operations,
            statuses: t.statuses,
            skipped: m.skipped,
        }
    };
    Ok((r, session))
}

/// A session on the Northbound at `db` whose replica will hold `tables` (only the columns
/// `columns` names for a table, all when it says `None`); wait with `client()` for the sync.
fn start_session(
    db: &str,
    tables: &[&str],
    columns: fn(&str) -> Option<&'static [&'static str]>,
) -> anyhow::Result<Session> {
    let mut requests = MonitorRequests::new();
    for t in tables {
        let request = match columns(t) {
            Some(c) => MonitorRequest::new().columns(c.iter().copied()),
            None => MonitorRequest::new(),
        };
        requests.add(*t, request);
    }
    Ok(Session::start(
        db,
        SessionOptions::new("OVN_Northbound").monitor(requests),
    )?)
}

/// Every table of the server's Northbound schema whose rows can carry our owner tag (an
/// `external_ids` column): the server's own schema, so a newer OVN's tables are covered too.
async fn owned_tables(db: &str) -> anyhow::Result<Vec<String>> {
    let (client, conn) = ovsdb::connect(db).await?;
    tokio::spawn(conn);
    let schema = client.get_schema("OVN_Northbound").await?;
    Ok(schema
        .tables
        .values()
        .filter(|t| t.columns.contains_key("external_ids"))
        .map(|t| t.name.clone())
        .collect())
}

/// `ovn-vpc uninstall`: the operations deleting every Northbound row of ours (rows tagged
/// `external_ids:ovn-vpc/owner`), in every table that can hold one; foreign rows are never
/// touched (each delete is guarded by the owner tag). Committed in one transaction unless
/// `dry_run`. Running it again finds nothing.
pub async fn uninstall(db: &str, dry_run: bool) -> anyhow::Result<Vec<Operation>> {
    let owned = owned_tables(db).await?;
    let tables: Vec<&str> = owned.iter().map(String::as_str).collect();
    let session = start_session(db, &tables, |_| Some(&["external_ids"]))?;
    session.client(Duration::from_secs(30)).await?;
    let operations = {
        let replica = session.replica();
        let replica = replica
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the Northbound replica did not sync"))?;
        diff(&tables, &[], replica, &Scope::All)?
    };
    if !dry_run && !operations.is_empty() {
        let client = session.client(Duration::from_secs(30)).await?;
        client.transact("OVN_Northbound", &operations).await?;
    }
    Ok(operations)
}

/// Label marking a gateway node.
pub const GATEWAY_LABEL: &str = "ovnvpc.io/gateway";
/// Annotation naming a node's chassis (default: the node name).
pub const CHASSIS_ANNOTATION: &str = "ovnvpc.io/chassis";

/// Where VPC NAT happens: the Nodes labelled `ovnvpc.io/gateway: "true"` (chassis from the
/// annotation `ovnvpc.io/chassis`, else the node name), in name order; when none is labelled,
/// every chassis registered in the Southbound database (when `sb` is given).
pub async fn gateway_chassis(
    nodes: &[k8s_openapi::api::core::v1::Node],
    sb: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    use kube::ResourceExt;
    let mut labelled: Vec<String> = nodes
        .iter()
        .filter(|n| n.labels().get(GATEWAY_LABEL).is_some_and(|v| v == "true"))
        .map(|n| {
            n.annotations()
                .get(CHASSIS_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| n.name_any())
        })
        .collect();
    labelled.sort();
    if !labelled.is_empty() {
        return Ok(labelled);
    }
    let Some(sb) = sb else { return Ok(Vec::new()) };
    let (client, conn) = ovsdb::connect(sb).await?;
    tokio::spawn(conn);
    let r = client
        .transact(
            "OVN_Southbound",
            &[Operation::Select {
                table: "Chassis".into(),
                conditions: vec![],
                columns: Some(vec!["name".into()]),
            }],
        )
        .await?;
    let mut names: Vec<String> = match r.first() {
        Some(ovsdb::OperationResult::Select(rows)) => rows
            .iter()
            .filter_map(|row| {
                row.get("name")
                    .and_then(|d| d.as_atom())
                    .and_then(|a| a.as_str())
                    .map(str::to_string)
            })
            .collect(),
        _ => Vec::new(),
    };
    names.sort();
    Ok(names)
}

/// One line per operation, for `plan` output.
pub fn describe(op: &Operation) -> Option<String> {
    let name = |row: &ovsdb::Row| {
        row.get("name")
            .and_then(|d| d.as_atom())
            .and_then(|a| a.as_str())
            .map(str::to_string)
            .or_else(|| {
                row.get("external_ids")
                    .and_then(|d| d.get_str(ovn_nb::diff::KEY_KEY))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    match op {
        Operation::Insert { table, row, .. } => Some(format!("+ {table} {}", name(row))),
        Operation::Update {
            table,
            conditions,
            row,
        } => {
            let cols: Vec<&str> = row.keys().map(String::as_str).collect();
            let target = conditions
                .first()
                .map(|c| c.value.to_string())
                .unwrap_or_default();
            Some(format!("~ {table} {target} [{}]", cols.join(", ")))
        }
        Operation::Delete { table, conditions } => {
            let target = conditions
                .first()
                .map(|c| c.value.to_string())
                .unwrap_or_default();
            Some(format!("- {table} {target}"))
        }
        _ => None, // guards
    }
}
