//! Transaction operations (RFC 7047 §5.2) and their results, checked against the schema before
//! they are sent.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value as Json;

use crate::notation::{Atom, Datum, Uuid};
use crate::schema::{ColumnType, ConstraintViolation, DatabaseSchema, TableSchema};

/// A row: column name → value.
pub type Row = BTreeMap<String, Datum>;

/// The comparison of a condition (`"=="`, `"includes"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `includes`
    Includes,
    /// `excludes`
    Excludes,
}

impl Function {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Ge => ">=",
            Function::Gt => ">",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The column (`_uuid` included).
    pub column: String,
    /// The comparison.
    pub function: Function,
    /// The operand.
    pub value: Datum,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.into(),
            function: Function::Eq,
            value: value.into(),
        }
    }

    /// `column != value`.
    pub fn ne(column: &str, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.into(),
            function: Function::Ne,
            value: value.into(),
        }
    }

    /// `column includes value`.
    pub fn includes(column: &str, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.into(),
            function: Function::Includes,
            value: value.into(),
        }
    }

    /// `column excludes value`.
    pub fn excludes(column: &str, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.into(),
            function: Function::Excludes,
            value: value.into(),
        }
    }

    /// `_uuid == uuid`: the row with this UUID.
    pub fn uuid(uuid: Uuid) -> Condition {
        Condition::eq("_uuid", Atom::Uuid(uuid))
    }
}

// Plain Rust values as condition operands: `Condition::eq("name", "sw0")`.
macro_rules! datum_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Datum {
            fn from(v: $t) -> Datum { Datum::atom(v) }
        }
    )*};
}
datum_from!(i64, f64, bool, &str, String, Uuid);

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(3))?;
        seq.serialize_element(&self.column)?;
        seq.serialize_element(self.function.as_str())?;
        seq.serialize_element(&self.value)?;
        seq.end()
    }
}

/// The change of a mutation (`"+="`, `"insert"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Mod,
    /// `insert` (into a set or map)
    Insert,
    /// `delete` (from a set; from a map by keys or by pairs)
    Delete,
}

impl Mutator {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The column.
    pub column: String,
    /// The change.
    pub mutator: Mutator,
    /// The operand.
    pub value: Datum,
}

impl Mutation {
    /// `column insert value` (elements of a set, or pairs of a map).
    pub fn insert(column: &str, value: Datum) -> Mutation {
        Mutation {
            column: column.into(),
            mutator: Mutator::Insert,
            value,
        }
    }

    /// `column delete value` (elements of a set; keys or pairs of a map).
    pub fn delete(column: &str, value: Datum) -> Mutation {
        Mutation {
            column: column.into(),
            mutator: Mutator::Delete,
            value,
        }
    }
}

impl Serialize for Mutation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(3))?;
        seq.serialize_element(&self.column)?;
        seq.serialize_element(self.mutator.as_str())?;
        seq.serialize_element(&self.value)?;
        seq.end()
    }
}

/// One operation of a `transact`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Insert a row; `uuid_name` lets later operations of the same transaction refer to it.
    Insert {
        /// The table.
        table: String,
        /// The columns to set (others get their defaults).
        row: Row,
        /// The `uuid-name`.
        uuid_name: Option<String>,
    },
    /// Read the matching rows.
    Select {
        /// The table.
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// Which columns (all when `None`).
        columns: Option<Vec<String>>,
    },
    /// Set columns of the matching rows.
    Update {
        /// The table.
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// The new values.
        row: Row,
    },
    /// Change columns of the matching rows relative to their value.
    Mutate {
        /// The table.
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// The changes.
        mutations: Vec<Mutation>,
    },
    /// Delete the matching rows.
    Delete {
        /// The table.
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
    },
    /// Wait until (or fail unless) the matching rows' `columns` equal (or differ from) `rows`.
    Wait {
        /// The table.
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// The columns compared.
        columns: Vec<String>,
        /// `true` for `"until": "=="`, `false` for `"!="`.
        until_equal: bool,
        /// The expected rows (only `columns`).
        rows: Vec<Row>,
        /// Milliseconds to wait; `Some(0)` makes it a pure guard.
        timeout_ms: Option<u64>,
    },
    /// Make the transaction durable (or not) on commit.
    Commit {
        /// Wait for the disk.
        durable: bool,
    },
    /// Abort the transaction (always fails with `aborted`).
    Abort,
    /// A comment written to the database log.
    Comment(String),
    /// Fail unless this client owns `lock`.
    Assert {
        /// The lock name.
        lock: String,
    },
}

