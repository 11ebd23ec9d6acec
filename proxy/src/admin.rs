//! The admin listener: `/healthz`, `/readyz`, `/metrics`, on loopback by default and never on the
//! public port.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::lifecycle::Lifecycle;
use crate::telemetry::Metrics;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Readiness and drain state.
    pub lifecycle: Arc<Lifecycle>,
    /// The metrics registry to render.
    pub metrics: Metrics,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.lifecycle.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if state.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
