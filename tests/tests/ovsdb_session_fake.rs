//! Session behaviours that a healthy modern ovsdb-server never triggers, driven by a scripted
//! fake server on 127.0.0.1: an old server without `monitor_cond_since` / `monitor_cond`, and a
//! cluster member whose copy is older than what the session has already seen.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ovsdb::{MonitorRequest, MonitorRequests, Session, SessionOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SCHEMA: &str = r#"{"name":"Fake","version":"1.0.0","tables":{"T":{"columns":{"name":{"type":"string"}},"isRoot":true}}}"#;

/// How the fake answers: its `_Server` view and which monitor methods it knows.
#[derive(Clone, Copy)]
struct Behaviour {
    clustered: bool,
    index: u64,
    knows_since: bool,
    knows_cond: bool,
    /// Close the connection right after the monitor reply.
    hang_up_after_sync: bool,
}

fn answer(b: Behaviour, req: &Value) -> Option<Value> {
    let id = req["id"].clone();
    if id.is_null() {
        return None; // a notification
    }
    let unknown = json!({"id": id, "result": null, "error": {"error": "unknown method"}});
    let ok = |result: Value| json!({"id": id, "result": result, "error": null});
    Some(match req["method"].as_str().unwrap_or("") {
        "transact" if req["params"][0] == "_Server" => ok(json!([{"rows": [{
            "model": if b.clustered { "clustered" } else { "standalone" },
            "connected": true, "leader": true, "index": b.index,
        }]}])),
        "get_schema" => ok(serde_json::from_str(SCHEMA).unwrap()),
        "monitor_cond" if req["params"][0] == "_Server" => ok(json!({})),
        "monitor_cond_since" if !b.knows_since => unknown,
        "monitor_cond" if !b.knows_cond => unknown,
        "monitor" => ok(
            json!({"T": {"0b3f5c1a-9a7e-4b4e-8f43-2b0c1f6d7e11": {"new": {"name": "from-monitor"}}}}),
        ),
        "monitor_cond" => ok(
            json!({"T": {"0b3f5c1a-9a7e-4b4e-8f43-2b0c1f6d7e11": {"initial": {"name": "from-monitor_cond"}}}}),
        ),
        "monitor_cond_since" => ok(json!([false, "00000000-0000-0000-0000-000000000000",
            {"T": {"0b3f5c1a-9a7e-4b4e-8f43-2b0c1f6d7e11": {"initial": {"name": "from-since"}}}}])),
        "echo" => ok(req["params"].clone()),
        _ => unknown,
    })
}

async fn serve_one(mut s: TcpStream, b: Behaviour) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let mut replies = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        while let Some(Ok(v)) = it.next() {
            consumed = it.byte_offset();
            let is_data_monitor = v["method"]
                .as_str()
                .is_some_and(|m| m.starts_with("monitor"))
                && v["params"][0] != "_Server";
            if let Some(r) = answer(b, &v) {
                let ok = r["error"].is_null();
                replies.push(r);
                if is_data_monitor && ok && b.hang_up_after_sync {
                    for r in &replies {
                        let _ = s.write_all(r.to_string().as_bytes()).await;
                    }
                    return;
                }
            }
        }
        buf.drain(..consumed);
        for r in replies {
            if s.write_all(r.to_string().as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

async fn fake(b: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_one(s, b));
        }
    });
    format!("tcp:127.0.0.1:{port}")
}

fn opts() -> SessionOptions {
    let mut o = SessionOptions::new("Fake")
        .monitor(MonitorRequests::new().table("T", MonitorRequest::new()));
    o.backoff_max = Duration::from_millis(200);
    o
}

fn names(session: &Session) -> Vec<String> {
    let g = session.replica();
    g.as_ref()
        .and_then(|r| r.table("T"))
        .map(|t| {
            t.iter()
                .filter_map(|r| {
                    r.get("name")
                        .and_then(|d| d.as_atom())
                        .and_then(|a| a.as_str())
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_old_server_is_monitored_with_the_newest_method_it_knows() {
    let base = Behaviour {
        clustered: false,
        index: 0,
        knows_since: false,
        knows_cond: true,
        hang_up_after_sync: false,
    };
    let cond = Session::start(&fake(base).await, opts()).unwrap();
    cond.client(Duration::from_secs(10)).await.unwrap();
    assert_eq!(names(&cond), ["from-monitor_cond"]);

    let oldest = Session::start(
        &fake(Behaviour {
            knows_cond: false,
            ..base
        })
        .await,
        opts(),
    )
    .unwrap();
    oldest.client(Duration::from_secs(10)).await.unwrap();
    assert_eq!(names(&oldest), ["from-monitor"]);

    let newest = Session::start(
        &fake(Behaviour {
            knows_since: true,
            ..base
        })
        .await,
        opts(),
    )
    .unwrap();
    newest.client(Duration::from_secs(10)).await.unwrap();
    assert_eq!(names(&newest), ["from-since"]);
}

#[tokio::test]
async fn a_member_behind_what_was_already_seen_is_not_used() {
    let base = Behaviour {
        clustered: true,
        index: 10,
        knows_since: true,
        knows_cond: true,
        hang_up_after_sync: true,
    };
    let fresh = fake(base).await;
    let stale = fake(Behaviour {
        index: 5,
        hang_up_after_sync: false,
        ..base
    })
    .await;
    // The fresh member serves one sync and hangs up; only the stale one is left after that.
    let session = Session::start(&format!("{fresh},{stale}"), opts()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while session.stats().skipped.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale member was never refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(session.stats().connects.load(Ordering::Relaxed) >= 1);
    assert_eq!(session.stats().max_index.load(Ordering::Relaxed), 10);
    // The replica still holds what the fresh member sent, not an older copy.
    assert_eq!(names(&session), ["from-since"]);
}
