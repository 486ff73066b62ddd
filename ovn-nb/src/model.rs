//! The runtime the generated tables build on: typed references, the [`Table`] trait, and the
//! conversions between Rust values and OVSDB datums.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use ovsdb::{Atom, Datum, Row, Uuid};

/// A value read from the database that does not fit the Rust type of its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}.{column}: {message}")]
pub struct ModelError {
    /// The table.
    pub table: &'static str,
    /// The column.
    pub column: &'static str,
    /// What did not fit.
    pub message: String,
}

/// A row type of a table of a database schema.
pub trait Table: Sized + Clone + PartialEq + fmt::Debug + Default {
    /// The table name as the schema spells it (`Logical_Switch`).
    const TABLE: &'static str;
    /// The database (`OVN_Northbound`).
    const DATABASE: &'static str;
    /// The column names, in schema order.
    const COLUMNS: &'static [&'static str];

    /// Every column as a datum (defaults included).
    fn to_row(&self) -> Row;

    /// Reads a row; absent columns take their default.
    fn from_row(row: &Row) -> Result<Self, ModelError>;

    /// One column as a datum, by name (`None` for an unknown column).
    fn column(&self, name: &str) -> Option<Datum>;
}

/// The target of a reference: a committed row, or a row inserted earlier in the same
/// transaction under a `uuid-name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefTarget {
    /// An existing row.
    Uuid(Uuid),
    /// A row of the same transaction.
    Named(String),
}

/// A reference to a row of table `T`.
pub struct Ref<T> {
    target: RefTarget,
    _table: PhantomData<fn() -> T>,
}

impl<T> Ref<T> {
    /// A reference to an existing row.
    pub fn uuid(uuid: Uuid) -> Self {
        Ref {
            target: RefTarget::Uuid(uuid),
            _table: PhantomData,
        }
    }

    /// A reference to the row inserted under `uuid-name` in the same transaction.
    pub fn named(name: impl Into<String>) -> Self {
        Ref {
            target: RefTarget::Named(name.into()),
            _table: PhantomData,
        }
    }

    /// The target.
    pub fn target(&self) -> &RefTarget {
        &self.target
    }

    /// The UUID, when the target is an existing row.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match &self.target {
            RefTarget::Uuid(u) => Some(*u),
            RefTarget::Named(_) => None,
        }
    }
}

/// The all-zeros UUID, as OVSDB defaults a required reference that was not set.
impl<T> Default for Ref<T> {
    fn default() -> Self {
        Ref::uuid(Uuid::nil())
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Ref {
            target: self.target.clone(),
            _table: PhantomData,
        }
    }
}
impl<T> PartialEq for Ref<T> {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target
    }
}
impl<T> Eq for Ref<T> {}
impl<T> PartialOrd for Ref<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ref<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.target.cmp(&other.target)
    }
}
impl<T> std::hash::Hash for Ref<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.target.hash(state)
    }
}
impl<T> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            RefTarget::Uuid(u) => write!(f, "Ref({u})"),
            RefTarget::Named(n) => write!(f, "Ref(@{n})"),
        }
    }
}

/// A string enumeration of a column (`"dst-ip" | "src-ip"`), generated per column.
pub trait ColumnEnum: Sized + Copy + 'static {
    /// Every value.
    const ALL: &'static [Self];
    /// The schema's spelling.
    fn as_str(self) -> &'static str;
    /// Parses the schema's spelling.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// One element of a column: converts to and from an atom.
pub trait AtomValue: Sized {
    /// As an atom.
    fn to_atom(&self) -> Atom;
    /// From an atom, or what was wrong.
    fn from_atom(a: &Atom) -> Result<Self, String>;
}

impl AtomValue for String {
    fn to_atom(&self) -> Atom {
        Atom::String(self.clone())
    }
    fn from_atom(a: &Atom) -> Result<Self, String> {
        a.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{a} is not a string"))
    }
}
impl AtomValue for i64 {
    fn to_atom(&self) -> Atom {
        Atom::Integer(*self)
    }
    fn from_atom(a: &Atom) -> Result<Self, String> {
        a.as_i64().ok_or_else(|| format!("{a} is not an integer"))
    }
}
impl AtomValue for f64 {
    fn to_atom(&self) -> Atom {
        Atom::Real(*self)
    }
    fn from_atom(a: &Atom) -> Result<Self, String> {
        a.as_f64().ok_or_else(|| format!("{a} is not a number"))
    }
}
impl AtomValue for bool {
    fn to_atom(&self) -> Atom {
        Atom::Boolean(*self)
    }
    fn from_atom(a: &Atom) -> Result<Self, String> {
        a.as_bool().ok_or_else(|| format!("{a} is not a boolean"))
    }
}
impl AtomValue for Uuid {
    fn to_atom(&self) -> Atom {
        Atom::Uuid(*self)
    }
    fn from_atom(a: &Atom) -> Result<Self, String> {
        a.as_uuid().ok_or_else(|| format!("{a} is not a UUID"))
    }
}
impl<T> AtomValue for Ref<T> {
    fn to_atom(&self) -> Atom {
        match &self.target {
            RefTarget::Uuid(u) => Atom::Uuid(*u),
            RefTarget::Named(n) => Atom::NamedUuid(n.clone()),
        }
    }
    fn from_atom(a: &Atom) -> Result<Self, String> {
        match a {
            Atom::Uuid(u) => Ok(Ref::uuid(*u)),
            Atom::NamedUuid(n) => Ok(Ref::named(n.clone())),
            other => Err(format!("{other} is not a reference")),
        }
    }
}

