//! A minimal blocking JSON-RPC exchange with an ovsdb-server over its unix socket.
//!
//! The launcher uses it for readiness checks and for bootstrapping a chassis' Open_vSwitch row.
//! It deliberately does not depend on the `ovsdb` client crate: the harness that tests the
//! client must not rely on the client being correct.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::SandboxError;

/// Sends one request and returns its `result`; an OVSDB `error` becomes [`SandboxError::Rpc`].
pub(crate) fn call(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, SandboxError> {
    let io = |what: &str, e: std::io::Error| SandboxError::Io {
        what: format!("{what} {}", socket.display()),
        source: e,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| io("connecting to", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| io("configuring", e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io("configuring", e))?;
    let request = json!({"method": method, "params": params, "id": "probe"});
    stream
        .write_all(request.to_string().as_bytes())
        .map_err(|e| io("writing to", e))?;
    // ovsdb-server sends concatenated JSON values with no delimiter; serde_json's stream
    // deserializer reads exactly one value at a time from the socket.
    let replies = serde_json::Deserializer::from_reader(&stream).into_iter::<Value>();
    for reply in replies {
        let reply = reply.map_err(|e| SandboxError::Rpc {
            socket: socket.display().to_string(),
            message: format!("bad reply: {e}"),
        })?;
        if reply.get("id") != Some(&json!("probe")) {
            continue; // an echo or notification, not ours
        }
        if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
            return Err(SandboxError::Rpc {
                socket: socket.display().to_string(),
                message: err.to_string(),
            });
        }
        return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
    }
    Err(SandboxError::Rpc {
        socket: socket.display().to_string(),
        message: "connection closed before the reply".into(),
    })
}

/// `transact` on `db`, returning the per-operation results; any per-operation error is an error.
pub(crate) fn transact(
    socket: &Path,
    db: &str,
    ops: Vec<Value>,
    timeout: Duration,
) -> Result<Vec<Value>, SandboxError> {
    let mut params = vec![json!(db)];
    params.extend(ops);
    let result = call(socket, "transact", Value::Array(params), timeout)?;
    let results = result.as_array().cloned().unwrap_or_default();
    if let Some(err) = results
        .iter()
        .find(|r| r.get("error").is_some_and(|e| !e.is_null()))
    {
        return Err(SandboxError::Rpc {
            socket: socket.display().to_string(),
            message: err.to_string(),
        });
    }
    Ok(results)
}

/// Rows of a `select` on `table` where `column == value` (string), returning `columns`.
pub(crate) fn select_where(
    socket: &Path,
    db: &str,
    table: &str,
    column: &str,
    value: &str,
    columns: &[&str],
    timeout: Duration,
) -> Result<Vec<Value>, SandboxError> {
    let op = json!({
        "op": "select",
        "table": table,
        "where": [[column, "==", value]],
        "columns": columns,
    });
    let results = transact(socket, db, vec![op], timeout)?;
    Ok(results
        .first()
        .and_then(|r| r.get("rows"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}
