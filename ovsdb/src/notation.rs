//! RFC 7047 §5.1 notation: atoms, sets, maps, UUIDs and named UUIDs, as values of columns.
//!
//! A column value (a *datum*) is kept canonical — a sorted set of distinct atoms, or a map with
//! sorted distinct keys — so that two datums compare equal exactly when OVSDB considers them
//! equal, whatever order the server or the caller wrote them in. Decoding is schema-free (the
//! wire form is self-describing); [`Datum::coerce`] then applies what only the schema knows
//! (an integer sent for a real column).

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

pub use uuid::Uuid;

/// One scalar value of an OVSDB column.
#[derive(Debug, Clone)]
pub enum Atom {
    /// A 64-bit signed integer.
    Integer(i64),
    /// A double-precision real (never NaN on the wire: JSON has no NaN).
    Real(f64),
    /// A boolean.
    Boolean(bool),
    /// A UTF-8 string.
    String(String),
    /// A row UUID: `["uuid", "…"]`.
    Uuid(Uuid),
    /// A reference, within one transaction, to a row inserted under that `uuid-name`:
    /// `["named-uuid", "…"]`.
    NamedUuid(String),
}

impl Atom {
    /// A string atom.
    pub fn string(s: impl Into<String>) -> Atom {
        Atom::String(s.into())
    }

    /// The string, when this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, when this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The real (integers convert), when this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Atom::Real(r) => Some(*r),
            Atom::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, when this is a boolean atom.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Atom::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The UUID, when this is a UUID atom (not a named UUID).
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Atom {}

impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl std::hash::Hash for Atom {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Atom::Integer(i) => i.hash(state),
            Atom::Real(r) => r.to_bits().hash(state),
            Atom::Boolean(b) => b.hash(state),
            Atom::String(s) | Atom::NamedUuid(s) => s.hash(state),
            Atom::Uuid(u) => u.hash(state),
        }
    }
}

impl fmt::Display for Atom {
    /// The way `ovsdb-client dump` and `ovn-nbctl` print atoms: strings quoted only when they
    /// need it is their business; we always print strings as JSON strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Integer(i) => write!(f, "{i}"),
            Atom::Real(r) => write!(f, "{r}"),
            Atom::Boolean(b) => write!(f, "{b}"),
            Atom::String(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            Atom::Uuid(u) => write!(f, "{u}"),
            Atom::NamedUuid(n) => write!(f, "@{n}"),
        }
    }
}

impl From<i64> for Atom {
    fn from(v: i64) -> Self {
        Atom::Integer(v)
    }
}
impl From<f64> for Atom {
    fn from(v: f64) -> Self {
        Atom::Real(v)
    }
}
impl From<bool> for Atom {
    fn from(v: bool) -> Self {
        Atom::Boolean(v)
    }
}
impl From<&str> for Atom {
    fn from(v: &str) -> Self {
        Atom::String(v.to_string())
    }
}
impl From<String> for Atom {
    fn from(v: String) -> Self {
        Atom::String(v)
    }
}
impl From<Uuid> for Atom {
    fn from(v: Uuid) -> Self {
        Atom::Uuid(v)
    }
}

/// A column value: a set of atoms (a scalar column is a set of exactly one) or a map.
/// Always canonical: sorted, without duplicate elements or keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Datum {
    /// A set (also scalars and optional values: 1 or 0 elements).
    Set(Vec<Atom>),
    /// A map, sorted by key.
    Map(Vec<(Atom, Atom)>),
}

impl Default for Datum {
    fn default() -> Self {
        Datum::Set(Vec::new())
    }
}

impl Datum {
    /// A scalar: the set of one atom.
    pub fn atom(a: impl Into<Atom>) -> Datum {
        Datum::Set(vec![a.into()])
    }

    /// The empty set (an absent optional value).
    pub fn empty_set() -> Datum {
        Datum::Set(Vec::new())
    }

    /// The empty map.
    pub fn empty_map() -> Datum {
        Datum::Map(Vec::new())
    }

    /// A set of the given atoms (sorted and deduplicated).
    pub fn set<A: Into<Atom>>(atoms: impl IntoIterator<Item = A>) -> Datum {
        let mut v: Vec<Atom> = atoms.into_iter().map(Into::into).collect();
        v.sort();
        v.dedup();
        Datum::Set(v)
    }

    /// A map of the given pairs (sorted; for a duplicated key the last pair wins).
    pub fn map<K: Into<Atom>, V: Into<Atom>>(pairs: impl IntoIterator<Item = (K, V)>) -> Datum {
        let mut v: Vec<(Atom, Atom)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable sort keeps insertion order among equal keys; keep the last of each run.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Atom, Atom)> = Vec::with_capacity(v.len());
        for pair in v {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Datum::Map(out)
    }

