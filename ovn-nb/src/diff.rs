//! Desired state → the minimal operations: insert what is missing, update only the columns that
//! changed, delete rows of ours that should no longer exist. An unchanged world gives no
//! operation at all.
//!
//! Identity ([`Identity`], the caller's convention): every row we manage carries an owner tag
//! in `external_ids` (the object it belongs to) and a row key (unique per table among our rows,
//! e.g. the logical switch name). A desired row refers to another desired row by that key, written as a named UUID
//! (`Atom::NamedUuid(key)`); the diff turns it into the row's UUID when it exists, or into the
//! `uuid-name` of its insert.
//!
//! Rows without our owner tag are never read as ours, so never updated or deleted. Reference
//! sets of our rows (`Logical_Switch.ports`, `Logical_Router.nat`, …) are changed by `mutate`
//! insert/delete of exactly our own members, never written whole: a whole-set write makes
//! ovsdb-server garbage-collect every non-root child it does not list, other objects' and
//! other tools' rows included. For the same reason `external_ids` keys of others stay. Before
//! the operations are returned, [`crate::effects`] works out every row they remove, named or
//! collected, and a plan that would remove a foreign row is refused.
//!
//! Inserts are guarded by a `wait` that fails the transaction if a row with the same key
//! appeared since the replica was read (a second controller, a stale replica): the caller
//! retries after the replica catches up instead of creating a duplicate.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ovsdb::{Atom, Condition, Datum, Mutation, Operation, Replica, Row, Uuid};

use crate::effects::{effects, Blocked, Effects, RowInfo};
use crate::Identity;

/// One row that should exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The table.
    pub table: String,
    /// Unique among our rows of `table`.
    pub key: String,
    /// The object the row belongs to (`Vpc/vpc-a`).
    pub owner: String,
    /// The columns we manage (others are left as they are). References to other desired rows
    /// are `Atom::NamedUuid(their key)`; `external_ids` gets owner and key added.
    pub row: Row,
}

/// A desired state that cannot be turned into operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// A reference names no desired row.
    #[error(
        "{table} {key:?}: column {column} refers to {target:?}, which is not in the desired state"
    )]
    DanglingReference {
        /// The referring row's table.
        table: String,
        /// The referring row's key.
        key: String,
        /// The column.
        column: String,
        /// The missing key.
        target: String,
    },
    /// Two desired rows of one table share a key.
    #[error("{table}: two desired rows have the key {key:?}")]
    DuplicateKey {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// A desired table is not monitored by the replica, so its current rows are unknown.
    #[error("table {0} is not in the replica")]
    NotReplicated(String),
    /// Committing would remove rows that are not ours: foreign children of rows of ours being
    /// deleted (the server would garbage-collect them), or rows of ours to delete that
    /// foreign rows still reference. Nothing is sent.
    #[error("{}", foreign_message(collected, blocked))]
    WouldRemoveForeign {
        /// Foreign rows the server would collect.
        collected: Vec<RowInfo>,
        /// Rows of ours to delete that foreign rows reference.
        blocked: Vec<Blocked>,
    },
}

fn foreign_message(collected: &[RowInfo], blocked: &[Blocked]) -> String {
    let mut m =
        String::from("refusing to change rows that are not ovn-vpc's, nothing was written:");
    for r in collected {
        m.push_str(&format!(
            "\n  {r} would be deleted by ovsdb-server: it is a child of a row of ours being removed"
        ));
    }
    for b in blocked {
        m.push_str(&format!("\n  {b}"));
    }
    m.push_str("\n  remove or move those rows first (they were not made by ovn-vpc)");
    m
}

/// Which of our existing rows a diff may delete: those whose owner matches. `All` for a
/// reconcile of the whole world (`apply --prune`), `Owners` for a reconcile of some objects.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every row of ours in the desired tables.
    All,
    /// Only rows owned by these objects.
    Owners(BTreeSet<String>),
}

impl Scope {
    fn covers(&self, owner: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Owners(o) => o.contains(owner),
        }
    }
}

fn tag(id: &Identity, row: &mut Row, owner: &str, key: &str) {
    let ids = row.remove("external_ids").unwrap_or_else(Datum::empty_map);
    let mut pairs: Vec<(Atom, Atom)> = ids.as_map().to_vec();
    pairs.push((Atom::string(id.owner_key), Atom::string(owner)));
    pairs.push((Atom::string(id.row_key), Atom::string(key)));
    row.insert("external_ids".into(), Datum::map(pairs));
}

