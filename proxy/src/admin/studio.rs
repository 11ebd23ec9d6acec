//! The policy studio: a web page on the admin listener for writing and reviewing policies
//! (`docs/policy-studio.md`), and the read-only JSON API it calls.
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/studio` (+ `studio.js`, `studio.css`) | the page, compiled into the binary |
//! | `GET /admin/studio/api/live` | the live (deciding) policy set: files, pickers, policy ranges |
//! | `POST …/api/validate` | validates edited policies: errors with line and column |
//! | `POST …/api/evaluate` | one composed request, decided by the edited and the live set |
//! | `POST …/api/test` | the live set's policy tests (`palisade policy test`) on the edited set |
//! | `GET …/api/audit?filter=all\|denied\|shadow` | recent decisions from the audit file |
//! | `POST …/api/explain-audit` | one audit record explained, by both sets |
//! | `POST …/api/who-can` | the roles × tools matrix of [`crate::authz::analysis::who_can`] |
//!
//! Nothing here changes the live policy set: edited policies travel in each request body, are
//! built into a throw-away [`PolicySet`] and dropped with the answer. Every API route needs the
//! admin token (`Authorization: Bearer …`, the same check as `/admin/config`); the page's own
//! files carry no data and are served whenever the admin API is on (a browser cannot add the
//! header to a navigation: the page asks for the token and sends it with each call). Bodies
//! are bounded ([`MAX_BODY_BYTES`]); bad input is answered with the documented error body.

mod assets;
mod audit_list;
mod edited;
mod handlers;
mod matrix;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use super::runtime::refusal;
use crate::authn::Authenticator;
use crate::authz::{Authz, PolicySet};
use crate::error::ProxyError;

/// Largest request body the studio API reads (edited policies travel in every body).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the studio reads: the admin token's check, the live policy sets, the audit file.
#[derive(Clone)]
pub struct StudioState {
    authn: Arc<Authenticator>,
    authz: Option<Arc<Authz>>,
    audit_file: Option<PathBuf>,
}

impl StudioState {
    /// The studio over `authz` (absent: authorization is off) and the audit file `audit_file`
    /// (absent: no file sink).
    pub fn new(
        authn: Arc<Authenticator>,
        authz: Option<Arc<Authz>>,
        audit_file: Option<PathBuf>,
    ) -> Self {
        Self {
            authn,
            authz,
            audit_file,
        }
    }

    /// The deciding live set, or the error the API answers when authorization is off.
    #[allow(clippy::result_large_err)]
    fn live(&self) -> Result<Arc<PolicySet>, Response> {
        match &self.authz {
            Some(authz) => Ok(authz.primary()),
            None => Err(refusal(ProxyError::InvalidRequest(
                "authorization is off: no policy set is configured \
                 (authorization.policy_sets)"
                    .into(),
            ))),
        }
    }
}

/// The studio's routes, to merge into the admin router.
pub fn router(state: StudioState) -> Router {
    Router::new()
        .route("/admin/studio", get(assets::page))
        .route("/admin/studio/", get(assets::page))
        .route("/admin/studio/studio.js", get(assets::script))
        .route("/admin/studio/studio.css", get(assets::style))
        .route("/admin/studio/api/live", get(handlers::live))
        .route("/admin/studio/api/validate", post(handlers::validate))
        .route("/admin/studio/api/evaluate", post(handlers::evaluate))
        .route("/admin/studio/api/test", post(handlers::test))
        .route("/admin/studio/api/audit", get(handlers::audit))
        .route(
            "/admin/studio/api/explain-audit",
            post(handlers::explain_audit),
        )
        .route("/admin/studio/api/who-can", post(handlers::who_can))
        .with_state(state)
}

/// Checks the admin token, then reads and parses the body as `T` (bounded; the documented
/// error body on any problem).
#[allow(clippy::result_large_err)]
/// [`admitted`], then the live set the request works against.
async fn admitted_with_live<T: DeserializeOwned>(
    state: &StudioState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(T, Arc<PolicySet>), Response> {
    let body = admitted(state, headers, body).await?;
    Ok((body, state.live()?))
}

async fn admitted<T: DeserializeOwned>(
    state: &StudioState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, Response> {
    super::authorize_with(&state.authn, headers)?;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            refusal(ProxyError::PayloadTooLarge {
                limit: MAX_BODY_BYTES as u64,
            })
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| refusal(ProxyError::InvalidRequest(format!("request body: {e}"))))
}

/// Runs `work` (policy building and evaluation: CPU-bound) off the async threads.
async fn blocking<F>(work: F) -> Response
where
    F: FnOnce() -> Result<serde_json::Value, String> + Send + 'static,
{
    // Studio work (parsing, validating, deciding models) runs one request at a time per core
    // at most: the admin listener shares the machine with the data plane, and a burst of
    // analyses must queue rather than take every core (each one is bounded by `MAX_SHAPES`).
    static WORKERS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let Ok(_permit) = WORKERS.acquire().await else {
        return refusal(ProxyError::Internal);
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => ok(value),
        Ok(Err(message)) => refusal(ProxyError::InvalidRequest(message)),
        Err(e) => {
            tracing::error!(error = %e, "policy studio: a request's work failed");
            refusal(ProxyError::Internal)
        }
    }
}

fn ok(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(value),
    )
        .into_response()
}
