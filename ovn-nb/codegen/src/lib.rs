//! Turns an `.ovsschema` into Rust: one struct per table (`Logical_Switch` → `LogicalSwitch`),
//! one enum per string-enumerated column, and the [`Table`] conversions, on top of the runtime
//! in `ovn-nb/src/model.rs`. The output is deterministic and already formatted, so a test can
//! compare it byte for byte with the committed file.
//!
//! [`Table`]: https://docs.rs/ovn-nb (trait `ovn_nb::Table`)

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeSet;
use std::fmt::Write;

use ovsdb::{AtomicType, BaseType, ColumnType, DatabaseSchema, SchemaParseError};

/// One generated module: which schema, where it is committed.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Schema file, relative to the workspace root.
    pub schema: &'static str,
    /// Output file, relative to the workspace root.
    pub output: &'static str,
}

/// Every module the workspace commits.
pub const TARGETS: &[Target] = &[
    Target {
        schema: "schemas/ovn-nb.ovsschema",
        output: "ovn-nb/src/generated/nb.rs",
    },
    Target {
        schema: "schemas/vswitch.ovsschema",
        output: "ovn-nb/src/generated/vswitch.rs",
    },
    Target {
        schema: "schemas/_server.ovsschema",
        output: "ovn-nb/src/generated/server.rs",
    },
];

/// The Rust type name of a table: `Logical_Switch_Port` → `LogicalSwitchPort`,
/// `ACL` → `Acl`, `Open_vSwitch` → `OpenVSwitch`.
pub fn type_name(table: &str) -> String {
    table
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let all_caps = part.chars().all(|c| !c.is_ascii_lowercase());
            let mut chars = part.chars();
            let first = chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .unwrap_or_default();
            let rest: String = if all_caps {
                chars.as_str().to_ascii_lowercase()
            } else {
                chars.as_str().to_string()
            };
            format!("{first}{rest}")
        })
        .collect()
}

/// A variant name for an enum value: `dnat_and_snat` → `DnatAndSnat`, `from-lport` →
/// `FromLport`.
pub fn variant_name(value: &str) -> String {
    let mut out = String::new();
    for part in value
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let mut chars = part.chars();
        if let Some(f) = chars.next() {
            out.push(f.to_ascii_uppercase());
            out.push_str(&chars.as_str().to_ascii_lowercase());
        }
    }
    if out.is_empty() {
        out.push_str("Empty");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// The field name of a column (`match` → `r#match`).
pub fn field_name(column: &str) -> String {
    let f: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if KEYWORDS.contains(&f.as_str()) {
        format!("r#{f}")
    } else {
        f
    }
}

fn atom_type(b: &BaseType, enum_type: Option<&str>) -> String {
    match (b.atomic, &b.ref_table, enum_type) {
        (AtomicType::String, _, Some(e)) if b.enumeration.is_some() => e.to_string(),
        (AtomicType::Integer, _, _) => "i64".into(),
        (AtomicType::Real, _, _) => "f64".into(),
        (AtomicType::Boolean, _, _) => "bool".into(),
        (AtomicType::String, _, _) => "String".into(),
        (AtomicType::Uuid, Some(t), _) => format!("Ref<{}>", type_name(t)),
        (AtomicType::Uuid, None, _) => "Uuid".into(),
    }
}

fn column_rust_type(ct: &ColumnType, enum_type: Option<&str>) -> String {
    match &ct.value {
        // Enumerated map keys stay strings: the schema check at transact time guards them.
        Some(v) => format!(
            "BTreeMap<{}, {}>",
            atom_type(&ct.key, None),
            atom_type(v, None)
        ),
        None if ct.is_scalar() => atom_type(&ct.key, enum_type),
        None if ct.is_optional() => format!("Option<{}>", atom_type(&ct.key, enum_type)),
        None => format!("Vec<{}>", atom_type(&ct.key, enum_type)),
    }
}

fn describe(ct: &ColumnType) -> String {
    let base = |b: &BaseType| -> String {
        let mut s = b.atomic.name().to_string();
        if let Some(t) = &b.ref_table {
            s = format!("reference to {t}");
        }
        if let Some(values) = &b.enumeration {
            let v: Vec<String> = values
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| a.to_string())
                })
                .collect();
            s.push_str(&format!(" (`{}`)", v.join("` | `")));
        }
        if let (Some(lo), Some(hi)) = (b.min_integer, b.max_integer) {
            s.push_str(&format!(" in {lo}..={hi}"));
        }
        s
    };
    let count = match ct.max {
        None => format!("{}..", ct.min),
        Some(m) => format!("{}..={m}", ct.min),
    };
    match &ct.value {
        Some(v) => format!("map of {} to {}, {count} pairs", base(&ct.key), base(v)),
        None if ct.is_scalar() => base(&ct.key),
        None if ct.is_optional() => format!("optional {}", base(&ct.key)),
        None => format!("set of {}, {count} elements", base(&ct.key)),
    }
}

