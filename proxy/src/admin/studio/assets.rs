//! The page's files, compiled into the binary (`assets/`): plain HTML, JavaScript and CSS, no
//! framework, nothing fetched from elsewhere, so the studio works offline.
//!
//! They carry no data (everything comes from the API, behind the admin token), and are served
//! only while the admin API is on (a token is configured); a strict Content-Security-Policy
//! keeps the page to its own files and its own origin.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{refusal, StudioState};
use crate::error::ProxyError;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/studio.js");
const STYLE: &str = include_str!("assets/studio.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(state: &StudioState, content_type: &'static str, body: &'static str) -> Response {
    if state.authn.admin_token.is_none() {
        return refusal(ProxyError::Forbidden);
    }
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /admin/studio`.
pub(super) async fn page(State(state): State<StudioState>) -> Response {
    asset(&state, "text/html; charset=utf-8", PAGE)
}

/// `GET /admin/studio/studio.js`.
pub(super) async fn script(State(state): State<StudioState>) -> Response {
    asset(&state, "text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/studio/studio.css`.
pub(super) async fn style(State(state): State<StudioState>) -> Response {
    asset(&state, "text/css; charset=utf-8", STYLE)
}