    /// The only atom of a set of exactly one.
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Datum::Set(v) if v.len() == 1 => v.first(),
            _ => None,
        }
    }

    /// The elements of a set (empty for a map).
    pub fn as_set(&self) -> &[Atom] {
        match self {
            Datum::Set(v) => v,
            Datum::Map(_) => &[],
        }
    }

    /// The pairs of a map (empty for a set).
    pub fn as_map(&self) -> &[(Atom, Atom)] {
        match self {
            Datum::Map(v) => v,
            Datum::Set(_) => &[],
        }
    }

    /// The value of `key` in a map.
    pub fn get(&self, key: &Atom) -> Option<&Atom> {
        let pairs = self.as_map();
        pairs
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &pairs[i].1)
    }

    /// The value of a string key in a map of strings (`external_ids`, `options`, …).
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(&Atom::String(key.to_string()))
            .and_then(Atom::as_str)
    }

    /// Number of elements (set) or pairs (map).
    pub fn len(&self) -> usize {
        match self {
            Datum::Set(v) => v.len(),
            Datum::Map(v) => v.len(),
        }
    }

    /// Whether the set or map has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a map.
    pub fn is_map(&self) -> bool {
        matches!(self, Datum::Map(_))
    }

    /// Restores canonical order after elements were pushed by hand or decoded from the wire
    /// (the server sends sets in its own order). Duplicates are removed.
    pub(crate) fn canonicalize(&mut self) {
        match self {
            Datum::Set(v) => {
                v.sort();
                v.dedup();
            }
            Datum::Map(v) => {
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v.dedup_by(|a, b| a.0 == b.0);
            }
        }
    }

    /// Converts integer atoms to reals where the column holds reals (JSON cannot tell `1` from
    /// `1.0`), keeping the datum canonical.
    pub fn coerce_reals(&mut self, key_is_real: bool, value_is_real: bool) {
        fn fix(a: &mut Atom) {
            if let Atom::Integer(i) = *a {
                *a = Atom::Real(i as f64);
            }
        }
        match self {
            Datum::Set(v) if key_is_real => v.iter_mut().for_each(fix),
            Datum::Map(v) if key_is_real || value_is_real => {
                for (k, val) in v.iter_mut() {
                    if key_is_real {
                        fix(k);
                    }
                    if value_is_real {
                        fix(val);
                    }
                }
            }
            _ => return,
        }
        self.canonicalize();
    }
}

impl From<Atom> for Datum {
    fn from(a: Atom) -> Self {
        Datum::Set(vec![a])
    }
}

impl fmt::Display for Datum {
    /// `ovsdb-client`-like text: a scalar bare, `[a, b]` for sets, `{k=v, …}` for maps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Datum::Set(v) if v.len() == 1 => write!(f, "{}", v[0]),
            Datum::Set(v) => {
                write!(f, "[")?;
                for (i, a) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, "]")
            }
            Datum::Map(v) => {
                write!(f, "{{")?;
                for (i, (k, val)) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}={val}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire form (serde). Written by hand so that large monitor replies decode straight from the
// byte stream into datums, without an intermediate serde_json::Value tree.

impl Serialize for Atom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Atom::Integer(i) => s.serialize_i64(*i),
            Atom::Real(r) => s.serialize_f64(*r),
            Atom::Boolean(b) => s.serialize_bool(*b),
            Atom::String(v) => s.serialize_str(v),
            Atom::Uuid(u) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("uuid")?;
                seq.serialize_element(&u.hyphenated().to_string())?;
                seq.end()
            }
            Atom::NamedUuid(n) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("named-uuid")?;
                seq.serialize_element(n)?;
                seq.end()
            }
        }
    }
}

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Pair<'a>(&'a Atom, &'a Atom);
        impl Serialize for Pair<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element(self.0)?;
                seq.serialize_element(self.1)?;
                seq.end()
            }
        }
        struct Pairs<'a>(&'a [(Atom, Atom)]);
        impl Serialize for Pairs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(k, v)| Pair(k, v)))
            }
        }
        match self {
            // A set of one is written as the bare atom, as ovsdb-server itself does.
            Datum::Set(v) if v.len() == 1 => v[0].serialize(s),
            Datum::Set(v) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("set")?;
                seq.serialize_element(v)?;
                seq.end()
            }
            Datum::Map(v) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("map")?;
                seq.serialize_element(&Pairs(v))?;
                seq.end()
            }
        }
    }
}

/// What a JSON array at atom or datum position turned out to be.
enum Tagged {
    Atom(Atom),
    Set(Vec<Atom>),
    Map(Vec<(Atom, Atom)>),
}

struct TaggedVisitor {
    /// Whether `set`/`map` are acceptable here (not inside a set or map).
    allow_collections: bool,
}

