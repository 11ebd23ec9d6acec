//! The admin listener: `/healthz`, `/readyz`, `/metrics`, on loopback by default and never on the
//! public port.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::authn::Authenticator;
use crate::lifecycle::Lifecycle;
use crate::telemetry::Metrics;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Readiness and drain state.
    pub lifecycle: Arc<Lifecycle>,
    /// The metrics registry to render.
    pub metrics: Metrics,
    /// Authentication: the assertion JWKS and revocations.
    pub authn: Arc<Authenticator>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/revocations", get(list_revocations).post(revoke))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.lifecycle.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else if state.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_string())
    } else {
        let pending = state.lifecycle.pending_checks().join(", ");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("starting: waiting for {pending}\n"),
        )
    }
}

/// The public key that signs `X-Palisade-Assertion`; upstreams verify assertions against it.
async fn jwks(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.authn.assertion_jwks())
}

#[derive(serde::Deserialize)]
struct Revoke {
    jti: String,
    /// Unix seconds after which the entry may be forgotten (the token's `exp`).
    #[serde(default)]
    forget_after: Option<u64>,
}

async fn revoke(State(state): State<AdminState>, Json(body): Json<Revoke>) -> impl IntoResponse {
    if body.jti.is_empty() || body.jti.len() > 512 {
        return (
            StatusCode::BAD_REQUEST,
            "jti must be 1-512 bytes\n".to_string(),
        );
    }
    let until = body
        .forget_after
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
    match state.authn.revoke(&body.jti, until).await {
        Ok(()) => {
            tracing::info!(jti = %body.jti, "token revoked");
            (StatusCode::NO_CONTENT, String::new())
        }
        Err(e) => {
            tracing::warn!(jti = %body.jti, error = %e, "token revoked locally only");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))
        }
    }
}

async fn list_revocations(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.authn.revocations.list())
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
