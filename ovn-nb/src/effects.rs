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

use crate::Identity;

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
    /// Its row key, when it is ours.
    pub key: Option<String>,
    /// Its owner tag: `None` for a row that is not ours (or whose table the replica does not
    /// hold, which is treated the same way).
    pub owner: Option<String>,
}

impl RowInfo {
    /// What the replica knows of a row (only the table and UUID when it does not hold it).
    pub fn read(id: &Identity, replica: &Replica, table: &str, uuid: Uuid) -> RowInfo {
        let row = replica.get(table, uuid);
        let name = row
            .as_ref()
            .and_then(|r| r.get("name"))
            .and_then(Datum::as_atom)
            .and_then(Atom::as_str)
            .map(str::to_string);
        let ids = row.as_ref().and_then(|r| r.get("external_ids"));
        let owner = ids.and_then(|d| id.owner_of(d)).map(str::to_string);
        let key = ids.and_then(|d| id.key_of(d)).map(str::to_string);
        RowInfo {
            table: table.to_string(),
            uuid,
            name: name.filter(|n| !n.is_empty()),
            key,
            owner,
        }
    }

    /// Whether the row carries our owner tag.
    pub fn is_ours(&self) -> bool {
        self.owner.is_some()
    }
}

impl RowInfo {
    /// `Table "name" (owner)` — the row as `plan` lists it (its key when it has no name,
    /// its UUID when neither).
    pub fn label(&self) -> String {
        let name = self
            .name
            .as_ref()
            .or(self.key.as_ref())
            .map(|n| format!("{n:?}"))
            .unwrap_or_else(|| self.uuid.to_string());
        match &self.owner {
            Some(o) => format!("{} {name} ({o})", self.table),
            None => format!("{} {name} (not ovn-vpc's)", self.table),
        }
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
pub fn pinned(conditions: &[ovsdb::Condition]) -> Option<Uuid> {
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
pub fn effects(id: &Identity, replica: &Replica, ops: &[Operation]) -> Effects {
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
    // Only a delete, a whole-column write or a member removal can take a reference away.
    let removes = changes.values().any(|c| match c {
        ColumnChange::Replaced(_) => true,
        ColumnChange::Mutated(removed) => !removed.is_empty(),
    });
    if deleted.is_empty() && !removes {
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
            .map(|(u, t)| RowInfo::read(id, replica, t, *u))
            .collect(),
        collected: collected
            .iter()
            .map(|u| RowInfo::read(id, replica, target_table.get(u).copied().unwrap_or(""), *u))
            .collect(),
        blocked: Vec::new(),
    };
    for (u, t) in &deleted {
        for e in edges.get(u).into_iter().flatten() {
            if e.survives && !collected.contains(&e.from) {
                fx.blocked.push(Blocked {
                    row: RowInfo::read(id, replica, t, *u),
                    by: RowInfo::read(id, replica, e.from_table, e.from),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{plan, Desired, DiffError, Scope};
    use ovsdb::{MonitorMethod, MonitorRequest, MonitorRequests};
    use std::sync::Arc;

    fn u(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    /// A replica of switches and ports: switch 1 (ours, `Subnet/s`) holds port 2 (ours,
    /// `Pod/ns/a`), port 3 (ours, `Pod/ns/b`) and port 4 (foreign).
    fn replica(foreign_port: bool) -> Replica {
        let schema = DatabaseSchema::from_json_str(crate::nb::SCHEMA).unwrap();
        let mut r = Replica::new(Arc::new(schema));
        let mut req = MonitorRequests::new();
        for t in ["Logical_Switch", "Logical_Switch_Port"] {
            req.add(
                t,
                MonitorRequest::new().columns(
                    ["name", "ports", "external_ids"]
                        .iter()
                        .copied()
                        .filter(|c| *c != "ports" || t == "Logical_Switch"),
                ),
            );
        }
        r.monitor(&req).unwrap();
        let ids = |owner: &str, key: &str| {
            format!(r#"["map", [["ovn-vpc/key", "{key}"], ["ovn-vpc/owner", "{owner}"]]]"#)
        };
        let mut ports = format!(r#"["uuid", "{}"], ["uuid", "{}"]"#, u(2), u(3));
        if foreign_port {
            ports.push_str(&format!(r#", ["uuid", "{}"]"#, u(4)));
        }
        let mut text = format!(
            r#"{{"Logical_Switch": {{"{}": {{"initial": {{"name": "s", "ports": ["set", [{ports}]], "external_ids": {}}}}}}},
               "Logical_Switch_Port": {{
                 "{}": {{"initial": {{"name": "a.ns", "external_ids": {}}}}},
                 "{}": {{"initial": {{"name": "b.ns", "external_ids": {}}}}}"#,
            u(1),
            ids("Subnet/s", "Subnet/s"),
            u(2),
            ids("Pod/ns/a", "Pod/ns/a"),
            u(3),
            ids("Pod/ns/b", "Pod/ns/b"),
        );
        if foreign_port {
            text.push_str(&format!(
                r#", "{}": {{"initial": {{"name": "theirs"}}}}"#,
                u(4)
            ));
        }
        text.push_str("}}");
        r.apply_reply_text(MonitorMethod::MonitorCond, &text)
            .unwrap();
        r
    }

    fn switch(ports: &[&str]) -> Desired {
        let mut row = ovsdb::Row::new();
        row.insert("name".into(), Datum::atom("s"));
        row.insert(
            "ports".into(),
            Datum::set(ports.iter().map(|p| Atom::NamedUuid(p.to_string()))),
        );
        Desired {
            table: "Logical_Switch".into(),
            key: "Subnet/s".into(),
            owner: "Subnet/s".into(),
            row,
        }
    }

    fn port(key: &str, name: &str) -> Desired {
        let mut row = ovsdb::Row::new();
        row.insert("name".into(), Datum::atom(name));
        Desired {
            table: "Logical_Switch_Port".into(),
            key: key.into(),
            owner: key.into(),
            row,
        }
    }

    const MANAGED: &[&str] = &["Logical_Switch", "Logical_Switch_Port"];
    const ID: Identity = Identity::new("ovn-vpc/owner", "ovn-vpc/key", "ovn-vpc/");

    #[test]
    fn a_member_of_an_absent_owner_stays_and_nothing_is_written() {
        let r = replica(true);
        // Only pod a is in the world: b is out of scope, the foreign port is not ours.
        let desired = vec![switch(&["Pod/ns/a"]), port("Pod/ns/a", "a.ns")];
        let scope = Scope::Owners(["Subnet/s".to_string(), "Pod/ns/a".to_string()].into());
        let p = plan(&ID, MANAGED, &desired, &r, &scope).unwrap();
        assert!(p.operations.is_empty(), "{:?}", p.operations);
    }

    #[test]
    fn pruning_a_member_detaches_and_deletes_exactly_it() {
        let r = replica(true);
        let desired = vec![switch(&["Pod/ns/a"]), port("Pod/ns/a", "a.ns")];
        let p = plan(&ID, MANAGED, &desired, &r, &Scope::All).unwrap();
        p.check().unwrap();
        // One mutate removing port 3 only, one delete of port 3.
        let mutates: Vec<&Operation> = p
            .operations
            .iter()
            .filter(|o| matches!(o, Operation::Mutate { .. }))
            .collect();
        assert_eq!(mutates.len(), 1, "{:?}", p.operations);
        let Operation::Mutate { mutations, .. } = mutates[0] else {
            unreachable!()
        };
        assert_eq!(mutations.len(), 1);
        assert_eq!(mutations[0].mutator, Mutator::Delete);
        assert_eq!(mutations[0].value, Datum::set([Atom::Uuid(u(3))]));
        assert_eq!(p.effects.deleted.len(), 1);
        assert_eq!(p.effects.deleted[0].uuid, u(3));
        assert!(p.effects.collected.is_empty(), "{:?}", p.effects);
        assert!(!p
            .operations
            .iter()
            .any(|o| matches!(o, Operation::Update { .. })));
    }

    #[test]
    fn deleting_a_parent_with_a_foreign_child_is_refused_naming_the_child() {
        let r = replica(true);
        let p = plan(&ID, MANAGED, &[], &r, &Scope::All).unwrap();
        assert_eq!(p.effects.collected.len(), 1);
        assert_eq!(p.effects.collected[0].name.as_deref(), Some("theirs"));
        match p.check() {
            Err(DiffError::WouldRemoveForeign { collected, .. }) => {
                assert_eq!(collected[0].uuid, u(4));
                let text = DiffError::WouldRemoveForeign {
                    collected,
                    blocked: vec![],
                }
                .to_string();
                assert!(
                    text.contains("\"theirs\"") && text.contains("not ovn-vpc's"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Without the foreign child, the same removal is fine and collects nothing.
        let r = replica(false);
        let p = plan(&ID, MANAGED, &[], &r, &Scope::All).unwrap();
        p.check().unwrap();
        assert_eq!(p.effects.deleted.len(), 3);
        assert!(p.effects.collected.is_empty());
    }

    #[test]
    fn a_whole_set_write_would_collect_what_it_leaves_out() {
        // What the diff used to send: the analysis sees the server's garbage collection.
        let r = replica(true);
        let mut row = ovsdb::Row::new();
        row.insert("ports".into(), Datum::set([Atom::Uuid(u(2))]));
        let ops = vec![Operation::Update {
            table: "Logical_Switch".into(),
            conditions: vec![ovsdb::Condition::uuid(u(1))],
            row,
        }];
        let fx = effects(&ID, &r, &ops);
        let gone: Vec<Uuid> = fx.collected.iter().map(|r| r.uuid).collect();
        assert_eq!(gone, vec![u(3), u(4)]);
        assert_eq!(fx.foreign_collected().count(), 1);
    }
}
