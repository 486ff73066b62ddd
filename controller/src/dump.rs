//! `ovn-vpc dump`: what `ovsdb-client dump` shows, read through our client, as aligned text or
//! as one JSON document (`{table: [{"_uuid": …, column: value, …}]}`) that jq can use.

use std::collections::BTreeMap;
use std::fmt::Write;

use ovsdb::{Client, Datum, Error, Operation, OperationResult, Row};
use serde_json::{Map, Value};

/// The rows of some tables of one database.
#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    /// The database.
    pub db: String,
    /// Table → its columns (`_uuid` first, then the schema's columns by name) and rows (by
    /// UUID).
    pub tables: BTreeMap<String, TableDump>,
}

/// One table of a [`Dump`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableDump {
    /// Column names, `_uuid` first.
    pub columns: Vec<String>,
    /// Rows sorted by UUID.
    pub rows: Vec<Row>,
}

/// Reads `tables` (all when empty) of `db` in one transaction (one consistent snapshot).
pub async fn dump(client: &Client, db: &str, tables: &[String]) -> Result<Dump, Error> {
    let schema = client.schema(db).await?;
    let names: Vec<String> = if tables.is_empty() {
        schema.tables.keys().cloned().collect()
    } else {
        for t in tables {
            schema.table(t)?;
        }
        tables.to_vec()
    };
    let ops: Vec<Operation> = names
        .iter()
        .map(|t| Operation::Select {
            table: t.clone(),
            conditions: vec![],
            columns: None,
        })
        .collect();
    let results = client.transact(db, &ops).await?;
    let mut out = BTreeMap::new();
    for (name, result) in names.iter().zip(results) {
        let OperationResult::Select(mut rows) = result else {
            continue;
        };
        let table = schema.table(name)?;
        for row in &mut rows {
            row.remove("_version");
            for (c, d) in row.iter_mut() {
                if let Some(col) = table.columns.get(c) {
                    col.column_type.coerce(d);
                }
            }
        }
        rows.sort_by(|a, b| a.get("_uuid").cmp(&b.get("_uuid")));
        let mut columns = vec!["_uuid".to_string()];
        columns.extend(table.columns.keys().cloned());
        out.insert(name.clone(), TableDump { columns, rows });
    }
    Ok(Dump {
        db: db.to_string(),
        tables: out,
    })
}

impl Dump {
    /// `{table: [{"_uuid": "…", column: wire-form value, …}, …], …}`.
    pub fn to_json(&self) -> Value {
        let mut tables = Map::new();
        for (name, t) in &self.tables {
            let rows: Vec<Value> = t
                .rows
                .iter()
                .map(|row| {
                    let mut obj = Map::new();
                    for c in &t.columns {
                        if let Some(d) = row.get(c) {
                            let v = if c == "_uuid" {
                                d.as_atom()
                                    .and_then(|a| a.as_uuid())
                                    .map(|u| Value::String(u.to_string()))
                                    .unwrap_or(Value::Null)
                            } else {
                                serde_json::to_value(d).unwrap_or(Value::Null)
                            };
                            obj.insert(c.clone(), v);
                        }
                    }
                    Value::Object(obj)
                })
                .collect();
            tables.insert(name.clone(), Value::Array(rows));
        }
        Value::Object(tables)
    }

    /// `ovsdb-client dump`-like text: per table a caption, a heading line, a rule, the rows.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, t) in &self.tables {
            let cells: Vec<Vec<String>> = t
                .rows
                .iter()
                .map(|row| {
                    t.columns
                        .iter()
                        .map(|c| row.get(c).map(text).unwrap_or_default())
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |vals: &[String]| -> String {
                let parts: Vec<String> = vals
                    .iter()
                    .zip(&widths)
                    // Padded by hand: `format!("{v:<w$}")` panics ("Formatting argument out of
                    // range") for widths over 65,535, and one cell can be longer (issue 12).
                    .map(|(v, w)| {
                        let pad = w.saturating_sub(v.chars().count());
                        let mut cell = String::with_capacity(v.len() + pad);
                        cell.push_str(v);
                        cell.extend(std::iter::repeat_n(' ', pad));
                        cell
                    })
                    .collect();
                parts.join(" ").trim_end().to_string()
            };
            let _ = writeln!(out, "{name} table");
            let _ = writeln!(out, "{}", line(&t.columns));
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join(" "));
            for r in &cells {
                let _ = writeln!(out, "{}", line(r));
            }
            out.push('\n');
        }
        out
    }
}

/// A datum as `ovsdb-client` prints it: bare words unquoted, `[a, b]`, `{k=v}`.
fn text(d: &Datum) -> String {
    fn atom(a: &ovsdb::Atom) -> String {
        match a.as_str() {
            Some(s)
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
                    && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-') =>
            {
                s.to_string()
            }
            _ => a.to_string(),
        }
    }
    match d {
        Datum::Set(v) if v.len() == 1 => atom(&v[0]),
        Datum::Set(v) => format!("[{}]", v.iter().map(atom).collect::<Vec<_>>().join(", ")),
        Datum::Map(v) => format!(
            "{{{}}}",
            v.iter()
                .map(|(k, val)| format!("{}={}", atom(k), atom(val)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_aligns_cells_wider_than_what_format_width_allows() {
        let long = "x".repeat(70_000);
        let row = |name: &str| -> Row {
            [("name".to_string(), Datum::atom(name))]
                .into_iter()
                .collect()
        };
        let dump = Dump {
            db: "D".into(),
            tables: [(
                "T".to_string(),
                TableDump {
                    columns: vec!["name".into(), "other".into()],
                    rows: vec![row(&long), row("short")],
                },
            )]
            .into_iter()
            .collect(),
        };
        let text = dump.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "T table");
        assert!(lines[1].starts_with("name ") && lines[1].ends_with(" other"));
        assert_eq!(lines[1].len(), 70_000 + 1 + "other".len());
        assert_eq!(lines[2].len(), 70_000 + 1 + "other".len());
        assert_eq!(lines[3], long);
        assert_eq!(lines[4], "short");
    }
}
