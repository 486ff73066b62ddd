//! What a transaction will do to rows it does not name: ovsdb-server garbage-collects every row
//! of a non-root table that loses its last strong reference (RFC 7047 §3.2, `isRoot`), and
//! refuses a commit that deletes a row still strongly referenced. Both are decided from the
//! replica before anything is sent, so a plan can list every row that will disappear and a
//! reconcile can refuse to make the server collect a row that is not ours.
//!
//! The analysis sees the references the replica monitors: monitor every strong reference
//! column of the tables whose rows may be deleted or detached (see
//! [`child_columns`]), or a child that only an unmonitored column holds goes unseen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use ovsdb::{Atom, DatabaseSchema, Datum, Function, Mutator, Operation, Replica, Uuid};

use crate::ops::OWNER_KEY;

/// A row as a person can find it: table, UUID, and its name and owner when the replica
/// holds them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowInfo {
    /// The table.
    pub table: String,
    /// The row.
    pub uuid: Uuid,
    /// Its `name` column, when it has one.
    pub name: Option<String>,
    /// Its `external_ids:ovn-vpc/owner`: `None` for a row that is not ours (or whose table
    /// the replica does not hold, which is treated the same way).
    pub owner: Option<String>,
}

impl RowInfo {
    fn of(replica: &Replica, table: &str, uuid: Uuid) -> RowInfo {
        let row = replica.get(table, uuid);
        let name = row
            .as_ref()
            .and_then(|r| r.get("name"))
            .and_then(Datum::as_atom)
            .and_then(Atom::as_str)
            .map(str::to_string);
        let owner = row
            .as_ref()
            .and_then(|r| r.get("external_ids"))
            .and_then(|d| d.get_str(OWNER_KEY))
            .map(str::to_string);
        RowInfo {
            table: table.to_string(),
            uuid,
            name,
            owner,
        }
    }

    /// Whether the row carries our owner tag.
    pub fn is_ours(&self) -> bool {
        self.owner.is_some()
    }
}

impl fmt::Display for RowInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        write!(f, " ({}", self.uuid)?;
        match &self.owner {
            Some(o) => write!(f, ", {o})"),
            None => write!(f, ", not ovn-vpc's)"),
        }
    }
}

/// A row to delete that another row still references strongly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blocked {
    /// The row to delete.
    pub row: RowInfo,
    /// The row that references it and stays.
    pub by: RowInfo,
    /// The referencing column of `by`.
    pub column: String,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is still referenced by {} (column {})",
            self.row, self.by, self.column
        )
    }
}

/// The rows a list of operations removes, named and implied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Rows deleted by a `delete` operation.
    pub deleted: Vec<RowInfo>,
    /// Rows no operation names that the server will garbage-collect (a non-root row losing
    /// its last strong reference, directly or through a collected parent).
    pub collected: Vec<RowInfo>,
    /// Deleted rows that a surviving row still references strongly (the commit would fail
    /// with a referential integrity violation).
    pub blocked: Vec<Blocked>,
}

impl Effects {
    /// Collected rows that are not ours.
    pub fn foreign_collected(&self) -> impl Iterator<Item = &RowInfo> {
        self.collected.iter().filter(|r| !r.is_ours())
    }
}

/// The strong reference columns of `table` (to any table), from the schema: what a replica
/// must monitor, beside the columns written, for [`effects`] to see every child.
pub fn child_columns<'s>(schema: &'s DatabaseSchema, table: &str) -> Vec<&'s str> {
    let Some(t) = schema.tables.get(table) else {
        return Vec::new();
    };
    t.columns
        .values()
        .filter(|c| strong_ref_table(&c.column_type).is_some())
        .map(|c| c.name.as_str())
        .collect()
}

/// The referenced table of a strong reference column (key or value side).
fn strong_ref_table(t: &ovsdb::ColumnType) -> Option<&str> {
    fn strong(b: &ovsdb::BaseType) -> Option<&str> {
        b.ref_table
            .as_deref()
            .filter(|_| b.ref_type == ovsdb::RefType::Strong)
    }
    strong(&t.key).or_else(|| t.value.as_ref().and_then(strong))
}