/// A whole column value: converts to and from a datum.
pub trait ColumnValue: Sized {
    /// As a datum.
    fn to_datum(&self) -> Datum;
    /// From a datum, or what was wrong.
    fn from_datum(d: &Datum) -> Result<Self, String>;
}

/// Scalars: exactly one atom. Implemented for every [`AtomValue`] through this wrapper-free
/// macro so `Option`, `Vec` and maps can be implemented generically.
macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl ColumnValue for $t {
            fn to_datum(&self) -> Datum {
                Datum::atom(self.to_atom())
            }
            fn from_datum(d: &Datum) -> Result<Self, String> {
                let a = d.as_atom().ok_or_else(|| format!("expected one value, got {d}"))?;
                <$t as AtomValue>::from_atom(a)
            }
        }
    )*};
}
scalar!(String, i64, f64, bool, Uuid);

impl<T> ColumnValue for Ref<T> {
    fn to_datum(&self) -> Datum {
        Datum::atom(self.to_atom())
    }
    fn from_datum(d: &Datum) -> Result<Self, String> {
        let a = d
            .as_atom()
            .ok_or_else(|| format!("expected one reference, got {d}"))?;
        Ref::from_atom(a)
    }
}

impl<T: AtomValue> ColumnValue for Option<T> {
    fn to_datum(&self) -> Datum {
        match self {
            Some(v) => Datum::atom(v.to_atom()),
            None => Datum::empty_set(),
        }
    }
    fn from_datum(d: &Datum) -> Result<Self, String> {
        match d.as_set() {
            [] => Ok(None),
            [a] => T::from_atom(a).map(Some),
            _ => Err(format!("expected at most one value, got {d}")),
        }
    }
}

impl<T: AtomValue> ColumnValue for Vec<T> {
    fn to_datum(&self) -> Datum {
        Datum::set(self.iter().map(AtomValue::to_atom))
    }
    fn from_datum(d: &Datum) -> Result<Self, String> {
        if d.is_map() {
            return Err(format!("expected a set, got {d}"));
        }
        d.as_set().iter().map(T::from_atom).collect()
    }
}

impl<K: AtomValue + Ord, V: AtomValue> ColumnValue for BTreeMap<K, V> {
    fn to_datum(&self) -> Datum {
        Datum::map(self.iter().map(|(k, v)| (k.to_atom(), v.to_atom())))
    }
    fn from_datum(d: &Datum) -> Result<Self, String> {
        if !d.is_map() && !d.is_empty() {
            return Err(format!("expected a map, got {d}"));
        }
        d.as_map()
            .iter()
            .map(|(k, v)| Ok((K::from_atom(k)?, V::from_atom(v)?)))
            .collect()
    }
}

/// Reads column `column` of `row` into its Rust type; an absent column is its default.
pub fn read<T: ColumnValue + Default>(
    row: &Row,
    table: &'static str,
    column: &'static str,
) -> Result<T, ModelError> {
    match row.get(column) {
        None => Ok(T::default()),
        Some(d) => T::from_datum(d).map_err(|message| ModelError {
            table,
            column,
            message,
        }),
    }
}

/// Implements [`AtomValue`] for a generated [`ColumnEnum`].
#[macro_export]
#[doc(hidden)]
macro_rules! column_enum_atom {
    ($t:ty) => {
        impl $crate::AtomValue for $t {
            fn to_atom(&self) -> ::ovsdb::Atom {
                ::ovsdb::Atom::String($crate::ColumnEnum::as_str(*self).to_string())
            }
            fn from_atom(a: &::ovsdb::Atom) -> Result<Self, String> {
                let s = a.as_str().ok_or_else(|| format!("{a} is not a string"))?;
                <$t as $crate::ColumnEnum>::parse(s)
                    .ok_or_else(|| format!("{s:?} is not one of the allowed values"))
            }
        }
        impl $crate::ColumnValue for $t {
            fn to_datum(&self) -> ::ovsdb::Datum {
                ::ovsdb::Datum::atom($crate::AtomValue::to_atom(self))
            }
            fn from_datum(d: &::ovsdb::Datum) -> Result<Self, String> {
                let a = d
                    .as_atom()
                    .ok_or_else(|| format!("expected one value, got {d}"))?;
                <$t as $crate::AtomValue>::from_atom(a)
            }
        }
    };
}