impl<'de> Visitor<'de> for TaggedVisitor {
    type Value = Tagged;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_collections {
            f.write_str("an OVSDB atom, [\"set\", …] or [\"map\", …]")
        } else {
            f.write_str("an OVSDB atom")
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tagged, E> {
        Ok(Tagged::Atom(Atom::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tagged, E> {
        i64::try_from(v)
            .map(|i| Tagged::Atom(Atom::Integer(i)))
            .map_err(|_| E::custom(format!("integer {v} does not fit in 64 signed bits")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tagged, E> {
        Ok(Tagged::Atom(Atom::Real(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tagged, E> {
        Ok(Tagged::Atom(Atom::Boolean(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tagged, E> {
        Ok(Tagged::Atom(Atom::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Tagged, E> {
        Ok(Tagged::Atom(Atom::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tagged, A::Error> {
        let tag: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("empty array where an OVSDB value was expected"))?;
        let out = match tag.as_str() {
            "uuid" => {
                let s: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("[\"uuid\"] without its UUID"))?;
                let u = Uuid::parse_str(&s)
                    .map_err(|e| de::Error::custom(format!("bad UUID {s:?}: {e}")))?;
                Tagged::Atom(Atom::Uuid(u))
            }
            "named-uuid" => {
                let s: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("[\"named-uuid\"] without its name"))?;
                Tagged::Atom(Atom::NamedUuid(s))
            }
            "set" if self.allow_collections => {
                let v: Vec<AtomOnly> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("[\"set\"] without its elements"))?;
                Tagged::Set(v.into_iter().map(|a| a.0).collect())
            }
            "map" if self.allow_collections => {
                let v: Vec<(AtomOnly, AtomOnly)> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("[\"map\"] without its pairs"))?;
                Tagged::Map(v.into_iter().map(|(k, v)| (k.0, v.0)).collect())
            }
            other => {
                return Err(de::Error::custom(format!(
                    "unknown OVSDB value tag {other:?} (expected {})",
                    if self.allow_collections {
                        "uuid, named-uuid, set or map"
                    } else {
                        "uuid or named-uuid"
                    }
                )))
            }
        };
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!(
                "[\"{tag}\", …] has more than two elements"
            )));
        }
        Ok(out)
    }
}

/// An atom alone (inside a set or map: nested collections are not OVSDB).
struct AtomOnly(Atom);

impl<'de> Deserialize<'de> for AtomOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(TaggedVisitor {
            allow_collections: false,
        })? {
            Tagged::Atom(a) => Ok(AtomOnly(a)),
            _ => Err(de::Error::custom("a set or map cannot be nested")),
        }
    }
}

impl<'de> Deserialize<'de> for Atom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AtomOnly::deserialize(d).map(|a| a.0)
    }
}

impl<'de> Deserialize<'de> for Datum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut datum = match d.deserialize_any(TaggedVisitor {
            allow_collections: true,
        })? {
            Tagged::Atom(a) => Datum::Set(vec![a]),
            Tagged::Set(v) => Datum::Set(v),
            Tagged::Map(v) => Datum::Map(v),
        };
        datum.canonicalize();
        Ok(datum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Datum {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn atoms_and_collections_round_trip_in_wire_form() {
        let u = "0b3f5c1a-9a7e-4b4e-8f43-2b0c1f6d7e11";
        let cases = [
            json!(5),
            json!(-3),
            json!(2.5),
            json!(true),
            json!("x"),
            json!(["uuid", u]),
            json!(["named-uuid", "row1"]),
            json!(["set", []]),
            json!(["set", [1, 2, 3]]),
            json!(["map", []]),
            json!(["map", [["a", "1"], ["b", "2"]]]),
            json!(["map", [["k", ["uuid", u]]]]),
        ];
        for c in cases {
            let d = parse(c.clone());
            assert_eq!(serde_json::to_value(&d).unwrap(), c, "{c}");
        }
    }

    #[test]
    fn a_set_of_one_is_the_bare_atom() {
        assert_eq!(parse(json!(["set", ["a"]])), Datum::atom("a"));
        assert_eq!(serde_json::to_value(Datum::set(["a"])).unwrap(), json!("a"));
    }

    #[test]
    fn datums_are_canonical_whatever_the_order() {
        assert_eq!(
            parse(json!(["set", [3, 1, 2, 1]])),
            Datum::set([1i64, 2, 3])
        );
        assert_eq!(
            parse(json!(["map", [["b", "2"], ["a", "1"]]])),
            Datum::map([("a", "1"), ("b", "2")])
        );
        let m = Datum::map([("k", "old"), ("j", "x"), ("k", "new")]);
        assert_eq!(m.get_str("k"), Some("new"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            json!([]),
            json!(["uuid"]),
            json!(["uuid", "not-a-uuid"]),
            json!(["set", [["set", []]]]),
            json!(["map", [["a"]]]),
            json!(["map", [[["map", []], "x"]]]),
            json!(["frob", 1]),
            json!(["set", [], 3]),
            json!({"a": 1}),
            json!(null),
            json!(18446744073709551615u64),
        ] {
            assert!(
                serde_json::from_value::<Datum>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn integers_become_reals_for_real_columns() {
        let mut d = parse(json!(["set", [2, 1.5]]));
        d.coerce_reals(true, false);
        assert_eq!(d, Datum::set([1.5, 2.0]));
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(Datum::atom("a").to_string(), "\"a\"");
        assert_eq!(Datum::set([1i64, 2]).to_string(), "[1, 2]");
        assert_eq!(Datum::map([("k", "v")]).to_string(), "{\"k\"=\"v\"}");
    }
}
