//! Desired state → the minimal operations: insert what is missing, update only the columns that
//! changed, delete rows of ours that should no longer exist. An unchanged world gives no
//! operation at all.
//!
//! Identity: every row we manage carries `external_ids:ovn-vpc/owner` (the object it belongs
//! to) and `external_ids:ovn-vpc/key` (unique per table among our rows, e.g. the logical switch
//! name). A desired row refers to another desired row by that key, written as a named UUID
//! (`Atom::NamedUuid(key)`); the diff turns it into the row's UUID when it exists, or into the
//! `uuid-name` of its insert.
//!
//! Rows without our owner tag are never read as ours, so never updated or deleted. Inserts are
//! guarded by a `wait` that fails the transaction if a row with the same key appeared since the
//! replica was read (a second controller, a stale replica): the caller retries after the
//! replica catches up instead of creating a duplicate.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ovsdb::{Atom, Condition, Datum, Operation, Replica, Row, Uuid};

use crate::ops::OWNER_KEY;

/// The `external_ids` key that identifies a row of ours within its table.
pub const KEY_KEY: &str = "ovn-vpc/key";

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

fn tag(row: &mut Row, owner: &str, key: &str) {
    let ids = row.remove("external_ids").unwrap_or_else(Datum::empty_map);
    let mut pairs: Vec<(Atom, Atom)> = ids.as_map().to_vec();
    pairs.push((Atom::string(OWNER_KEY), Atom::string(owner)));
    pairs.push((Atom::string(KEY_KEY), Atom::string(key)));
    row.insert("external_ids".into(), Datum::map(pairs));
}

/// Our existing rows of `table`: key → (uuid, owner).
fn ours(replica: &Replica, table: &str) -> Result<HashMap<String, (Uuid, String)>, DiffError> {
    let t = replica
        .table(table)
        .ok_or_else(|| DiffError::NotReplicated(table.to_string()))?;
    let mut out = HashMap::new();
    for r in t.iter() {
        let Some(ids) = r.get("external_ids") else {
            continue;
        };
        if let (Some(owner), Some(key)) = (ids.get_str(OWNER_KEY), ids.get_str(KEY_KEY)) {
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

/// The operations that turn the rows of ours in the `managed` tables of the replica into
/// `desired`, in one transaction: guards and inserts first, then updates, then deletes.
pub fn diff(
    managed: &[&str],
    desired: &[Desired],
    replica: &Replica,
    scope: &Scope,
) -> Result<Vec<Operation>, DiffError> {
    let mut tables: BTreeSet<&str> = desired.iter().map(|d| d.table.as_str()).collect();
    tables.extend(managed.iter().copied());
    let mut existing: BTreeMap<&str, HashMap<String, (Uuid, String)>> = BTreeMap::new();
    for t in &tables {
        existing.insert(t, ours(replica, t)?);
    }
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
        tag(&mut row, &d.owner, &d.key);
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
                        Datum::map([(KEY_KEY, d.key.as_str())]),
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
                let changed: Row = row
                    .into_iter()
                    .filter(|(c, v)| current.as_ref().and_then(|r| r.get(c)) != Some(v))
                    .collect();
                if !changed.is_empty() {
                    updates.push(Operation::Update {
                        table: d.table.clone(),
                        conditions: vec![Condition::uuid(*uuid)],
                        row: changed,
                    });
                }
            }
        }
    }
    let mut deletes = Vec::new();
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
            deletes.push(Operation::Delete {
                table: table.to_string(),
                conditions: vec![
                    Condition::uuid(*uuid),
                    Condition::includes("external_ids", Datum::map([(OWNER_KEY, owner.as_str())])),
                ],
            });
        }
    }
    let mut ops = guards;
    ops.extend(inserts);
    ops.extend(updates);
    ops.extend(deletes);
    Ok(ops)
}
