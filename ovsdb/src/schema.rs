//! Database schemas (RFC 7047 §3.2, as `.ovsschema` files and `get_schema` replies) and the
//! checks every value goes through before it is sent: atomic type, enum, integer and real
//! ranges, string lengths, reference targets, and set/map sizes.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::notation::{Atom, Datum};

/// A schema that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema{}: {message}", at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default())]
pub struct SchemaParseError {
    /// Where (`Logical_Switch.ports`), when known.
    pub at: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn perr(at: impl Into<String>, message: impl Into<String>) -> SchemaParseError {
    SchemaParseError {
        at: Some(at.into()),
        message: message.into(),
    }
}

/// A value that does not fit its column (checked before a request is sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}.{column}: {message}")]
pub struct ConstraintViolation {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// What is wrong, e.g. `"frob" is not one of [dst-ip, src-ip]`.
    pub message: String,
}

/// The five atomic types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicType {
    /// `integer`
    Integer,
    /// `real`
    Real,
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `uuid`
    Uuid,
}

impl AtomicType {
    fn parse(s: &str, at: &str) -> Result<AtomicType, SchemaParseError> {
        Ok(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            other => return Err(perr(at, format!("unknown atomic type {other:?}"))),
        })
    }

    /// The name as schemas spell it.
    pub fn name(self) -> &'static str {
        match self {
            AtomicType::Integer => "integer",
            AtomicType::Real => "real",
            AtomicType::Boolean => "boolean",
            AtomicType::String => "string",
            AtomicType::Uuid => "uuid",
        }
    }
}

impl fmt::Display for AtomicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Strong references keep their target alive and may not dangle; weak ones are removed by the
/// server when the target goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefType {
    /// `strong` (the default)
    #[default]
    Strong,
    /// `weak`
    Weak,
}

/// The type of a key or value: an atomic type with optional constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseType {
    /// The atomic type.
    pub atomic: AtomicType,
    /// The allowed values, sorted, when constrained.
    pub enumeration: Option<Vec<Atom>>,
    /// Inclusive integer bounds.
    pub min_integer: Option<i64>,
    /// Inclusive integer bounds.
    pub max_integer: Option<i64>,
    /// Inclusive real bounds.
    pub min_real: Option<f64>,
    /// Inclusive real bounds.
    pub max_real: Option<f64>,
    /// String length bounds, in characters.
    pub min_length: Option<u64>,
    /// String length bounds, in characters.
    pub max_length: Option<u64>,
    /// The table a UUID refers to.
    pub ref_table: Option<String>,
    /// How it refers (meaningful with `ref_table`).
    pub ref_type: RefType,
}

impl BaseType {
    /// An unconstrained base type.
    pub fn plain(atomic: AtomicType) -> BaseType {
        BaseType {
            atomic,
            enumeration: None,
            min_integer: None,
            max_integer: None,
            min_real: None,
            max_real: None,
            min_length: None,
            max_length: None,
            ref_table: None,
            ref_type: RefType::Strong,
        }
    }