impl Operation {
    /// The table the operation works on, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            Operation::Insert { table, .. }
            | Operation::Select { table, .. }
            | Operation::Update { table, .. }
            | Operation::Mutate { table, .. }
            | Operation::Delete { table, .. }
            | Operation::Wait { table, .. } => Some(table),
            _ => None,
        }
    }

    /// Checks table, columns and every value against the schema, as the server would, so a
    /// bad request is refused before it is sent (and the message names table and column).
    pub fn validate(&self, schema: &DatabaseSchema) -> Result<(), ConstraintViolation> {
        let Some(table) = self.table() else {
            return Ok(());
        };
        let t = schema.table(table)?;
        match self {
            Operation::Insert { row, .. } => check_row(t, row, false),
            Operation::Select {
                conditions,
                columns,
                ..
            } => {
                check_conditions(t, conditions)?;
                for c in columns.iter().flatten() {
                    if !is_implicit(c) {
                        t.column(c)?;
                    }
                }
                Ok(())
            }
            Operation::Update {
                conditions, row, ..
            } => {
                check_conditions(t, conditions)?;
                check_row(t, row, true)
            }
            Operation::Mutate {
                conditions,
                mutations,
                ..
            } => {
                check_conditions(t, conditions)?;
                mutations.iter().try_for_each(|m| check_mutation(t, m))
            }
            Operation::Delete { conditions, .. } => check_conditions(t, conditions),
            Operation::Wait {
                conditions,
                columns,
                rows,
                ..
            } => {
                check_conditions(t, conditions)?;
                for c in columns {
                    if !is_implicit(c) {
                        t.column(c)?;
                    }
                }
                for r in rows {
                    for (c, d) in r {
                        if !columns.contains(c) {
                            return Err(violation(t, c, "not among the waited-for columns"));
                        }
                        if !is_implicit(c) {
                            t.check_value(c, d)?;
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `_uuid` and `_version`: columns every table has but no schema lists.
pub(crate) fn is_implicit(c: &str) -> bool {
    c == "_uuid" || c == "_version"
}

pub(crate) fn violation(
    t: &TableSchema,
    column: &str,
    message: impl Into<String>,
) -> ConstraintViolation {
    ConstraintViolation {
        table: t.name.clone(),
        column: column.to_string(),
        message: message.into(),
    }
}

fn check_row(t: &TableSchema, row: &Row, update: bool) -> Result<(), ConstraintViolation> {
    for (c, d) in row {
        if is_implicit(c) {
            return Err(violation(t, c, "cannot be written"));
        }
        let col = t.column(c)?;
        if update && !col.mutable {
            return Err(violation(t, c, "is immutable and cannot be updated"));
        }
        t.check_value(c, d)?;
    }
    Ok(())
}

fn relaxed(ct: &ColumnType) -> ColumnType {
    ColumnType {
        min: 0,
        max: None,
        ..ct.clone()
    }
}

pub(crate) fn check_conditions(
    t: &TableSchema,
    conds: &[Condition],
) -> Result<(), ConstraintViolation> {
    for c in conds {
        if is_implicit(&c.column) {
            let ok = c
                .value
                .as_atom()
                .is_some_and(|a| matches!(a, Atom::Uuid(_) | Atom::NamedUuid(_)))
                && matches!(
                    c.function,
                    Function::Eq | Function::Ne | Function::Includes | Function::Excludes
                );
            if !ok {
                return Err(violation(
                    t,
                    &c.column,
                    "compares only with ==, !=, includes or excludes to a UUID or named UUID",
                ));
            }
            continue;
        }
        let col = t.column(&c.column)?;
        let ordered = matches!(
            c.function,
            Function::Lt | Function::Le | Function::Gt | Function::Ge
        );
        if ordered && !(col.column_type.is_scalar() || col.column_type.is_optional())
            || ordered
                && !matches!(
                    col.column_type.key.atomic,
                    crate::schema::AtomicType::Integer | crate::schema::AtomicType::Real
                )
        {
            return Err(violation(
                t,
                &c.column,
                format!(
                    "{} applies only to integer or real scalars",
                    c.function.as_str()
                ),
            ));
        }
        // includes/excludes take any subset, and == / != on a set column any set of its
        // element type; the count limits of the column do not apply to the operand.
        let ty = match c.function {
            Function::Includes | Function::Excludes => relaxed(&col.column_type),
            _ if ordered => ColumnType {
                min: 1,
                max: Some(1),
                ..col.column_type.clone()
            },
            _ => col.column_type.clone(),
        };
        ty.check(&c.value).map_err(|m| {
            violation(
                t,
                &c.column,
                format!("condition {}: {m}", c.function.as_str()),
            )
        })?;
    }
    Ok(())
}

fn check_mutation(t: &TableSchema, m: &Mutation) -> Result<(), ConstraintViolation> {
    let col = t.column(&m.column)?;
    if !col.mutable {
        return Err(violation(
            t,
            &m.column,
            "is immutable and cannot be mutated",
        ));
    }
    let ct = &col.column_type;
    let result = match m.mutator {
        Mutator::Insert => relaxed(ct).check(&m.value),
        Mutator::Delete if ct.is_map() => {
            // By pairs (a map), or by keys (a set of the key type).
            if m.value.is_map() {
                relaxed(ct).check(&m.value)
            } else {
                ColumnType {
                    value: None,
                    ..relaxed(ct)
                }
                .check(&m.value)
            }
        }
        Mutator::Delete => relaxed(ct).check(&m.value),
        _ => {
            if ct.is_map()
                || !matches!(
                    ct.key.atomic,
                    crate::schema::AtomicType::Integer | crate::schema::AtomicType::Real
                )
            {
                Err(format!(
                    "{} applies only to integer or real columns",
                    m.mutator.as_str()
                ))
            } else {
                ColumnType {
                    min: 1,
                    max: Some(1),
                    ..ct.clone()
                }
                .check(&m.value)
            }
        }
    };
    result.map_err(|msg| {
        violation(
            t,
            &m.column,
            format!("mutation {}: {msg}", m.mutator.as_str()),
        )
    })
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                map.serialize_entry("op", "insert")?;
                map.serialize_entry("table", table)?;
                map.serialize_entry("row", row)?;
                if let Some(n) = uuid_name {
                    map.serialize_entry("uuid-name", n)?;
                }
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                map.serialize_entry("op", "select")?;
                map.serialize_entry("table", table)?;
                map.serialize_entry("where", conditions)?;
                if let Some(c) = columns {
                    map.serialize_entry("columns", c)?;
                }
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                map.serialize_entry("op", "update")?;
                map.serialize_entry("table", table)?;
                map.serialize_entry("where", conditions)?;
                map.serialize_entry("row", row)?;
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                map.serialize_entry("op", "mutate")?;
                map.serialize_entry("table", table)?;
                map.serialize_entry("where", conditions)?;
                map.serialize_entry("mutations", mutations)?;
            }
            Operation::Delete { table, conditions } => {
                map.serialize_entry("op", "delete")?;
                map.serialize_entry("table", table)?;
                map.serialize_entry("where", conditions)?;
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until_equal,
                rows,
                timeout_ms,
            } => {
                map.serialize_entry("op", "wait")?;
                map.serialize_entry("table", table)?;
                map.serialize_entry("where", conditions)?;
                map.serialize_entry("columns", columns)?;
                map.serialize_entry("until", if *until_equal { "==" } else { "!=" })?;
                map.serialize_entry("rows", rows)?;
                if let Some(t) = timeout_ms {
                    map.serialize_entry("timeout", t)?;
                }
            }
            Operation::Commit { durable } => {
                map.serialize_entry("op", "commit")?;
                map.serialize_entry("durable", durable)?;
            }
            Operation::Abort => map.serialize_entry("op", "abort")?,
            Operation::Comment(c) => {
                map.serialize_entry("op", "comment")?;
                map.serialize_entry("comment", c)?;
            }
            Operation::Assert { lock } => {
                map.serialize_entry("op", "assert")?;
                map.serialize_entry("lock", lock)?;
            }
        }
        map.end()
    }
}

/// An error the server reports, inside a transaction result or as a method's `error`
/// (RFC 7047 §3.1 and §4.1.3, plus the ones ovsdb-server adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// `referential integrity violation`
    ReferentialIntegrityViolation,
    /// `constraint violation`
    ConstraintViolation,
    /// `resources exhausted`
    ResourcesExhausted,
    /// `I/O error`
    IoError,
    /// `duplicate uuid-name`
    DuplicateUuidName,
    /// `domain error`
    DomainError,
    /// `range error`
    RangeError,
    /// `timed out`
    TimedOut,
    /// `not supported`
    NotSupported,
    /// `aborted`
    Aborted,
    /// `not owner`
    NotOwner,
    /// `syntax error` (also unknown tables and columns)
    SyntaxError,
    /// `unknown database`
    UnknownDatabase,
    /// `canceled`
    Canceled,
    /// `not leader`: a clustered server that is not the leader refused a request that needs it.
    NotLeader,
    /// `permission error`: role-based access control refused the operation.
    PermissionError,
    /// `unknown method` and other errors ovsdb-server may add.
    Other(String),
}

impl ErrorKind {
    /// Classifies the `error` string.
    pub fn parse(s: &str) -> ErrorKind {
        match s {
            "referential integrity violation" => ErrorKind::ReferentialIntegrityViolation,
            "constraint violation" => ErrorKind::ConstraintViolation,
            "resources exhausted" => ErrorKind::ResourcesExhausted,
            "I/O error" => ErrorKind::IoError,
            "duplicate uuid-name" => ErrorKind::DuplicateUuidName,
            "domain error" => ErrorKind::DomainError,
            "range error" => ErrorKind::RangeError,
            "timed out" => ErrorKind::TimedOut,
            "not supported" => ErrorKind::NotSupported,
            "aborted" => ErrorKind::Aborted,
            "not owner" => ErrorKind::NotOwner,
            "syntax error" => ErrorKind::SyntaxError,
            "unknown database" => ErrorKind::UnknownDatabase,
            "canceled" => ErrorKind::Canceled,
            "not leader" => ErrorKind::NotLeader,
            "permission error" => ErrorKind::PermissionError,
            other => ErrorKind::Other(other.to_string()),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::ReferentialIntegrityViolation => "referential integrity violation",
            ErrorKind::ConstraintViolation => "constraint violation",
            ErrorKind::ResourcesExhausted => "resources exhausted",
            ErrorKind::IoError => "I/O error",
            ErrorKind::DuplicateUuidName => "duplicate uuid-name",
            ErrorKind::DomainError => "domain error",
            ErrorKind::RangeError => "range error",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::NotSupported => "not supported",
            ErrorKind::Aborted => "aborted",
            ErrorKind::NotOwner => "not owner",
            ErrorKind::SyntaxError => "syntax error",
            ErrorKind::UnknownDatabase => "unknown database",
            ErrorKind::Canceled => "canceled",
            ErrorKind::NotLeader => "not leader",
            ErrorKind::PermissionError => "permission error",
            ErrorKind::Other(s) => s,
        }
    }
}

/// An error object from the server: `{"error": kind, "details": …}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", kind.as_str(), details.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct ServerError {
    /// The classified `error`.
    pub kind: ErrorKind,
    /// The `details`, if any.
    pub details: Option<String>,
}

impl ServerError {
    /// Reads `{"error": "...", "details": "..."}` (or a bare string).
    pub fn from_json(v: &Json) -> ServerError {
        match v {
            Json::String(s) => ServerError {
                kind: ErrorKind::parse(s),
                details: None,
            },
            Json::Object(o) => ServerError {
                kind: ErrorKind::parse(o.get("error").and_then(Json::as_str).unwrap_or("")),
                details: o.get("details").and_then(|d| match d {
                    Json::String(s) => Some(s.clone()),
                    Json::Null => None,
                    other => Some(other.to_string()),
                }),
            },
            other => ServerError {
                kind: ErrorKind::Other(other.to_string()),
                details: None,
            },
        }
    }
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationResult {
    /// `insert`: the new row's UUID.
    Insert(Uuid),
    /// `select`: the rows (values canonical, not coerced to the schema).
    Select(Vec<Row>),
    /// `update`, `mutate`, `delete`: how many rows matched.
    Count(u64),
    /// `wait`, `commit`, `comment`, `assert`: nothing to report.
    Empty,
}

/// A transaction that did not commit: which operation failed and why. A failure detected when
/// committing (constraint or referential integrity) has `index` equal to the number of
/// operations, as RFC 7047 adds one extra result for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction failed at operation {index}{}: {error}", if *commit_time { " (at commit)" } else { "" })]
pub struct TransactError {
    /// Index of the failed operation (= number of operations for a commit-time failure).
    pub index: usize,
    /// Whether the failure happened at commit, after every operation succeeded.
    pub commit_time: bool,
    /// The server's error.
    pub error: ServerError,
}

/// Why a `transact` reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed transact reply: {0}")]
pub struct MalformedReply(pub String);

/// Decodes a `transact` result against the operations sent: one result per operation (plus a
/// possible extra error), each of the shape its operation calls for.
pub fn decode_results(
    ops: &[Operation],
    result: &Json,
) -> Result<Result<Vec<OperationResult>, TransactError>, MalformedReply> {
    let items = result
        .as_array()
        .ok_or_else(|| MalformedReply(format!("expected an array, got {}", short(result))))?;
    if items.len() < ops.len() {
        return Err(MalformedReply(format!(
            "{} results for {} operations",
            items.len(),
            ops.len()
        )));
    }
    // The first error wins; later results are null.
    for (i, item) in items.iter().enumerate() {
        if let Some(e) = item.get("error").filter(|e| !e.is_null()) {
            return Ok(Err(TransactError {
                index: i,
                commit_time: i >= ops.len(),
                error: ServerError::from_json(&serde_json::json!({
                    "error": e,
                    "details": item.get("details").cloned().unwrap_or(Json::Null),
                })),
            }));
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    for (op, item) in ops.iter().zip(items) {
        let r = match op {
            Operation::Insert { .. } => {
                let u = item.get("uuid").ok_or_else(|| {
                    MalformedReply(format!("insert result without uuid: {}", short(item)))
                })?;
                let a: Atom = serde_json::from_value(u.clone())
                    .map_err(|e| MalformedReply(format!("insert uuid: {e}")))?;
                OperationResult::Insert(
                    a.as_uuid()
                        .ok_or_else(|| MalformedReply(format!("insert uuid is {a}")))?,
                )
            }
            Operation::Select { .. } => {
                let rows = item.get("rows").ok_or_else(|| {
                    MalformedReply(format!("select result without rows: {}", short(item)))
                })?;
                let rows: Vec<Row> = serde_json::from_value(rows.clone())
                    .map_err(|e| MalformedReply(format!("select rows: {e}")))?;
                OperationResult::Select(rows)
            }
            Operation::Update { .. } | Operation::Mutate { .. } | Operation::Delete { .. } => {
                let n = item.get("count").and_then(Json::as_u64).ok_or_else(|| {
                    MalformedReply(format!("result without count: {}", short(item)))
                })?;
                OperationResult::Count(n)
            }
            _ => {
                if !item.is_object() {
                    return Err(MalformedReply(format!(
                        "expected an object, got {}",
                        short(item)
                    )));
                }
                OperationResult::Empty
            }
        };
        out.push(r);
    }
    Ok(Ok(out))
}

fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nb() -> DatabaseSchema {
        DatabaseSchema::from_json_str(include_str!("../../schemas/ovn-nb.ovsschema")).unwrap()
    }

    fn row(pairs: Vec<(&str, Datum)>) -> Row {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn operations_serialize_as_rfc_7047_says() {
        let u = Uuid::parse_str("0b3f5c1a-9a7e-4b4e-8f43-2b0c1f6d7e11").unwrap();
        let ops = vec![
            Operation::Insert {
                table: "Logical_Switch".into(),
                row: row(vec![("name", Datum::atom("sw0"))]),
                uuid_name: Some("ls".into()),
            },
            Operation::Mutate {
                table: "Logical_Router".into(),
                conditions: vec![Condition::uuid(u)],
                mutations: vec![Mutation::insert(
                    "ports",
                    Datum::atom(Atom::NamedUuid("p".into())),
                )],
            },
            Operation::Wait {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::eq("name", "sw0")],
                columns: vec!["name".into()],
                until_equal: false,
                rows: vec![],
                timeout_ms: Some(0),
            },
            Operation::Commit { durable: false },
            Operation::Comment("hi".into()),
            Operation::Assert { lock: "l".into() },
            Operation::Abort,
        ];
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            json!([
                {"op": "insert", "table": "Logical_Switch", "row": {"name": "sw0"}, "uuid-name": "ls"},
                {"op": "mutate", "table": "Logical_Router", "where": [["_uuid", "==", ["uuid", u.to_string()]]],
                 "mutations": [["ports", "insert", ["named-uuid", "p"]]]},
                {"op": "wait", "table": "Logical_Switch", "where": [["name", "==", "sw0"]], "columns": ["name"],
                 "until": "!=", "rows": [], "timeout": 0},
                {"op": "commit", "durable": false},
                {"op": "comment", "comment": "hi"},
                {"op": "assert", "lock": "l"},
                {"op": "abort"},
            ])
        );
    }

    #[test]
    fn validation_names_table_and_column() {
        let s = nb();
        let bad_enum = Operation::Insert {
            table: "Logical_Router_Static_Route".into(),
            row: row(vec![("policy", Datum::atom("sideways"))]),
            uuid_name: None,
        };
        let e = bad_enum.validate(&s).unwrap_err();
        assert_eq!(
            (e.table.as_str(), e.column.as_str()),
            ("Logical_Router_Static_Route", "policy")
        );
        let unknown = Operation::Select {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::eq("nmae", "x")],
            columns: None,
        };
        assert!(unknown.validate(&s).is_err());
        let no_table = Operation::Delete {
            table: "Nope".into(),
            conditions: vec![],
        };
        assert!(no_table.validate(&s).is_err());
        let ordered_on_string = Operation::Select {
            table: "Logical_Switch".into(),
            conditions: vec![Condition {
                column: "name".into(),
                function: Function::Lt,
                value: Datum::atom("x"),
            }],
            columns: None,
        };
        assert!(ordered_on_string.validate(&s).is_err());
        let ok = Operation::Mutate {
            table: "Logical_Switch".into(),
            conditions: vec![Condition::eq("name", "sw0")],
            mutations: vec![
                Mutation::insert("external_ids", Datum::map([("a", "b")])),
                Mutation::delete("external_ids", Datum::set(["a"])),
            ],
        };
        ok.validate(&s).unwrap();
        let arith_on_map = Operation::Mutate {
            table: "Logical_Switch".into(),
            conditions: vec![],
            mutations: vec![Mutation {
                column: "external_ids".into(),
                mutator: Mutator::Add,
                value: Datum::atom(1i64),
            }],
        };
        assert!(arith_on_map.validate(&s).is_err());
    }

    #[test]
    fn results_decode_per_operation_and_errors_are_typed() {
        let ops = vec![
            Operation::Insert {
                table: "T".into(),
                row: Row::new(),
                uuid_name: None,
            },
            Operation::Select {
                table: "T".into(),
                conditions: vec![],
                columns: None,
            },
            Operation::Delete {
                table: "T".into(),
                conditions: vec![],
            },
            Operation::Comment("c".into()),
        ];
        let u = "0b3f5c1a-9a7e-4b4e-8f43-2b0c1f6d7e11";
        let ok = json!([{"uuid": ["uuid", u]}, {"rows": [{"name": "a"}]}, {"count": 2}, {}]);
        let r = decode_results(&ops, &ok).unwrap().unwrap();
        assert_eq!(r[0], OperationResult::Insert(Uuid::parse_str(u).unwrap()));
        assert_eq!(r[2], OperationResult::Count(2));
        let failed = json!([{"uuid": ["uuid", u]}, {"error": "syntax error", "details": "no table"}, null, null]);
        let e = decode_results(&ops, &failed).unwrap().unwrap_err();
        assert_eq!((e.index, e.commit_time), (1, false));
        assert_eq!(e.error.kind, ErrorKind::SyntaxError);
        let at_commit = json!([{"uuid": ["uuid", u]}, {"rows": []}, {"count": 0}, {},
                               {"error": "referential integrity violation", "details": "x"}]);
        let e = decode_results(&ops, &at_commit).unwrap().unwrap_err();
        assert!(e.commit_time && e.index == 4);
        assert_eq!(e.error.kind, ErrorKind::ReferentialIntegrityViolation);
        for garbage in [
            json!({}),
            json!([1]),
            json!([{"uuid": 3}, {}, {}, {}]),
            json!([{}, {}, {}, {}]),
        ] {
            assert!(decode_results(&ops, &garbage).is_err(), "{garbage}");
        }
    }
}
