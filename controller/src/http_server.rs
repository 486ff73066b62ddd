//! The one HTTP server of the product, behind the controller's `/healthz`, `/readyz`,
//! `/metrics` and the node agent's `/healthz`, `/readyz`: axum routes, each connection its own
//! task on hyper's HTTP/1 connection. `axum::serve` is not used because it offers no header
//! read timeout: a client that connects and never finishes its request would hold a task and
//! a descriptor for ever. Here it is dropped after [`HEAD_TIMEOUT`], and, since every
//! connection is served on its own, it delays nobody meanwhile (kubelet's probes included).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a client may take to send its request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` for ever: one request per connection, answered and closed (the
/// probes and scrapers open one per request anyway). Accept errors are logged and retried as
/// axum does (a pause on `EMFILE` and the like), so the endpoints outlive a burst of them.
pub(crate) async fn serve(mut listener: TcpListener, router: Router) {
    loop {
        let (sock, peer) = axum::serve::Listener::accept(&mut listener).await;
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(sock), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection");
            }
        });
    }
}

/// A `text/plain; charset=utf-8` answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// An answer of `content_type`.
pub(crate) fn typed(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}
