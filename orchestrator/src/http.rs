//! HTTP surface.
//!
//! | route | answers |
//! |---|---|
//! | `POST /agent` | an AG-UI run as SSE (needs the proxy's `X-Palisade-Assertion`; `Idempotency-Key` dedupes) |
//! | `GET /runs/{id}`, `GET /threads/{id}` | sessions after the fact (assertion required, see `http/runs.rs`) |
//! | `GET /healthz` | `200 ok` while the process serves |
//! | `GET /readyz` | `200 ready` when the proxy's keys are at hand and not shutting down, else `503` |
//! | `GET /metrics` | Prometheus text format |
//!
//! Errors use the proxy's body shape `{"error":{"code":…,"message":…}}`: `401 UNAUTHENTICATED`
//! (missing or invalid assertion), `400 INVALID_REQUEST`, `409 RUN_IN_PROGRESS` and
//! `422 IDEMPOTENCY_KEY_REUSED` (an `Idempotency-Key` repeat: see `http/runs.rs`),
//! `503 UPSTREAM_UNAVAILABLE` (the proxy's keys or the idempotency backend cannot be reached).

pub(crate) mod runs;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use palisade_wire::agui::RunAgentInput;
use serde_json::json;

use crate::idempotency::{fingerprint, scoped_key, Claim, Holder, IdempotencyStore};
use crate::identity::{Caller, IdentityError, Verifier};
use crate::run::{run_events, RunRequest, Runtime};
use crate::store::SessionStore;
use crate::trace::TraceContext;

/// The header carrying the proxy's signed identity assertion.
pub const ASSERTION_HEADER: &str = "x-palisade-assertion";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) verifier: Verifier,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) idempotency: Arc<dyn IdempotencyStore>,
    pub(crate) idempotency_ttl: Duration,
    pub(crate) draining: Arc<AtomicBool>,
}

/// The routes.
pub(crate) fn routes(state: AppState) -> Router {
    let sessions = runs::routes(state.store.clone()).layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_identity,
    ));
    Router::new()
        .route("/agent", post(run_agent))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/approvals/events", post(approval_event))
        .with_state(state)
        .merge(sessions)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if !state.verifier.ready().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "proxy keys not loaded").into_response();
    }
    "ready".into_response()
}

/// The proxy's approval webhook (`docs/approvals.md`): an announcement naming the request id of
/// a tool call in flight shows as a `palisade.approval` event on that call's run (204); any
/// other is ignored (404). It can only add that event: nothing is approved here.
async fn approval_event(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let Ok(announcement) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if state.runtime.approvals.notify(announcement) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.runtime.metrics.render(),
    )
        .into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The caller of a request, or the refusal to send.
async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let assertion = header_str(headers, ASSERTION_HEADER);
    let credential = header_str(headers, "authorization");
    state
        .verifier
        .verify(assertion, credential)
        .await
        .map_err(|e| {
            tracing::info!(error = %e, "request refused: no valid assertion");
            match e {
                IdentityError::Keys(_) => {
                    state.runtime.metrics.refused("identity_unavailable");
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "UPSTREAM_UNAVAILABLE",
                        &e.to_string(),
                    )
                }
                _ => {
                    state.runtime.metrics.refused("unauthenticated");
                    error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &e.to_string())
                }
            }
        })
}

/// Refuses unidentified requests; hands the [`Caller`] to the handler as an extension (the
/// session routes show a caller only their own runs).
async fn require_identity(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match identify(&state, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refusal,
    }
}

/// Identifies the caller, parses the run input, dedupes by `Idempotency-Key`, and streams the
/// run's events as SSE, one frame per event.
async fn run_agent(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match identify(&state, &headers).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let input: RunAgentInput = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(err) => {
            state.runtime.metrics.refused("invalid_request");
            tracing::info!(error = %err, "rejected run request");
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                &format!("body is not a valid AG-UI RunAgentInput: {err}"),
            );
        }
    };
    if let Some(key) = header_str(&headers, "idempotency-key").filter(|k| !k.is_empty()) {
        let principal = (!caller.principal.is_empty()).then_some(caller.principal.as_str());
        let scoped = scoped_key(principal, key);
        let holder = Holder::new(&input.run_id, &fingerprint(&input));
        match state
            .idempotency
            .claim(&scoped, &holder.encode(), state.idempotency_ttl)
            .await
        {
            Ok(Claim::New) => {}
            Ok(Claim::Existing { run_id: held }) => {
                let previous = Holder::decode(&held);
                tracing::info!(run.id = %previous.run_id, "idempotent repeat");
                let (store, keys) = (state.store.as_ref(), state.idempotency.as_ref());
                let ttl = state.idempotency_ttl;
                if let Some(answer) = runs::repeat(store, keys, &scoped, &held, &holder, ttl).await
                {
                    let reason = if answer.status() == StatusCode::UNPROCESSABLE_ENTITY {
                        "idempotency_key_reused"
                    } else {
                        "idempotent_repeat"
                    };
                    state.runtime.metrics.refused(reason);
                    return answer;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "idempotency backend failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UPSTREAM_UNAVAILABLE",
                    "the idempotency store is unavailable",
                );
            }
        }
    }
    let request = RunRequest {
        input,
        caller,
        trace: TraceContext::from_header(header_str(&headers, "traceparent")),
    };
    let frames = run_events(state.runtime.clone(), request)
        .map(|event| Ok::<_, Infallible>(event.to_sse_bytes()));
    sse_response(Body::from_stream(frames))
}

/// A `200 text/event-stream` response around `body`.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Ask buffering reverse proxies (nginx) to pass frames through as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// An error with the JSON body shared with the proxy: `{"error":{"code":…,"message":…}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}
