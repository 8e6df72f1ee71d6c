//! The operations listener (`admin.listen`): `/metrics` for Prometheus, `/healthz` (alive: the
//! daemon's main loop is turning) and `/readyz` (ready for work: the queue answered, the store
//! answered, not shutting down).

use crate::worker::health::Health;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::Arc;

struct Ops {
    health: Arc<Health>,
    metrics: PrometheusHandle,
}

/// The operations routes.
pub fn router(health: Arc<Health>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(crate::subscriptions::api::guard))
        .with_state(Arc::new(Ops { health, metrics }))
}

async fn render_metrics(State(ops): State<Arc<Ops>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(ops): State<Arc<Ops>>) -> Response {
    if ops.health.alive() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        let body =
            json!({"status": "stalled", "error": "the main loop has not turned for a minute"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    match ops.health.not_ready() {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "error": why})),
        )
            .into_response(),
    }
}