    fn parse(v: &Json, at: &str) -> Result<BaseType, SchemaParseError> {
        if let Some(s) = v.as_str() {
            return Ok(BaseType::plain(AtomicType::parse(s, at)?));
        }
        let obj = v
            .as_object()
            .ok_or_else(|| perr(at, "a base type is a string or an object"))?;
        let atomic = obj
            .get("type")
            .and_then(Json::as_str)
            .ok_or_else(|| perr(at, "base type without \"type\""))?;
        let mut b = BaseType::plain(AtomicType::parse(atomic, at)?);
        let int = |k: &str| -> Result<Option<i64>, SchemaParseError> {
            obj.get(k)
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| perr(at, format!("{k} is not an integer")))
                })
                .transpose()
        };
        let real = |k: &str| -> Result<Option<f64>, SchemaParseError> {
            obj.get(k)
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| perr(at, format!("{k} is not a number")))
                })
                .transpose()
        };
        let len = |k: &str| -> Result<Option<u64>, SchemaParseError> {
            obj.get(k)
                .map(|x| {
                    x.as_u64()
                        .ok_or_else(|| perr(at, format!("{k} is not a length")))
                })
                .transpose()
        };
        b.min_integer = int("minInteger")?;
        b.max_integer = int("maxInteger")?;
        b.min_real = real("minReal")?;
        b.max_real = real("maxReal")?;
        b.min_length = len("minLength")?;
        b.max_length = len("maxLength")?;
        if let Some(t) = obj.get("refTable") {
            let t = t
                .as_str()
                .ok_or_else(|| perr(at, "refTable is not a string"))?;
            b.ref_table = Some(t.to_string());
        }
        if let Some(r) = obj.get("refType") {
            b.ref_type = match r.as_str() {
                Some("strong") => RefType::Strong,
                Some("weak") => RefType::Weak,
                _ => return Err(perr(at, "refType is neither \"strong\" nor \"weak\"")),
            };
        }
        if let Some(e) = obj.get("enum") {
            let d: Datum = serde_json::from_value(e.clone())
                .map_err(|err| perr(at, format!("bad enum: {err}")))?;
            let mut atoms = d.as_set().to_vec();
            if b.atomic == AtomicType::Real {
                for a in atoms.iter_mut() {
                    if let Atom::Integer(i) = *a {
                        *a = Atom::Real(i as f64);
                    }
                }
                atoms.sort();
            }
            b.enumeration = Some(atoms);
        }
        Ok(b)
    }

    /// Checks one atom against this type and its constraints.
    pub fn check(&self, a: &Atom) -> Result<(), String> {
        let type_ok = matches!(
            (self.atomic, a),
            (AtomicType::Integer, Atom::Integer(_))
                | (AtomicType::Real, Atom::Real(_) | Atom::Integer(_))
                | (AtomicType::Boolean, Atom::Boolean(_))
                | (AtomicType::String, Atom::String(_))
                | (AtomicType::Uuid, Atom::Uuid(_) | Atom::NamedUuid(_))
        );
        if !type_ok {
            return Err(format!("{a} is not of type {}", self.atomic));
        }
        if let Some(allowed) = &self.enumeration {
            let probe = match (self.atomic, a) {
                (AtomicType::Real, Atom::Integer(i)) => Atom::Real(*i as f64),
                _ => a.clone(),
            };
            if allowed.binary_search(&probe).is_err() {
                let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                return Err(format!("{a} is not one of [{}]", list.join(", ")));
            }
        }
        let out_of_range = match a {
            Atom::Integer(i) if self.atomic == AtomicType::Integer => {
                (self.min_integer.is_some_and(|m| *i < m)
                    || self.max_integer.is_some_and(|m| *i > m))
                .then(|| {
                    format!(
                        "{i} is outside [{}, {}]",
                        self.min_integer.map_or("-inf".into(), |m| m.to_string()),
                        self.max_integer.map_or("inf".into(), |m| m.to_string())
                    )
                })
            }
            Atom::Integer(_) | Atom::Real(_) if self.atomic == AtomicType::Real => {
                let r = a.as_f64().unwrap_or_default();
                (self.min_real.is_some_and(|m| r < m) || self.max_real.is_some_and(|m| r > m))
                    .then(|| format!("{r} is outside the allowed range"))
            }
            Atom::String(s) => {
                let n = s.chars().count() as u64;
                (self.min_length.is_some_and(|m| n < m) || self.max_length.is_some_and(|m| n > m))
                    .then(|| {
                        format!(
                            "{a} has {n} characters, allowed {}..{}",
                            self.min_length.unwrap_or(0),
                            self.max_length.map_or("".into(), |m| m.to_string())
                        )
                    })
            }
            _ => None,
        };
        if let Some(e) = out_of_range {
            return Err(e);
        }
        Ok(())
    }
}

/// A column's type: a set of `min..=max` keys, or a map when `value` is present.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// The key (or element) type.
    pub key: BaseType,
    /// The value type, for maps.
    pub value: Option<BaseType>,
    /// Minimum number of elements (0 or 1).
    pub min: u64,
    /// Maximum number of elements; `None` is `"unlimited"`.
    pub max: Option<u64>,
}

impl ColumnType {
    fn parse(v: &Json, at: &str) -> Result<ColumnType, SchemaParseError> {
        if v.is_string() {
            return Ok(ColumnType {
                key: BaseType::parse(v, at)?,
                value: None,
                min: 1,
                max: Some(1),
            });
        }
        let obj = v
            .as_object()
            .ok_or_else(|| perr(at, "a column type is a string or an object"))?;
        let key = BaseType::parse(
            obj.get("key").ok_or_else(|| perr(at, "type without key"))?,
            at,
        )?;
        let value = obj
            .get("value")
            .map(|v| BaseType::parse(v, at))
            .transpose()?;
        let min = match obj.get("min") {
            None => 1,
            Some(m) => m.as_u64().ok_or_else(|| perr(at, "min is not 0 or 1"))?,
        };
        let max = match obj.get("max") {
            None => Some(1),
            Some(Json::String(s)) if s == "unlimited" => None,
            Some(m) => Some(
                m.as_u64()
                    .ok_or_else(|| perr(at, "max is not a count or \"unlimited\""))?,
            ),
        };
        if min > 1 || max.is_some_and(|m| m < 1 || m < min) {
            return Err(perr(at, format!("invalid min {min} / max {max:?}")));
        }
        Ok(ColumnType {
            key,
            value,
            min,
            max,
        })
    }