/// The UUID atoms of a datum on the referencing side(s) of a column.
fn targets(t: &ovsdb::ColumnType, d: &Datum) -> Vec<Uuid> {
    let strong =
        |b: &ovsdb::BaseType| b.ref_table.is_some() && b.ref_type == ovsdb::RefType::Strong;
    let mut out = Vec::new();
    match d {
        Datum::Set(v) if strong(&t.key) => out.extend(v.iter().filter_map(Atom::as_uuid)),
        Datum::Map(v) => {
            for (k, val) in v {
                if strong(&t.key) {
                    out.extend(k.as_uuid());
                }
                if t.value.as_ref().is_some_and(strong) {
                    out.extend(val.as_uuid());
                }
            }
        }
        _ => {}
    }
    out
}

/// The row an operation's conditions pin by `_uuid ==`, as the diff writes them.
fn pinned(conditions: &[ovsdb::Condition]) -> Option<Uuid> {
    conditions
        .iter()
        .find(|c| c.column == "_uuid" && c.function == Function::Eq)
        .and_then(|c| c.value.as_atom())
        .and_then(Atom::as_uuid)
}

/// How a column of an existing row ends up after the operations.
enum ColumnChange<'a> {
    Replaced(&'a Datum),
    /// Members removed by `mutate delete` (inserted ones count as gained references).
    Mutated(BTreeSet<Uuid>),
}

