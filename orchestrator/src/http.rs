//! HTTP surface: `POST /agent` (AG-UI run, SSE response) and `GET /healthz`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use palisade_wire::agui::RunAgentInput;
use serde_json::json;

pub(crate) mod runs;

use crate::model::OfflineModel;
use crate::run::{run_events, ActiveRuns};
use crate::OrchestratorConfig;

/// What every handler shares.
#[derive(Debug, Clone)]
struct AppState {
    model: OfflineModel,
    word_delay: Duration,
    runs: ActiveRuns,
}

/// The routes, with `runs` counting the runs in flight.
pub(crate) fn routes(cfg: &OrchestratorConfig, runs: ActiveRuns) -> Router {
    let state = AppState {
        model: OfflineModel,
        word_delay: cfg.word_delay(),
        runs,
    };
    Router::new()
        .route("/agent", post(run_agent))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Parses the run input and streams the run's events as SSE, one frame per event.
async fn run_agent(State(state): State<AppState>, body: Bytes) -> Response {
    let input: RunAgentInput = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(err) => {
            tracing::info!(error = %err, "rejected run request");
            return invalid_request(&format!("body is not a valid AG-UI RunAgentInput: {err}"));
        }
    };
    let frames = run_events(input, state.model, state.word_delay, &state.runs)
        .map(|event| Ok::<_, Infallible>(event.to_sse_bytes()));
    let mut response = Body::from_stream(frames).into_response();
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

/// `400` with the JSON error body shared with the proxy: `{"error":{"code":…,"message":…}}`.
fn invalid_request(message: &str) -> Response {
    let body = json!({"error": {"code": "INVALID_REQUEST", "message": message}});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
