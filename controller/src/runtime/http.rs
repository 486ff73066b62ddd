//! `/healthz`, `/readyz` and `/metrics` on a plain HTTP/1.1 listener. Three GET endpoints do not
//! need an HTTP framework: one request per connection, answered and closed.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Engine;

/// Serves until the listener fails. `/readyz` is 200 when the Northbound is reachable, the
/// replica synced and the caches listed; `/healthz` is 200 while the process serves.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>) -> std::io::Result<()> {
    loop {
        let (mut sock, _) = listener.accept().await?;
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded); the request line is all we route on.
            while len < buf.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut buf[len..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (code, ctype, body) = respond(path, &engine).await;
            let reply = format!(
                "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

async fn respond(path: &str, engine: &Engine) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" => {
            let caches = engine.stores().listed.all();
            if !caches {
                (
                    "503 Service Unavailable",
                    TEXT,
                    "caches not listed yet\n".into(),
                )
            } else if engine.ready().await {
                ("200 OK", TEXT, "ok\n".into())
            } else {
                (
                    "503 Service Unavailable",
                    TEXT,
                    "the Northbound is unreachable or its replica is not synced\n".into(),
                )
            }
        }
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            engine.metrics().render(),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}