/// Generates the module for one schema. `schema_path` is only quoted in the header.
pub fn generate(schema_text: &str, schema_path: &str) -> Result<String, SchemaParseError> {
    let schema = DatabaseSchema::from_json_str(schema_text)?;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "// @generated by ovn-nb-codegen from {schema_path}. DO NOT EDIT."
    );
    let _ = writeln!(w, "// Regenerate with `cargo run -p ovn-nb-codegen`.");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "//! Tables of the `{}` database, schema version {}.",
        schema.name, schema.version
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "#![allow(clippy::all)]");
    let _ = writeln!(w);
    let _ = writeln!(w, "#[allow(unused_imports)]");
    let _ = writeln!(w, "use std::collections::BTreeMap;");
    let _ = writeln!(w);
    let _ = writeln!(w, "#[allow(unused_imports)]");
    let _ = writeln!(w, "use ovsdb::{{Datum, Row, Uuid}};");
    let _ = writeln!(w);
    let _ = writeln!(w, "#[allow(unused_imports)]");
    let _ = writeln!(
        w,
        "use crate::model::{{read, ColumnEnum, ColumnValue, ModelError, Ref, Table}};"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "/// The database name.");
    let _ = writeln!(w, "pub const DATABASE: &str = {:?};", schema.name);
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "/// The schema these types were generated from, for runtime checks."
    );
    let _ = writeln!(
        w,
        "pub const SCHEMA: &str = include_str!(\"../../../{schema_path}\");"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "/// Every table of the schema, as it spells them.");
    let names: Vec<String> = schema.tables.keys().map(|t| format!("{t:?}")).collect();
    let _ = writeln!(w, "pub const TABLES: &[&str] = &[{}];", names.join(", "));

    for (tname, table) in &schema.tables {
        let ty = type_name(tname);
        // Enums first.
        for (cname, col) in &table.columns {
            let ct = &col.column_type;
            let Some(values) = ct
                .key
                .enumeration
                .as_ref()
                .filter(|_| ct.value.is_none() && ct.key.atomic == AtomicType::String)
            else {
                continue;
            };
            let ename = format!("{ty}{}", type_name(cname));
            let mut seen = BTreeSet::new();
            let _ = writeln!(w);
            let _ = writeln!(w, "/// Values of `{tname}.{cname}`.");
            let _ = writeln!(
                w,
                "#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]"
            );
            let _ = writeln!(w, "pub enum {ename} {{");
            for (i, v) in values.iter().enumerate() {
                let s = v.as_str().unwrap_or_default();
                let var = variant_name(s);
                assert!(
                    seen.insert(var.clone()),
                    "{tname}.{cname}: two values map to {var}"
                );
                let _ = writeln!(w, "    /// `{s}`");
                if i == 0 {
                    let _ = writeln!(w, "    #[default]");
                }
                let _ = writeln!(w, "    {var},");
            }
            let _ = writeln!(w, "}}");
            let _ = writeln!(w);
            let _ = writeln!(w, "impl ColumnEnum for {ename} {{");
            let _ = write!(w, "    const ALL: &'static [Self] = &[");
            let names: Vec<String> = values
                .iter()
                .map(|v| format!("Self::{}", variant_name(v.as_str().unwrap_or_default())))
                .collect();
            let _ = writeln!(w, "{}];", names.join(", "));
            let _ = writeln!(w);
            let _ = writeln!(w, "    fn as_str(self) -> &'static str {{");
            let _ = writeln!(w, "        match self {{");
            for v in values {
                let s = v.as_str().unwrap_or_default();
                let _ = writeln!(w, "            Self::{} => {s:?},", variant_name(s));
            }
            let _ = writeln!(w, "        }}");
            let _ = writeln!(w, "    }}");
            let _ = writeln!(w, "}}");
            let _ = writeln!(w);
            let _ = writeln!(w, "crate::column_enum_atom!({ename});");
        }

        let _ = writeln!(w);
        let _ = writeln!(w, "/// A row of the `{tname}` table.");
        let _ = writeln!(w, "#[derive(Debug, Clone, PartialEq, Default)]");
        let _ = writeln!(w, "pub struct {ty} {{");
        for (cname, col) in &table.columns {
            let ct = &col.column_type;
            let enum_type = format!("{ty}{}", type_name(cname));
            let rust = column_rust_type(ct, Some(&enum_type));
            let mut doc = format!("`{cname}`: {}", describe(ct));
            if !col.mutable {
                doc.push_str(" (immutable)");
            }
            if col.ephemeral {
                doc.push_str(" (ephemeral)");
            }
            let _ = writeln!(w, "    /// {doc}.");
            let _ = writeln!(w, "    pub {}: {rust},", field_name(cname));
        }
        let _ = writeln!(w, "}}");
        let _ = writeln!(w);
        let _ = writeln!(w, "impl Table for {ty} {{");
        let _ = writeln!(w, "    const TABLE: &'static str = {tname:?};");
        let _ = writeln!(w, "    const DATABASE: &'static str = DATABASE;");
        let cols: Vec<String> = table.columns.keys().map(|c| format!("{c:?}")).collect();
        let _ = writeln!(
            w,
            "    const COLUMNS: &'static [&'static str] = &[{}];",
            cols.join(", ")
        );
        let _ = writeln!(w);
        let _ = writeln!(w, "    fn to_row(&self) -> Row {{");
        let _ = writeln!(w, "        let mut row = Row::new();");
        for cname in table.columns.keys() {
            let _ = writeln!(
                w,
                "        row.insert({cname:?}.to_string(), self.{}.to_datum());",
                field_name(cname)
            );
        }
        let _ = writeln!(w, "        row");
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "    fn from_row(row: &Row) -> Result<Self, ModelError> {{"
        );
        let _ = writeln!(w, "        Ok(Self {{");
        for cname in table.columns.keys() {
            let _ = writeln!(
                w,
                "            {}: read(row, Self::TABLE, {cname:?})?,",
                field_name(cname)
            );
        }
        let _ = writeln!(w, "        }})");
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w);
        let _ = writeln!(w, "    fn column(&self, name: &str) -> Option<Datum> {{");
        let _ = writeln!(w, "        match name {{");
        for cname in table.columns.keys() {
            let _ = writeln!(
                w,
                "            {cname:?} => Some(self.{}.to_datum()),",
                field_name(cname)
            );
        }
        let _ = writeln!(w, "            _ => None,");
        let _ = writeln!(w, "        }}");
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w, "}}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_style_guide() {
        assert_eq!(type_name("Logical_Switch_Port"), "LogicalSwitchPort");
        assert_eq!(type_name("ACL"), "Acl");
        assert_eq!(type_name("NB_Global"), "NbGlobal");
        assert_eq!(type_name("Open_vSwitch"), "OpenVSwitch");
        assert_eq!(type_name("QoS"), "QoS");
        assert_eq!(variant_name("dnat_and_snat"), "DnatAndSnat");
        assert_eq!(variant_name("from-lport"), "FromLport");
        assert_eq!(variant_name("802.1ad"), "V8021ad");
        assert_eq!(field_name("match"), "r#match");
        assert_eq!(field_name("external_ids"), "external_ids");
    }
}