/// Our existing rows of `table`: key → (uuid, owner).
fn ours(
    id: &Identity,
    replica: &Replica,
    table: &str,
) -> Result<HashMap<String, (Uuid, String)>, DiffError> {
    let t = replica
        .table(table)
        .ok_or_else(|| DiffError::NotReplicated(table.to_string()))?;
    let mut out = HashMap::new();
    for r in t.iter() {
        let Some(ids) = r.get("external_ids") else {
            continue;
        };
        if let (Some(owner), Some(key)) = (id.owner_of(ids), id.key_of(ids)) {
            out.insert(key.to_string(), (r.uuid(), owner.to_string()));
        }
    }
    Ok(out)
}

fn uuid_name(table: &str, key: &str) -> String {
    // uuid-names must be identifiers: [a-zA-Z_][a-zA-Z0-9_]*.
    let mut s = String::from("r_");
    for c in table.chars().chain(std::iter::once('_')).chain(key.chars()) {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else {
            s.push_str(&format!("_{:x}_", c as u32));
        }
    }
    s
}

/// A reference column holding a set of references (`Logical_Switch.ports`): its members are
/// children shared with other writers, changed by `mutate`, never overwritten.
fn member_set_table<'s>(
    schema: &'s ovsdb::DatabaseSchema,
    table: &str,
    column: &str,
) -> Option<&'s str> {
    let c = schema.tables.get(table)?.columns.get(column)?;
    let t = &c.column_type;
    if t.is_map() || t.max == Some(1) {
        return None;
    }
    t.key.ref_table.as_deref()
}

/// A diff with what it implies: the operations of one transaction, and the rows it deletes
/// or makes the server collect.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The operations: guards and inserts first, then updates and mutations, then deletes.
    pub operations: Vec<Operation>,
    /// What they remove, named and implied (computed only when something is removed).
    pub effects: Effects,
}

/// The operations that turn the rows of ours in the `managed` tables of the replica into
/// `desired`, in one transaction (see [`plan`]). Refuses, with
/// [`DiffError::WouldRemoveForeign`], when committing them would make the server delete a
/// row that is not ours.
pub fn diff(
    id: &Identity,
    managed: &[&str],
    desired: &[Desired],
    replica: &Replica,
    scope: &Scope,
) -> Result<Vec<Operation>, DiffError> {
    let p = plan(id, managed, desired, replica, scope)?;
    p.check()?;
    Ok(p.operations)
}