    /// Whether this is a map column.
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Whether this column holds exactly one atom (`min` = `max` = 1, not a map).
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// Whether this column holds zero or one atom.
    pub fn is_optional(&self) -> bool {
        self.value.is_none() && self.min == 0 && self.max == Some(1)
    }

    /// Checks a whole datum: map or set as the type says, the element count, every atom.
    pub fn check(&self, d: &Datum) -> Result<(), String> {
        match (d, &self.value) {
            (Datum::Map(_), None) => return Err("a map was given for a set column".into()),
            // The empty set is also how the empty map reads without a schema.
            (Datum::Set(s), Some(_)) if !s.is_empty() => {
                return Err("a set was given for a map column".into())
            }
            _ => {}
        }
        let n = d.len() as u64;
        if n < self.min || self.max.is_some_and(|m| n > m) {
            return Err(format!(
                "{n} elements, allowed {}..{}",
                self.min,
                self.max.map_or("unlimited".into(), |m| m.to_string())
            ));
        }
        match d {
            Datum::Set(v) => v.iter().try_for_each(|a| self.key.check(a)),
            Datum::Map(v) => {
                let value = self.value.as_ref().unwrap_or(&self.key);
                v.iter().try_for_each(|(k, val)| {
                    self.key.check(k).map_err(|e| format!("key {e}"))?;
                    value.check(val).map_err(|e| format!("value of {k}: {e}"))
                })
            }
        }
    }

    /// The value a column has when a row is inserted without it (RFC 7047 §5.1 defaults).
    pub fn default_datum(&self) -> Datum {
        if self.is_map() {
            return Datum::empty_map();
        }
        if self.min == 0 {
            return Datum::empty_set();
        }
        let atom = match self.key.atomic {
            AtomicType::Integer => Atom::Integer(0),
            AtomicType::Real => Atom::Real(0.0),
            AtomicType::Boolean => Atom::Boolean(false),
            AtomicType::String => Atom::String(String::new()),
            AtomicType::Uuid => Atom::Uuid(uuid::Uuid::nil()),
        };
        Datum::atom(atom)
    }

    /// Fixes what JSON cannot express (integers in real columns; the empty set in map
    /// columns) so a decoded datum compares equal to one built by hand.
    pub fn coerce(&self, d: &mut Datum) {
        if self.is_map() && matches!(d, Datum::Set(s) if s.is_empty()) {
            *d = Datum::empty_map();
        }
        let value_real = self
            .value
            .as_ref()
            .is_some_and(|v| v.atomic == AtomicType::Real);
        d.coerce_reals(self.key.atomic == AtomicType::Real, value_real);
    }
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    /// The column name.
    pub name: String,
    /// Its type.
    pub column_type: ColumnType,
    /// Not persisted (kept in memory by the server only).
    pub ephemeral: bool,
    /// Whether `update`/`mutate` may change it after insert.
    pub mutable: bool,
}

/// A table of a database.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The table name.
    pub name: String,
    /// Its columns (without `_uuid` and `_version`).
    pub columns: BTreeMap<String, ColumnSchema>,
    /// The most rows it may hold.
    pub max_rows: Option<u64>,
    /// Root tables hold rows nobody references; non-root rows die when unreferenced.
    pub is_root: bool,
    /// Column sets that must be unique across rows.
    pub indexes: Vec<Vec<String>>,
}

impl TableSchema {
    /// The column's schema, or a violation naming the table and column.
    pub fn column(&self, name: &str) -> Result<&ColumnSchema, ConstraintViolation> {
        self.columns.get(name).ok_or_else(|| ConstraintViolation {
            table: self.name.clone(),
            column: name.to_string(),
            message: "no such column".into(),
        })
    }