/// What `ops` (applied to the rows in `replica`) delete, collect and fail to delete. Rows are
/// pinned by `_uuid ==` conditions (as [`crate::diff::diff`] writes them); operations without
/// one are not analysed.
pub fn effects(replica: &Replica, ops: &[Operation]) -> Effects {
    let schema = replica.schema().clone();
    let mut deleted: BTreeMap<Uuid, &str> = BTreeMap::new();
    let mut changes: HashMap<(Uuid, &str), ColumnChange> = HashMap::new();
    // Existing rows newly referenced (by inserts, updates, mutate inserts): they gain a
    // referrer the replica does not show.
    let mut gained: HashMap<Uuid, usize> = HashMap::new();
    for op in ops {
        match op {
            Operation::Delete { table, conditions } => {
                if let Some(u) = pinned(conditions) {
                    deleted.insert(u, table.as_str());
                }
            }
            Operation::Insert { table, row, .. } => {
                let Some(ts) = schema.tables.get(table) else {
                    continue;
                };
                for (c, d) in row {
                    if let Some(cs) = ts.columns.get(c) {
                        for u in targets(&cs.column_type, d) {
                            *gained.entry(u).or_default() += 1;
                        }
                    }
                }
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                let Some(u) = pinned(conditions) else {
                    continue;
                };
                let Some(ts) = schema.tables.get(table) else {
                    continue;
                };
                for (c, d) in row {
                    let Some(cs) = ts.columns.get(c) else {
                        continue;
                    };
                    if strong_ref_table(&cs.column_type).is_some() {
                        for t in targets(&cs.column_type, d) {
                            *gained.entry(t).or_default() += 1;
                        }
                        changes.insert((u, c.as_str()), ColumnChange::Replaced(d));
                    }
                }
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                let Some(u) = pinned(conditions) else {
                    continue;
                };
                let Some(ts) = schema.tables.get(table) else {
                    continue;
                };
                for m in mutations {
                    let Some(cs) = ts.columns.get(&m.column) else {
                        continue;
                    };
                    if strong_ref_table(&cs.column_type).is_none() {
                        continue;
                    }
                    let entry = changes
                        .entry((u, m.column.as_str()))
                        .or_insert_with(|| ColumnChange::Mutated(BTreeSet::new()));
                    if let ColumnChange::Mutated(removed) = entry {
                        let members = targets(&cs.column_type, &m.value);
                        match m.mutator {
                            Mutator::Delete => removed.extend(members),
                            Mutator::Insert => {
                                for t in &members {
                                    *gained.entry(*t).or_default() += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if deleted.is_empty() && changes.is_empty() {
        return Effects::default();
    }

    // Every strong edge the replica shows: target → (referrer table, referrer, survives).
    struct Edge<'a> {
        from_table: &'a str,
        from: Uuid,
        column: &'a str,
        survives: bool,
    }
    let mut edges: HashMap<Uuid, Vec<Edge>> = HashMap::new();
    let mut target_table: HashMap<Uuid, &str> = HashMap::new();
    let mut out_edges: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for view in replica.tables() {
        let Some(ts) = schema.tables.get(view.name()) else {
            continue;
        };
        let ref_columns: Vec<(&str, &ovsdb::ColumnType, &str)> = view
            .columns()
            .iter()
            .filter_map(|c| {
                let cs = ts.columns.get(c)?;
                strong_ref_table(&cs.column_type).map(|rt| (c.as_str(), &cs.column_type, rt))
            })
            .collect();
        if ref_columns.is_empty() {
            continue;
        }
        for row in view.iter() {
            let from = row.uuid();
            let gone = deleted.contains_key(&from);
            for (c, ct, rt) in &ref_columns {
                let Some(d) = row.get(c) else { continue };
                let change = changes.get(&(from, *c));
                for u in targets(ct, d) {
                    let survives = !gone
                        && match change {
                            None => true,
                            Some(ColumnChange::Replaced(new)) => targets(ct, new).contains(&u),
                            Some(ColumnChange::Mutated(removed)) => !removed.contains(&u),
                        };
                    target_table.entry(u).or_insert(rt);
                    if survives {
                        out_edges.entry(from).or_default().push(u);
                    }
                    edges.entry(u).or_default().push(Edge {
                        from_table: view.name(),
                        from,
                        column: c,
                        survives,
                    });
                }
            }
        }
    }
    let is_root = |t: &str| schema.tables.get(t).is_none_or(|ts| ts.is_root);
    let mut alive: HashMap<Uuid, usize> = edges
        .iter()
        .map(|(u, es)| {
            let n = es.iter().filter(|e| e.survives).count() + gained.get(u).copied().unwrap_or(0);
            (*u, n)
        })
        .collect();
    let mut collected: BTreeSet<Uuid> = BTreeSet::new();
    let mut work: Vec<Uuid> = alive
        .iter()
        .filter(|(u, n)| **n == 0 && !deleted.contains_key(u))
        .map(|(u, _)| *u)
        .collect();
    // Rows gone (deleted or collected) drop their children's references in turn.
    let mut dropped: Vec<Uuid> = deleted.keys().copied().collect();
    while !work.is_empty() || !dropped.is_empty() {
        for u in work.drain(..) {
            let t = target_table.get(&u).copied().unwrap_or("");
            if !is_root(t) && collected.insert(u) {
                dropped.push(u);
            }
        }
        for u in std::mem::take(&mut dropped) {
            // A deleted row's edges were already counted as not surviving.
            if deleted.contains_key(&u) {
                continue;
            }
            for child in out_edges.get(&u).into_iter().flatten() {
                if let Some(n) = alive.get_mut(child) {
                    *n = n.saturating_sub(1);
                    if *n == 0 && !deleted.contains_key(child) && !collected.contains(child) {
                        work.push(*child);
                    }
                }
            }
        }
    }
    let mut fx = Effects {
        deleted: deleted
            .iter()
            .map(|(u, t)| RowInfo::of(replica, t, *u))
            .collect(),
        collected: collected
            .iter()
            .map(|u| RowInfo::of(replica, target_table.get(u).copied().unwrap_or(""), *u))
            .collect(),
        blocked: Vec::new(),
    };
    for (u, t) in &deleted {
        for e in edges.get(u).into_iter().flatten() {
            if e.survives && !collected.contains(&e.from) {
                fx.blocked.push(Blocked {
                    row: RowInfo::of(replica, t, *u),
                    by: RowInfo::of(replica, e.from_table, e.from),
                    column: e.column.to_string(),
                });
            }
        }
    }
    fx.deleted.sort();
    fx.collected.sort();
    fx.blocked.sort();
    fx
}