/// [`diff`] with its [`Effects`], not checked (see [`Plan::check`]). Rows of ours are inserted, updated column by column, or
/// deleted when `scope` covers their owner; reference sets of our rows change by `mutate`
/// of exactly our own members (a member that is not ours, or whose owner `scope` does not
/// cover, stays); `external_ids` keys of others stay; a row of ours deleted is detached from
/// every row of ours that lists it. Foreign rows are never named by an operation.
pub fn plan(
    id: &Identity,
    managed: &[&str],
    desired: &[Desired],
    replica: &Replica,
    scope: &Scope,
) -> Result<Plan, DiffError> {
    let mut tables: BTreeSet<&str> = desired.iter().map(|d| d.table.as_str()).collect();
    tables.extend(managed.iter().copied());
    let mut existing: BTreeMap<&str, HashMap<String, (Uuid, String)>> = BTreeMap::new();
    for t in &tables {
        existing.insert(t, ours(id, replica, t)?);
    }
    // Owner of each row of ours, by UUID (to tell our members of a reference set).
    let owner_of: HashMap<Uuid, &str> = existing
        .values()
        .flat_map(|m| m.values().map(|(u, o)| (*u, o.as_str())))
        .collect();
    // Where each desired row is: its UUID, or the uuid-name of its insert. References are by
    // key within the referenced table, and a key can only be resolved knowing the table: we
    // resolve by the referring column's refTable from the schema.
    let mut target: HashMap<(&str, &str), Atom> = HashMap::new();
    for d in desired {
        let atom = match existing.get(d.table.as_str()).and_then(|m| m.get(&d.key)) {
            Some((u, _)) => Atom::Uuid(*u),
            None => Atom::NamedUuid(uuid_name(&d.table, &d.key)),
        };
        if target
            .insert((d.table.as_str(), d.key.as_str()), atom)
            .is_some()
        {
            return Err(DiffError::DuplicateKey {
                table: d.table.clone(),
                key: d.key.clone(),
            });
        }
    }
    let schema = replica.schema();
    let mut guards = Vec::new();
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    // (table, row, column, member) detached by a mutate already.
    let mut detached: BTreeSet<(Uuid, String, Uuid)> = BTreeSet::new();
    for d in desired {
        let mut row = d.row.clone();
        // Resolve references.
        for (column, datum) in row.iter_mut() {
            let ref_table = schema
                .tables
                .get(&d.table)
                .and_then(|t| t.columns.get(column))
                .and_then(|c| {
                    c.column_type.key.ref_table.clone().or_else(|| {
                        c.column_type
                            .value
                            .as_ref()
                            .and_then(|v| v.ref_table.clone())
                    })
                });
            let Some(ref_table) = ref_table else { continue };
            let resolve = |a: &Atom| -> Result<Atom, DiffError> {
                match a {
                    Atom::NamedUuid(k) => target
                        .get(&(ref_table.as_str(), k.as_str()))
                        .cloned()
                        .ok_or_else(|| DiffError::DanglingReference {
                            table: d.table.clone(),
                            key: d.key.clone(),
                            column: column.clone(),
                            target: k.clone(),
                        }),
                    other => Ok(other.clone()),
                }
            };
            *datum = match datum {
                Datum::Set(v) => Datum::set(v.iter().map(resolve).collect::<Result<Vec<_>, _>>()?),
                Datum::Map(v) => Datum::map(
                    v.iter()
                        .map(|(k, val)| Ok((resolve(k)?, resolve(val)?)))
                        .collect::<Result<Vec<_>, DiffError>>()?,
                ),
            };
        }
        tag(id, &mut row, &d.owner, &d.key);
        if let Some(t) = schema.tables.get(&d.table) {
            for (c, v) in row.iter_mut() {
                if let Some(col) = t.columns.get(c) {
                    col.column_type.coerce(v);
                }
            }
        }
        match existing.get(d.table.as_str()).and_then(|m| m.get(&d.key)) {
            None => {
                guards.push(Operation::Wait {
                    table: d.table.clone(),
                    conditions: vec![Condition::includes(
                        "external_ids",
                        Datum::map([(id.row_key, d.key.as_str())]),
                    )],
                    columns: vec!["_uuid".into()],
                    until_equal: true,
                    rows: vec![],
                    timeout_ms: Some(0),
                });
                inserts.push(Operation::Insert {
                    table: d.table.clone(),
                    row,
                    uuid_name: Some(uuid_name(&d.table, &d.key)),
                });
            }
            Some((uuid, _)) => {
                let current = replica.get(&d.table, *uuid);
                let now = |c: &str| current.as_ref().and_then(|r| r.get(c));
                let mut changed = Row::new();
                let mut mutations = Vec::new();
                for (c, v) in row {
                    if member_set_table(schema, &d.table, &c).is_some() {
                        // Members: add ours that are missing, detach ours that should go
                        // (only when their owner is in scope); others' members stay.
                        let have: BTreeSet<&Atom> = now(&c)
                            .map(|d| d.as_set().iter().collect())
                            .unwrap_or_default();
                        let want: BTreeSet<&Atom> = v.as_set().iter().collect();
                        let add: Vec<Atom> = want.difference(&have).map(|a| (*a).clone()).collect();
                        let remove: Vec<Atom> = have
                            .difference(&want)
                            .filter(|a| {
                                a.as_uuid()
                                    .and_then(|u| owner_of.get(&u))
                                    .is_some_and(|o| scope.covers(o))
                            })
                            .map(|a| (*a).clone())
                            .collect();
                        for a in &remove {
                            if let Some(m) = a.as_uuid() {
                                detached.insert((*uuid, c.clone(), m));
                            }
                        }
                        if !remove.is_empty() {
                            mutations.push(Mutation::delete(&c, Datum::set(remove)));
                        }
                        if !add.is_empty() {
                            mutations.push(Mutation::insert(&c, Datum::set(add)));
                        }
                    } else if c == "external_ids" {
                        // Our keys as desired; keys of others are left alone.
                        let have = now(&c).cloned().unwrap_or_else(Datum::empty_map);
                        let stale: Vec<Atom> = have
                            .as_map()
                            .iter()
                            .filter(|(k, old)| {
                                k.as_str().is_some_and(|k| id.owns_key(k))
                                    && v.get(k).is_none_or(|new| new != old)
                            })
                            .map(|(k, _)| k.clone())
                            .collect();
                        let fresh: Vec<(Atom, Atom)> = v
                            .as_map()
                            .iter()
                            .filter(|(k, new)| have.get(k) != Some(new))
                            .cloned()
                            .collect();
                        // A key of others we now want to set is replaced as well.
                        let mut delete: Vec<Atom> = stale;
                        delete.extend(
                            fresh
                                .iter()
                                .filter(|(k, _)| have.get(k).is_some())
                                .map(|(k, _)| k.clone()),
                        );
                        if !delete.is_empty() {
                            mutations.push(Mutation::delete(&c, Datum::set(delete)));
                        }
                        if !fresh.is_empty() {
                            mutations.push(Mutation::insert(&c, Datum::map(fresh)));
                        }
                    } else if now(&c) != Some(&v) {
                        changed.insert(c, v);
                    }
                }
                if !changed.is_empty() {
                    updates.push(Operation::Update {
                        table: d.table.clone(),
                        conditions: vec![Condition::uuid(*uuid)],
                        row: changed,
                    });
                }
                if !mutations.is_empty() {
                    updates.push(Operation::Mutate {
                        table: d.table.clone(),
                        conditions: vec![Condition::uuid(*uuid)],
                        mutations,
                    });
                }
            }
        }
    }
    let mut deletes = Vec::new();
    let mut gone_rows: BTreeSet<Uuid> = BTreeSet::new();
    for (table, rows) in &existing {
        let wanted: BTreeSet<&str> = desired
            .iter()
            .filter(|d| d.table == *table)
            .map(|d| d.key.as_str())
            .collect();
        let mut gone: Vec<(&String, &(Uuid, String))> = rows
            .iter()
            .filter(|(k, (_, owner))| !wanted.contains(k.as_str()) && scope.covers(owner))
            .collect();
        gone.sort();
        for (_, (uuid, owner)) in gone {
            gone_rows.insert(*uuid);
            deletes.push(Operation::Delete {
                table: table.to_string(),
                conditions: vec![
                    Condition::uuid(*uuid),
                    Condition::includes(
                        "external_ids",
                        Datum::map([(id.owner_key, owner.as_str())]),
                    ),
                ],
            });
        }
    }
    // A deleted row still listed by a row of ours that stays (out of scope, or not desired
    // to change that column): detach it there too, or the commit fails on the reference.
    if !gone_rows.is_empty() {
        let mut detach: BTreeMap<(String, Uuid), BTreeMap<String, Vec<Atom>>> = BTreeMap::new();
        for t in &tables {
            let Some(view) = replica.table(t) else {
                continue;
            };
            let sets: Vec<&String> = view
                .columns()
                .iter()
                .filter(|c| member_set_table(schema, t, c).is_some())
                .collect();
            if sets.is_empty() {
                continue;
            }
            for r in view.iter() {
                let u = r.uuid();
                if gone_rows.contains(&u) || !owner_of.contains_key(&u) {
                    continue;
                }
                for c in &sets {
                    let Some(d) = r.get(c) else { continue };
                    for m in d.as_set().iter().filter_map(Atom::as_uuid) {
                        if gone_rows.contains(&m) && !detached.contains(&(u, (*c).clone(), m)) {
                            detach
                                .entry((t.to_string(), u))
                                .or_default()
                                .entry((*c).clone())
                                .or_default()
                                .push(Atom::Uuid(m));
                        }
                    }
                }
            }
        }
        for ((table, u), columns) in detach {
            updates.push(Operation::Mutate {
                table,
                conditions: vec![Condition::uuid(u)],
                mutations: columns
                    .into_iter()
                    .map(|(c, m)| Mutation::delete(&c, Datum::set(m)))
                    .collect(),
            });
        }
    }
    let mut operations = guards;
    operations.extend(inserts);
    operations.extend(updates);
    operations.extend(deletes);
    let effects = effects(id, replica, &operations);
    Ok(Plan {
        operations,
        effects,
    })
}

impl Plan {
    /// Refuses a plan that would remove a foreign row: one the server would collect, or one
    /// that references a row of ours to delete (the commit would fail on it).
    pub fn check(&self) -> Result<(), DiffError> {
        let collected: Vec<RowInfo> = self.effects.foreign_collected().cloned().collect();
        let blocked: Vec<Blocked> = self
            .effects
            .blocked
            .iter()
            .filter(|b| !b.by.is_ours())
            .cloned()
            .collect();
        if collected.is_empty() && blocked.is_empty() {
            return Ok(());
        }
        Err(DiffError::WouldRemoveForeign { collected, blocked })
    }
}
