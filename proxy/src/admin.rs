//! The admin listener: `/healthz`, `/readyz`, `/metrics`, on loopback by default and never on the
//! public port.
//!
//! `/revocations` changes what the data plane accepts, so reaching the listener is not enough:
//! it requires `Authorization: Bearer <admin token>` (`authentication.revocation.admin_token_file`,
//! see `docs/authentication.md`) and is off (403) without one configured. So are
//! `/admin/logging` and `/admin/config` ([`runtime`]): the log filter and the effective config,
//! and the policy studio's JSON API under `/admin/studio/api/` ([`studio`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

pub mod approvals;
mod runtime;
pub mod studio;

use crate::authn::Authenticator;
use crate::error::ProxyError;
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
    /// The running configuration's hash and reloads.
    pub config: Arc<crate::reload::Reloader>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    // The policy studio reads the live policy sets and the audit file of the running config.
    let studio = studio::router(studio::StudioState::new(
        state.authn.clone(),
        state.config.authz(),
        state
            .config
            .spec()
            .audit
            .file
            .as_ref()
            .map(|f| crate::audit::resolve_path(&f.path)),
    ));
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/revocations", get(list_revocations).post(revoke))
        .route(
            "/admin/logging",
            get(runtime::get_logging).put(runtime::put_logging),
        )
        .route("/admin/config", get(runtime::get_config))
        .with_state(state.clone())
        .merge(studio)
        .merge(approvals::router(state.config.services().approvals.clone()))
}

/// `ready` (or why not) on the first line, for probes; then the running configuration: its hash,
/// the reloads applied and refused, and why the last one was refused.
async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let config = state.config.status();
    let mut details = format!(
        "config_hash: {}\nconfig_reloads: {}\nconfig_reload_failures: {}\n",
        config.hash, config.reloads, config.failed_reloads
    );
    if let Some(error) = &config.last_error {
        details.push_str(&format!("config_last_reload_error: {error}\n"));
    }
    let (status, first) = readiness(&state);
    (status, format!("{first}\n{details}"))
}

fn readiness(state: &AdminState) -> (StatusCode, String) {
    if state.lifecycle.is_ready() {
        (StatusCode::OK, "ready".to_string())
    } else if state.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining".to_string())
    } else {
        let pending = state.lifecycle.pending_checks().join(", ");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("starting: waiting for {pending}"),
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

/// Refuses a call to the admin API without the admin token, with the documented error body:
/// 401 `UNAUTHENTICATED` for a missing or wrong token, 403 `FORBIDDEN` when no token is
/// configured (the API is off).
#[allow(clippy::result_large_err)]
fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), axum::response::Response> {
    authorize_with(&state.authn, headers)
}

/// [`authorize`] for handlers that hold the [`Authenticator`] rather than the whole state.
#[allow(clippy::result_large_err)]
pub(crate) fn authorize_with(
    authn: &Authenticator,
    headers: &HeaderMap,
) -> Result<(), axum::response::Response> {
    let refuse = |err: ProxyError, message: &str| {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut body: serde_json::Value =
            serde_json::from_slice(&err.body(&request_id, "")).unwrap_or_default();
        body["error"]["message"] = message.into();
        let mut resp = (
            StatusCode::from_u16(err.kind().status).unwrap_or(StatusCode::FORBIDDEN),
            Json(body),
        )
            .into_response();
        if err == ProxyError::Unauthenticated {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"palisade-admin\""),
            );
        }
        resp
    };
    let Some(token) = &authn.admin_token else {
        return Err(refuse(
            ProxyError::Forbidden,
            "the admin API is off: set authentication.revocation.admin_token_file",
        ));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if token.verify(authorization) {
        Ok(())
    } else {
        tracing::warn!("admin API call without a valid admin token refused");
        Err(refuse(
            ProxyError::Unauthenticated,
            "the admin API requires Authorization: Bearer <admin token>",
        ))
    }
}

async fn revoke(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    // Authenticate before the body is even parsed.
    if let Err(refusal) = authorize(&state, &headers) {
        return refusal;
    }
    let body: Revoke = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    revoke_jti(&state, body).await.into_response()
}

async fn revoke_jti(state: &AdminState, body: Revoke) -> impl IntoResponse {
    if body.jti.is_empty() || body.jti.len() > 512 {
        return (
            StatusCode::BAD_REQUEST,
            "jti must be 1-512 bytes\n".to_string(),
        );
    }
    let until = body.forget_after.map(crate::authn::unix_time);
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

async fn list_revocations(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> axum::response::Response {
    if let Err(refusal) = authorize(&state, &headers) {
        return refusal;
    }
    Json(state.authn.revocations.list()).into_response()
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