    /// Checks the value of one column (for insert, update, or a condition's operand).
    pub fn check_value(&self, column: &str, d: &Datum) -> Result<(), ConstraintViolation> {
        let c = self.column(column)?;
        c.column_type
            .check(d)
            .map_err(|message| ConstraintViolation {
                table: self.name.clone(),
                column: column.to_string(),
                message,
            })
    }
}

/// A database schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSchema {
    /// The database name (`OVN_Northbound`).
    pub name: String,
    /// Its version, `x.y.z`.
    pub version: String,
    /// The checksum the schema file carries, if any.
    pub cksum: Option<String>,
    /// The tables.
    pub tables: BTreeMap<String, TableSchema>,
}

impl DatabaseSchema {
    /// Parses a schema from its JSON text (a `.ovsschema` file or a `get_schema` reply).
    pub fn from_json_str(text: &str) -> Result<DatabaseSchema, SchemaParseError> {
        let v: Json = serde_json::from_str(text).map_err(|e| SchemaParseError {
            at: None,
            message: format!("not JSON: {e}"),
        })?;
        Self::from_json(&v)
    }

    /// Parses a schema from a JSON value.
    pub fn from_json(v: &Json) -> Result<DatabaseSchema, SchemaParseError> {
        let obj = v.as_object().ok_or_else(|| SchemaParseError {
            at: None,
            message: "a schema is a JSON object".into(),
        })?;
        let name = obj
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| perr("name", "missing"))?
            .to_string();
        let version = obj
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or("0.0.0")
            .to_string();
        let cksum = obj.get("cksum").and_then(Json::as_str).map(str::to_string);
        let tables_json = obj
            .get("tables")
            .and_then(Json::as_object)
            .ok_or_else(|| perr("tables", "missing or not an object"))?;
        let mut tables = BTreeMap::new();
        for (tname, t) in tables_json {
            let t = t
                .as_object()
                .ok_or_else(|| perr(tname.clone(), "a table is an object"))?;
            let cols_json = t
                .get("columns")
                .and_then(Json::as_object)
                .ok_or_else(|| perr(tname.clone(), "columns missing"))?;
            let mut columns = BTreeMap::new();
            for (cname, c) in cols_json {
                let at = format!("{tname}.{cname}");
                let c = c
                    .as_object()
                    .ok_or_else(|| perr(&at, "a column is an object"))?;
                let column_type = ColumnType::parse(
                    c.get("type").ok_or_else(|| perr(&at, "type missing"))?,
                    &at,
                )?;
                if let Some(rt) = &column_type.key.ref_table {
                    if !tables_json.contains_key(rt) {
                        return Err(perr(&at, format!("refTable {rt} does not exist")));
                    }
                }
                columns.insert(
                    cname.clone(),
                    ColumnSchema {
                        name: cname.clone(),
                        column_type,
                        ephemeral: c.get("ephemeral").and_then(Json::as_bool).unwrap_or(false),
                        mutable: c.get("mutable").and_then(Json::as_bool).unwrap_or(true),
                    },
                );
            }
            let indexes = match t.get("indexes") {
                None => Vec::new(),
                Some(i) => Vec::<Vec<String>>::deserialize(i)
                    .map_err(|e| perr(tname.clone(), format!("bad indexes: {e}")))?,
            };
            for idx in &indexes {
                if let Some(c) = idx.iter().find(|c| !columns.contains_key(*c)) {
                    return Err(perr(
                        tname.clone(),
                        format!("index names unknown column {c}"),
                    ));
                }
            }
            tables.insert(
                tname.clone(),
                TableSchema {
                    name: tname.clone(),
                    columns,
                    max_rows: t.get("maxRows").and_then(Json::as_u64),
                    is_root: t.get("isRoot").and_then(Json::as_bool).unwrap_or(false),
                    indexes,
                },
            );
        }
        Ok(DatabaseSchema {
            name,
            version,
            cksum,
            tables,
        })
    }

    /// The table's schema, or a violation naming it.
    pub fn table(&self, name: &str) -> Result<&TableSchema, ConstraintViolation> {
        self.tables.get(name).ok_or_else(|| ConstraintViolation {
            table: name.to_string(),
            column: String::new(),
            message: format!("no such table in {}", self.name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NB: &str = include_str!("../../schemas/ovn-nb.ovsschema");
    const SB: &str = include_str!("../../schemas/ovn-sb.ovsschema");
    const VS: &str = include_str!("../../schemas/vswitch.ovsschema");
    const SERVER: &str = include_str!("../../schemas/_server.ovsschema");

    #[test]
    fn the_committed_schemas_parse() {
        for (text, name, min_tables) in [
            (NB, "OVN_Northbound", 25),
            (SB, "OVN_Southbound", 30),
            (VS, "Open_vSwitch", 15),
            (SERVER, "_Server", 1),
        ] {
            let s = DatabaseSchema::from_json_str(text).unwrap();
            assert_eq!(s.name, name);
            assert!(s.tables.len() >= min_tables, "{name}: {}", s.tables.len());
        }
    }

    fn nb() -> DatabaseSchema {
        DatabaseSchema::from_json_str(NB).unwrap()
    }

    #[test]
    fn column_types_are_read_as_written() {
        let s = nb();
        let ls = s.table("Logical_Switch").unwrap();
        let ports = &ls.column("ports").unwrap().column_type;
        assert_eq!(ports.key.ref_table.as_deref(), Some("Logical_Switch_Port"));
        assert_eq!((ports.min, ports.max), (0, None));
        let ext = &ls.column("external_ids").unwrap().column_type;
        assert!(ext.is_map());
        let name = &ls.column("name").unwrap().column_type;
        assert!(name.is_scalar());
        let route = s.table("Logical_Router_Static_Route").unwrap();
        let policy = &route.column("policy").unwrap().column_type;
        assert!(policy.is_optional());
        assert_eq!(policy.key.enumeration.as_ref().unwrap().len(), 2);
        assert_eq!(s.table("NB_Global").unwrap().max_rows, Some(1));
        assert!(s.table("ACL").unwrap().columns.contains_key("match"));
    }

    #[test]
    fn values_are_checked_against_their_column() {
        let s = nb();
        let route = s.table("Logical_Router_Static_Route").unwrap();
        assert!(route.check_value("policy", &Datum::atom("dst-ip")).is_ok());
        assert!(route.check_value("policy", &Datum::empty_set()).is_ok());
        let e = route
            .check_value("policy", &Datum::atom("sideways"))
            .unwrap_err();
        assert!(e.to_string().contains("is not one of"), "{e}");
        assert!(route
            .check_value("policy", &Datum::set(["dst-ip", "src-ip"]))
            .is_err());
        let acl = s.table("ACL").unwrap();
        assert!(acl.check_value("priority", &Datum::atom(1000i64)).is_ok());
        assert!(acl.check_value("priority", &Datum::atom(40000i64)).is_err());
        assert!(acl.check_value("priority", &Datum::atom("high")).is_err());
        let ls = s.table("Logical_Switch").unwrap();
        assert!(ls
            .check_value("external_ids", &Datum::map([("a", "b")]))
            .is_ok());
        assert!(ls.check_value("external_ids", &Datum::set(["a"])).is_err());
        assert!(ls
            .check_value("external_ids", &Datum::map([("a", 1i64)]))
            .is_err());
        assert!(ls.check_value("nonexistent", &Datum::atom(1i64)).is_err());
        let pg = s.table("Port_Group").unwrap();
        assert!(pg
            .check_value("ports", &Datum::set([Atom::NamedUuid("p".into())]))
            .is_ok());
        assert!(s.table("Nope").is_err());
    }

    #[test]
    fn broken_schemas_are_rejected_with_a_location() {
        let bad =
            r#"{"name":"X","version":"1.0.0","tables":{"T":{"columns":{"c":{"type":"float"}}}}}"#;
        let e = DatabaseSchema::from_json_str(bad).unwrap_err();
        assert_eq!(e.at.as_deref(), Some("T.c"));
        let dangling = r#"{"name":"X","tables":{"T":{"columns":{"c":{"type":{"key":{"type":"uuid","refTable":"U"}}}}}}}"#;
        assert!(DatabaseSchema::from_json_str(dangling).is_err());
        assert!(DatabaseSchema::from_json_str("[]").is_err());
        assert!(DatabaseSchema::from_json_str("{").is_err());
    }

    #[test]
    fn defaults_follow_rfc_7047() {
        let s = nb();
        let ls = s.table("Logical_Switch").unwrap();
        assert_eq!(
            ls.column("name").unwrap().column_type.default_datum(),
            Datum::atom("")
        );
        assert_eq!(
            ls.column("ports").unwrap().column_type.default_datum(),
            Datum::empty_set()
        );
        assert_eq!(
            ls.column("external_ids")
                .unwrap()
                .column_type
                .default_datum(),
            Datum::empty_map()
        );
    }
}
