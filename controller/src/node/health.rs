//! `/healthz` and `/readyz` of the node shim (kubelet's probes, `curl`) on the shared
//! [`crate::http_server`], on a thread of its own with a small tokio runtime (the rest of the
//! shim is synchronous). Liveness is "the refresh loop has beaten recently" (a loop stuck behind
//! the xtables lock is not alive); readiness is read from iptables and ipset on every request
//! ([`super::Refresh::problems`]). A probe runs on tokio's blocking pool, so neither a slow
//! probe nor a client that stalls mid-request delays another probe.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::http_server::text;

/// What a probe endpoint answers: `Ok(())` is 200, `Err(reasons)` is 503 with the reasons.
pub type Probe = Box<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

/// Binds `addr` and serves `/healthz` (`live`) and `/readyz` (`ready`) on a background thread;
/// the returned address is the bound one (port 0 picks a free port).
pub fn serve(addr: SocketAddr, live: Probe, ready: Probe) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let (live, ready): (Arc<Probe>, Arc<Probe>) = (Arc::new(live), Arc::new(ready));
    let router = Router::new()
        .route("/healthz", get(move || answer(Arc::clone(&live))))
        .route("/readyz", get(move || answer(Arc::clone(&ready))))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found: try /healthz or /readyz\n",
            )
        });
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || runtime.block_on(crate::http_server::serve(listener, router)))?;
    Ok(bound)
}

async fn answer(probe: Arc<Probe>) -> Response {
    match tokio::task::spawn_blocking(move || probe()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok\n"),
        Ok(Err(reasons)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            reasons.iter().map(|r| format!("{r}\n")).collect::<String>(),
        ),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the probe failed: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn probes_answer_200_or_503_with_reasons() {
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(|| Ok(())),
            Box::new(|| Err(vec!["ipv4 nat: missing".into()])),
        )
        .unwrap();
        let h = get(addr, "/healthz");
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nok\n"),
            "{h}"
        );
        assert!(
            h.to_ascii_lowercase()
                .contains("content-type: text/plain; charset=utf-8\r\n"),
            "{h}"
        );
        let r = get(addr, "/readyz?verbose");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("ipv4 nat: missing\n"), "{r}");
        let n = get(addr, "/");
        assert!(n.starts_with("HTTP/1.1 404 "), "{n}");
        assert!(n.ends_with("not found: try /healthz or /readyz\n"), "{n}");
    }

    /// kubelet's probes must not wait behind a client that connected and stalls (the old
    /// single-threaded server read each request head in turn, for up to 5 s), nor behind a
    /// probe that is slow itself (readiness runs iptables, which may wait for the xtables lock).
    #[test]
    fn a_stalled_client_or_a_slow_probe_delays_no_other_probe() {
        let slow = Arc::new(AtomicBool::new(false));
        let (entered, slow_started) = std::sync::mpsc::channel();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(|| Ok(())),
            Box::new({
                let slow = Arc::clone(&slow);
                move || {
                    if slow.load(Ordering::Relaxed) {
                        let _ = entered.send(());
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Ok(())
                }
            }),
        )
        .unwrap();
        // Queued before the probe: a server that serves one connection at a time reads these
        // first and answers the probe only when they time out.
        let _silent = TcpStream::connect(addr).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        let r = get(addr, "/readyz");
        let took = started.elapsed();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(took < Duration::from_millis(200), "/readyz took {took:?}");

        slow.store(true, Ordering::Relaxed);
        let slow_probe = std::thread::spawn(move || get(addr, "/readyz"));
        slow_started.recv().unwrap();
        let started = Instant::now();
        let h = get(addr, "/healthz");
        let took = started.elapsed();
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(took < Duration::from_millis(200), "/healthz took {took:?}");
        assert!(slow_probe
            .join()
            .unwrap()
            .starts_with("HTTP/1.1 200 OK\r\n"));
    }
}
