//! Operating a running proxy from the admin listener: the log filter (`GET`/`PUT
//! /admin/logging`) and the effective config (`GET /admin/config`). Both sit behind the admin
//! token, like `/revocations` (`docs/operations.md#runtime-log-level-and-effective-config`).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{authorize, AdminState};
use crate::error::ProxyError;
use crate::telemetry::logging::{self, FilterError};

/// The documented error body (`docs/errors.md`) with `err`'s status and code.
pub(super) fn refusal(err: ProxyError) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let body: serde_json::Value =
        serde_json::from_slice(&err.body(&request_id, "")).unwrap_or_default();
    let status = StatusCode::from_u16(err.kind().status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

fn filter_error(err: FilterError) -> Response {
    match err {
        FilterError::Invalid(_) => refusal(ProxyError::InvalidRequest(err.to_string())),
        FilterError::NotInstalled => refusal(ProxyError::NotFound),
    }
}

/// `GET /admin/logging`: `{"filter": "<EnvFilter directives>"}`.
pub(super) async fn get_logging(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused;
    }
    match logging::current_filter() {
        Ok(filter) => Json(serde_json::json!({ "filter": filter })).into_response(),
        Err(e) => filter_error(e),
    }
}

/// `PUT /admin/logging`: the body is the new filter, as text (`debug`,
/// `info,palisade_proxy::authn=trace`) or as `{"filter": "…"}`. A filter that does not parse is
/// refused with 400 `INVALID_REQUEST` and changes nothing.
pub(super) async fn put_logging(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused;
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return refusal(ProxyError::InvalidRequest(
            "the filter is not UTF-8 text".into(),
        ));
    };
    let directives = if text.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            filter: String,
        }
        match serde_json::from_str::<Body>(text) {
            Ok(body) => body.filter,
            Err(e) => {
                return refusal(ProxyError::InvalidRequest(format!(
                    "expected {{\"filter\": \"…\"}}: {e}"
                )))
            }
        }
    } else {
        text.to_string()
    };
    let before = logging::current_filter().unwrap_or_default();
    match logging::set_filter(&directives) {
        Ok(filter) => {
            tracing::warn!(before = %before, after = %filter, "log filter changed through the admin API");
            Json(serde_json::json!({ "filter": filter })).into_response()
        }
        Err(e) => filter_error(e),
    }
}

/// `GET /admin/config`: the config the proxy runs with (file + `PALISADE_*` overrides + defaults)
/// as JSON. Fields that may carry credentials are redacted by their spec type ([`crate::redact`]).
pub(super) async fn get_config(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused;
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(state.config.spec().as_ref()),
    )
        .into_response()
}
