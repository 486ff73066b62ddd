//! `ovn-vpc apply -f` / `plan -f`: the reconcile engine fed from manifest files, no cluster.
//! The NB itself stores the allocations (our pod ports carry their addresses), so a re-apply
//! keeps every address and `plan` after `apply` shows nothing. Rows of objects missing from the
//! manifests are removed only with `--prune`.

use std::path::PathBuf;
use std::time::Duration;

use ovn_nb::diff::{plan as diff_plan, Scope};
use ovn_nb::effects::{effects, pinned, Effects, RowInfo};
use ovsdb::{MonitorRequest, MonitorRequests, Mutation, Operation, Replica, Session};

use crate::api::{validate, validate_pods};
use crate::manifest;
use crate::translate::{
    existing_allocations, monitor_requests, translate, Absent, Status, MANAGED_TABLES,
};

/// How `apply` / `plan` treat what the manifests do not hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Remove rows of ours whose objects are not in the manifests (otherwise nothing of an
    /// absent object changes: its rows, its addresses).
    pub prune: bool,
    /// Allow `prune` with manifests that hold no object at all (which removes everything of
    /// ours).
    pub force: bool,
}

impl ApplyOptions {
    /// Without `--prune`.
    pub fn merge() -> ApplyOptions {
        ApplyOptions::default()
    }

    /// With `--prune`.
    pub fn prune() -> ApplyOptions {
        ApplyOptions {
            prune: true,
            force: false,
        }
    }
}

/// What a reconcile would do (or did).
#[derive(Debug)]
pub struct Reconcile {
    /// The operations of the one transaction.
    pub operations: Vec<Operation>,
    /// One line per change, for people: every row inserted, changed or removed (named, with
    /// its owner), and every row the server will collect as a consequence.
    pub changes: Vec<String>,
    /// Per-object outcome.
    pub statuses: Vec<Status>,
    /// Documents skipped as not ours.
    pub skipped: Vec<String>,
    /// How many transactions lost a race with another writer (and were planned again).
    pub raced: usize,
    /// How many transactions lost their reply (the connection went, or the deadline passed)
    /// and were checked on a fresh replica: when the last is non-zero and the call
    /// succeeded, the Northbound was seen to hold the change.
    pub reply_lost: usize,
}

/// Reads, validates and translates the manifests, and diffs against the NB at `db`.
pub async fn plan(
    db: &str,
    sb: Option<&str>,
    files: &[PathBuf],
    opts: ApplyOptions,
) -> anyhow::Result<Reconcile> {
    Prepared::load(db, sb, files, opts).await?.plan()
}

/// How many times `apply` makes its plan again after another writer changed the Northbound
/// under it.
const ATTEMPTS: usize = 5;

/// [`plan`], then commits the operations in one transaction; returns what was done. Nothing
/// is written when nothing changed. See [`Prepared::apply_planned`] for races.
pub async fn apply(
    db: &str,
    sb: Option<&str>,
    files: &[PathBuf],
    opts: ApplyOptions,
) -> anyhow::Result<Reconcile> {
    let p = Prepared::load(db, sb, files, opts).await?;
    let r = p.plan()?;
    p.apply_planned(r).await
}

/// The manifests, validated, with a Northbound session whose replica is synced: what `plan`
/// and `apply` work from.
pub struct Prepared {
    session: Session,
    /// How long to wait for the Northbound again after a lost reply.
    reconnect: Duration,
    m: manifest::Manifests,
    chassis: Vec<String>,
    opts: ApplyOptions,
}

