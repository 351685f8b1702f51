//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Readiness;

#[derive(Clone)]
pub struct HttpState {
    pub readiness: Readiness,
    pub registry: Arc<Registry>,
}

/// Serve the operational endpoints on `listener` until `stop` is cancelled.
pub async fn serve_http(
    listener: TcpListener,
    state: HttpState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let services: serde_json::Map<String, serde_json::Value> = s
        .readiness
        .services()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), serde_json::Value::Bool(v)))
        .collect();
    let ready = s.readiness.is_ready();
    let body = serde_json::json!({
        "ready": ready,
        "draining": s.readiness.is_draining(),
        "services": services,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}
