//! `/healthz`, `/readyz` and `/metrics` of the controller, on the shared
//! [`crate::http_server`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::Engine;
use crate::http_server::{text, typed};

/// The content type of [`super::Metrics::render`]'s OpenMetrics text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves for ever (accept errors are logged and retried). `/readyz` is 200 when the
/// Northbound is reachable, the replica synced and the caches listed; `/healthz` is 200 while
/// the process serves.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>) {
    let router = Router::new()
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
        .with_state(engine);
    crate::http_server::serve(listener, router).await
}

async fn readyz(State(engine): State<Arc<Engine>>) -> Response {
    if !engine.stores().listed.all() {
        text(StatusCode::SERVICE_UNAVAILABLE, "caches not listed yet\n")
    } else if engine.ready().await {
        text(StatusCode::OK, "ok\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Northbound is unreachable or its replica is not synced\n",
        )
    }
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    typed(StatusCode::OK, OPENMETRICS, engine.metrics().render())
}