impl Prepared {
    /// Reads and validates the manifests (an error names each invalid object and field, and
    /// nothing is applied) and syncs a replica of the Northbound at `db`.
    pub async fn load(
        db: &str,
        sb: Option<&str>,
        files: &[PathBuf],
        opts: ApplyOptions,
    ) -> anyhow::Result<Prepared> {
        let started = std::time::Instant::now();
        // The server builds the replica's initial reply while the manifests are parsed.
        let session = Session::start(
            db,
            crate::connect::session_options("OVN_Northbound").monitor(monitor_requests()),
        )?;
        let paths = files.to_vec();
        let m = tokio::task::spawn_blocking(move || manifest::load(&paths)).await??;
        tracing::debug!(elapsed = ?started.elapsed(), objects = m.objects.len(), pods = m.pods.len(), "manifests loaded");
        let mut errors = validate(&m.objects);
        errors.extend(validate_pods(&m.objects, &m.pods));
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            anyhow::bail!("invalid manifests, nothing applied:\n{}", list.join("\n"));
        }
        if opts.prune && !opts.force && m.objects.is_empty() && m.pods.is_empty() {
            anyhow::bail!(
                "--prune with manifests that hold no object would remove every row of ovn-vpc's; nothing applied (add --force if that is what you want, or use `ovn-vpc uninstall`)"
            );
        }
        let chassis = gateway_chassis(&m.nodes, sb).await?;
        session.client(crate::connect::session_timeout()).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "replica synced");
        Ok(Prepared {
            session,
            reconnect: crate::connect::session_timeout(),
            m,
            chassis,
            opts,
        })
    }

    /// What applying would do now, from the replica as it is.
    pub fn plan(&self) -> anyhow::Result<Reconcile> {
        let replica = self.session.replica();
        let replica = replica
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the Northbound replica did not sync"))?;
        self.reconcile(replica)
    }

    /// Commits `r` (a [`Prepared::plan`] of this input) in one transaction. When the
    /// transaction loses a race with another writer (a guard finds a row the plan did not
    /// know, or the commit finds a reference or index changed), nothing of it was applied:
    /// the plan is made again from the replica, which by then shows the other writer's
    /// change, and sent again, up to a few times; `raced` counts those.
    pub async fn apply_planned(&self, mut r: Reconcile) -> anyhow::Result<Reconcile> {
        let mut raced = 0;
        let mut lost = 0;
        loop {
            if r.operations.is_empty() {
                return Ok(Reconcile {
                    raced,
                    reply_lost: lost,
                    ..r
                });
            }
            let mut changes = self.session.subscribe();
            let client = self
                .session
                .client(crate::connect::session_timeout())
                .await?;
            // ovsdb-server says nothing while it executes a transaction: a large one gets
            // longer than the per-request deadline (0.5 ms per operation beyond it; the server
            // commits well over 2,000 operations a second on these machines).
            let extra = Duration::from_micros(500 * r.operations.len() as u64);
            let client = client.with_request_timeout(client.request_timeout().map(|t| t + extra));
            match client.transact("OVN_Northbound", &r.operations).await {
                Ok(_) => {
                    return Ok(Reconcile {
                        raced,
                        reply_lost: lost,
                        ..r
                    })
                }
                Err(e) if lost_race(&e, &r.operations) => {
                    raced += 1;
                    if raced >= ATTEMPTS {
                        anyhow::bail!(
                            "another writer kept changing the Northbound under us: {raced} attempts failed, the last with: {e}; nothing of the last attempt was applied"
                        );
                    }
                    tracing::warn!(error = %e, raced, "another writer changed the Northbound; planning again");
                    // The other writer's change reaches the replica by the monitor.
                    let _ = tokio::time::timeout(Duration::from_secs(2), changes.recv()).await;
                    r = self.plan()?;
                }
                Err(e) if outcome_unknown(&e) => {
                    // The transaction may or may not have committed: find out from a fresh
                    // replica (the session reconnects, to the leader of a cluster).
                    lost += 1;
                    tracing::warn!(error = %e, "the reply to our transaction was lost; reconnecting to find out whether it committed");
                    if let Err(again) = self.session.client(self.reconnect).await {
                        anyhow::bail!(
                            "outcome unknown: the reply to the transaction was lost ({e}), and the Northbound could not be read again to find out ({again}); run `ovn-vpc plan` with the same manifests once it is reachable: no changes means it committed"
                        );
                    }
                    let again = self.plan()?;
                    if again.operations.is_empty() {
                        tracing::info!("the Northbound shows the transaction committed");
                        return Ok(Reconcile {
                            raced,
                            reply_lost: lost,
                            ..r
                        });
                    }
                    if lost >= ATTEMPTS {
                        anyhow::bail!(
                            "the Northbound kept failing under us: {lost} transactions lost their reply, the last with: {e}; after it the Northbound still differs from the manifests ({} change(s)): that one did not commit, or another writer changed it since",
                            again.changes.len()
                        );
                    }
                    r = again;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Whether the reply to a transaction that was (maybe) sent is missing, so that it may or may
/// not have committed.
fn outcome_unknown(e: &ovsdb::Error) -> bool {
    // A deadline that passed leaves the connection up but the outcome just as unknown.
    e.is_outcome_unknown() || e.is_connection_lost()
}

/// Whether a failed transaction lost a race with another writer: a guard (`wait`) found a
/// row of ours that the replica did not show yet, or the commit found a reference or an
/// index that changed since the plan was made. Nothing of it was applied.
fn lost_race(e: &ovsdb::Error, ops: &[Operation]) -> bool {
    use ovsdb::ErrorKind;
    let ovsdb::Error::Transact(t) = e else {
        return false;
    };
    match ops.get(t.index) {
        Some(Operation::Wait { .. }) => true,
        Some(_) => false,
        None => matches!(
            t.error.kind,
            ErrorKind::ReferentialIntegrityViolation | ErrorKind::ConstraintViolation
        ),
    }
}

impl Prepared {
    /// Translate and diff against `replica`.
    fn reconcile(&self, replica: &Replica) -> anyhow::Result<Reconcile> {
        let m = &self.m;
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
        let (absent, scope) = if self.opts.prune {
            (Absent::Release, None)
        } else {
            (Absent::Keep, Some(()))
        };
        let t = translate(&m.objects, &m.pods, &existing, &self.chassis, absent);
        let scope = match scope {
            None => Scope::All,
            Some(()) => Scope::Owners(t.owners.clone()),
        };
        let p = diff_plan(
            &crate::owner::IDENTITY,
            MANAGED_TABLES,
            &t.desired,
            replica,
            &scope,
        )?;
        // Kept typed, so a caller can tell a refusal to touch foreign rows from a failure.
        p.check()?;
        Ok(Reconcile {
            changes: describe_all(&p.operations, &p.effects, replica),
            operations: p.operations,
            statuses: t.statuses,
            skipped: m.skipped.clone(),
            raced: 0,
            reply_lost: 0,
        })
    }
}

/// Every table of the server's Northbound schema whose rows can carry our owner tag (an
/// `external_ids` column), with their strong reference columns: the server's own schema, so
/// a newer OVN's tables are covered too.
async fn owned_tables(db: &str) -> anyhow::Result<MonitorRequests> {
    let (client, conn) = crate::connect::connect(db).await?;
    tokio::spawn(conn);
    let schema = client.get_schema("OVN_Northbound").await?;
    let mut requests = MonitorRequests::new();
    for t in schema.tables.values() {
        let mut columns = ovn_nb::effects::child_columns(&schema, &t.name);
        if t.columns.contains_key("external_ids") {
            columns.push("external_ids");
        }
        if t.columns.contains_key("name") {
            columns.push("name");
        }
        if !columns.is_empty() {
            requests.add(&t.name, MonitorRequest::new().columns(columns));
        }
    }
    Ok(requests)
}

/// What `uninstall` did or would do.
#[derive(Debug)]
pub struct Uninstall {
    /// The operations of the one transaction.
    pub operations: Vec<Operation>,
    /// One line per row removed (named), and per row the server collects with them.
    pub changes: Vec<String>,
    /// Rows that are not ours and would go too: foreign children of rows of ours (the server
    /// collects them), and foreign rows whose references to rows of ours are removed.
    pub foreign: Vec<String>,
}

/// `ovn-vpc uninstall`: the operations deleting every Northbound row of ours (rows tagged
/// `external_ids:ovn-vpc/owner`), in every table that can hold one; foreign rows are never
/// deleted by an operation (each delete is guarded by the owner tag). When rows of ours hold
/// foreign children (which the server would collect with them), or foreign rows reference
/// rows of ours, it refuses and lists them unless `force`; with `force` the references of
/// foreign rows to ours are removed and the collected rows are reported. Committed in one
/// transaction unless `dry_run`. Running it again finds nothing.
pub async fn uninstall(db: &str, dry_run: bool, force: bool) -> anyhow::Result<Uninstall> {
    let requests = owned_tables(db).await?;
    let tables: Vec<String> = requests.iter().map(|(t, _)| t.to_string()).collect();
    let session = Session::start(
        db,
        crate::connect::session_options("OVN_Northbound").monitor(requests),
    )?;
    session.client(crate::connect::session_timeout()).await?;
    let (operations, changes, foreign) = {
        let replica = session.replica();
        let replica = replica
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the Northbound replica did not sync"))?;
        let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
        let p = diff_plan(&crate::owner::IDENTITY, &tables, &[], replica, &Scope::All)?;
        let mut operations = p.operations;
        let mut foreign: Vec<String> = p
            .effects
            .foreign_collected()
            .map(|r| format!("{r}: a child of a row of ours, ovsdb-server deletes it with it"))
            .collect();
        let mut unref = Vec::new();
        for b in p.effects.blocked.iter().filter(|b| !b.by.is_ours()) {
            foreign.push(format!("{b}: the reference is removed"));
            unref.push(Operation::Mutate {
                table: b.by.table.clone(),
                conditions: vec![ovsdb::Condition::uuid(b.by.uuid)],
                mutations: vec![Mutation::delete(
                    &b.column,
                    ovsdb::Datum::set([ovsdb::Atom::Uuid(b.row.uuid)]),
                )],
            });
        }
        if !foreign.is_empty() && !force && !dry_run {
            anyhow::bail!(
                "refusing to uninstall, nothing was removed: rows that are not ovn-vpc's would change:\n  {}\nremove or move them first, or rerun with --force",
                foreign.join("\n  ")
            );
        }
        // References from foreign rows go before the deletes of what they reference.
        let at = operations
            .iter()
            .position(|o| matches!(o, Operation::Delete { .. }))
            .unwrap_or(operations.len());
        operations.splice(at..at, unref);
        let fx = effects(&crate::owner::IDENTITY, replica, &operations);
        (
            operations.clone(),
            describe_all(&operations, &fx, replica),
            foreign,
        )
    };
    if !dry_run && !operations.is_empty() {
        let client = session.client(crate::connect::session_timeout()).await?;
        client.transact("OVN_Northbound", &operations).await?;
    }
    Ok(Uninstall {
        operations,
        changes,
        foreign,
    })
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
    let (client, conn) = crate::connect::connect(sb).await?;
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

fn label(replica: &Replica, table: &str, uuid: ovsdb::Uuid) -> String {
    RowInfo::read(&crate::owner::IDENTITY, replica, table, uuid).label()
}

/// One line per change, for `plan`, `apply` and `uninstall` output: `+` a row inserted, `~`
/// a row changed (its columns; `+n`/`-n` members of a reference set), `-` a row deleted,
/// and `- … collected` a row no operation names that the server deletes as a consequence.
pub fn describe_all(ops: &[Operation], fx: &Effects, replica: &Replica) -> Vec<String> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Operation::Insert { table, row, .. } => {
                let ids = row.get("external_ids");
                let name = row
                    .get("name")
                    .and_then(|d| d.as_atom())
                    .and_then(|a| a.as_str())
                    .filter(|n| !n.is_empty())
                    .or_else(|| ids.and_then(|d| d.get_str(crate::owner::KEY_KEY)))
                    .unwrap_or_default();
                let owner = ids
                    .and_then(|d| d.get_str(crate::owner::OWNER_KEY))
                    .unwrap_or_default();
                out.push(format!("+ {table} {name:?} ({owner})"));
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                let Some(u) = pinned(conditions) else {
                    continue;
                };
                let cols: Vec<&str> = row.keys().map(String::as_str).collect();
                out.push(format!(
                    "~ {} [{}]",
                    label(replica, table, u),
                    cols.join(", ")
                ));
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                let Some(u) = pinned(conditions) else {
                    continue;
                };
                let cols: Vec<String> = mutations
                    .iter()
                    .map(|m| {
                        let sign = match m.mutator {
                            ovsdb::Mutator::Delete => "-",
                            _ => "+",
                        };
                        format!("{} {sign}{}", m.column, m.value.len())
                    })
                    .collect();
                out.push(format!(
                    "~ {} [{}]",
                    label(replica, table, u),
                    cols.join(", ")
                ));
            }
            _ => {}
        }
    }
    for r in &fx.deleted {
        out.push(format!("- {}", r.label()));
    }
    for r in &fx.collected {
        out.push(format!(
            "- {} (collected by ovsdb-server: its parent goes)",
            r.label()
        ));
    }
    out
}
