//! `GET /runs/{id}` and `GET /threads/{id}`: sessions after the fact, and the answer to an
//! idempotent repeat of `POST /agent`.
//!
//! - `200` with the [`RunRecord`] / [`ThreadRecord`] as JSON (timestamps RFC 3339, tool calls
//!   with their results or errors; the stored events are not shown).
//! - `404 NOT_FOUND` when no run or thread has that id.
//! - `500 STORE_UNAVAILABLE` when the store failed — never `404`, so a client does not conclude
//!   that a run is gone because the database was down.
//!
//! Sessions belong to their principal: when the identity layer put the verified
//! [`Caller`] in the request's extensions, a run recorded for another principal is answered `404`
//! like a missing one (its existence is not revealed), and a thread lists only the caller's runs
//! (`404` when none are). Runs recorded without a principal are visible to every caller.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use serde_json::json;

use crate::idempotency::{Claim, Holder, IdempotencyStore};
use crate::identity::Caller;
use crate::store::{RunRecord, RunStatus, SessionStore, StoreError};

/// Header on a replayed answer to an idempotent repeat.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The session routes (`GET /runs/{id}`, `GET /threads/{id}`) reading `store`; merge them into
/// the app router.
pub fn routes(store: Arc<dyn SessionStore>) -> Router {
    Router::new()
        .route("/runs/{id}", get(get_run))
        .route("/threads/{id}", get(get_thread))
        .with_state(store)
}

async fn get_run(
    State(store): State<Arc<dyn SessionStore>>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    match store.run(&id).await {
        Ok(Some(run)) if visible(run.principal.as_deref(), caller.as_deref()) => {
            Json(run).into_response()
        }
        Ok(_) => not_found("run", &id),
        Err(err) => store_failed(&err),
    }
}

async fn get_thread(
    State(store): State<Arc<dyn SessionStore>>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    match store.thread(&id).await {
        Ok(Some(mut thread)) => {
            if let Some(Extension(caller)) = &caller {
                thread
                    .runs
                    .retain(|run| visible(run.principal.as_deref(), Some(caller)));
                if thread.runs.is_empty() {
                    return not_found("thread", &id);
                }
            }
            Json(thread).into_response()
        }
        Ok(None) => not_found("thread", &id),
        Err(err) => store_failed(&err),
    }
}

/// Whether a run recorded for `owner` may be shown to `caller`.
fn visible(owner: Option<&str>, caller: Option<&Caller>) -> bool {
    match (owner, caller) {
        (Some(owner), Some(caller)) => owner == caller.principal,
        _ => true,
    }
}

/// The answer to a `POST /agent` whose `Idempotency-Key` already belongs to run `run_id`:
///
/// - the run has ended (`finished` or `error`) → its stored AG-UI events replayed as SSE, same
///   frames as the original (header `Idempotent-Replayed: true`);
/// - the run is still going, or not recorded yet (its first request is between claiming the key
///   and starting) → `409 RUN_IN_PROGRESS` with `runId`, and `Retry-After: 1`;
/// - the store failed → `500 STORE_UNAVAILABLE`.
///
/// A `cancelled` run (its client went away mid-stream) answers `409` here; use [`repeat`] to let
/// the repeat run instead.
pub async fn answer_repeat(store: &dyn SessionStore, run_id: &str) -> Response {
    match store.run(run_id).await {
        Ok(Some(run)) if run.status.is_terminal() && run.status != RunStatus::Cancelled => {
            replay(&run)
        }
        Ok(_) => in_progress(run_id),
        Err(err) => store_failed(&err),
    }
}

/// A repeat of `POST /agent` whose scoped idempotency `key` holds `held` (the stored value), as
/// the new request `holder` (its run id and request fingerprint) should be handled:
/// `Some(answer)` to send (`422` when the first request differed, a replay, `409`, or
/// `500`/`503`), or `None` to go ahead and run — when the previous run was cancelled (its client
/// went away, which is exactly when a client retries), the key is handed over to `holder` first.
pub async fn repeat(
    store: &dyn SessionStore,
    keys: &dyn IdempotencyStore,
    key: &str,
    held: &str,
    holder: &Holder,
    ttl: Duration,
) -> Option<Response> {
    let previous = Holder::decode(held);
    let fingerprint = holder.fingerprint.as_deref().unwrap_or_default();
    if !previous.same_request(fingerprint) {
        return Some(key_reused(&previous.run_id));
    }
    match store.run(&previous.run_id).await {
        Ok(Some(run)) if run.status == RunStatus::Cancelled => {}
        Ok(_) => return Some(answer_repeat(store, &previous.run_id).await),
        Err(err) => return Some(store_failed(&err)),
    }
    // Release only frees the key while the previous run holds it, and the claim is atomic: of
    // two retries racing here, one runs and the other is answered about that one.
    let taken = match keys.release(key, held).await {
        Ok(()) => keys.claim(key, &holder.encode(), ttl).await,
        Err(err) => Err(err),
    };
    match taken {
        Ok(Claim::New) => {
            tracing::info!(run.id = %holder.run_id, run.previous = %previous.run_id, "idempotent repeat of a cancelled run: running again");
            None
        }
        Ok(Claim::Existing { run_id: winner }) => {
            let winner = Holder::decode(&winner);
            if !winner.same_request(fingerprint) {
                return Some(key_reused(&winner.run_id));
            }
            Some(answer_repeat(store, &winner.run_id).await)
        }
        Err(err) => {
            tracing::error!(error = %err, "idempotency backend failed");
            let body = json!({"error": {
                "code": "UPSTREAM_UNAVAILABLE",
                "message": "the idempotency store is unavailable",
            }});
            Some((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response())
        }
    }
}

/// `422 IDEMPOTENCY_KEY_REUSED`: the key belongs to run `run_id`, started by a different request
/// (the IETF Idempotency-Key draft's answer to a key reused with another payload).
fn key_reused(run_id: &str) -> Response {
    let body = json!({"error": {
        "code": "IDEMPOTENCY_KEY_REUSED",
        "message": "this Idempotency-Key was used for a different request; use a new key",
        "runId": run_id,
    }});
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

fn in_progress(run_id: &str) -> Response {
    let body = json!({"error": {
        "code": "RUN_IN_PROGRESS",
        "message": "a run with this Idempotency-Key is still in progress",
        "runId": run_id,
    }});
    let mut response = (StatusCode::CONFLICT, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Ends the replay of a run whose events were not all stored (`store.retention.max_events_per_run`).
pub const EVENTS_TRUNCATED: &str = "EVENTS_TRUNCATED";

/// The stored events as one SSE body, framed like a live run (`data: {json}\n\n`). A run
/// whose events were cut at the storage cap ends with `RUN_ERROR` code `EVENTS_TRUNCATED`
/// after the stored ones, so the repeat is never mistaken for the whole run.
fn replay(run: &RunRecord) -> Response {
    let mut body = String::with_capacity(run.events.iter().map(|e| e.len() + 8).sum());
    for event in &run.events {
        body.push_str("data: ");
        body.push_str(event);
        body.push_str("\n\n");
    }
    if run.events_truncated {
        let message = format!(
            "only the first {} events of run {} were stored (store.retention.max_events_per_run); \
             the replay ends here — GET /runs/{} has the run's outcome",
            run.events.len(),
            run.run_id,
            run.run_id
        );
        body.push_str(&String::from_utf8_lossy(
            &palisade_wire::agui::run_error_frame(EVENTS_TRUNCATED, &message),
        ));
    }
    let mut response = Body::from(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    headers.insert(
        "x-palisade-run-id",
        HeaderValue::from_str(&run.run_id).unwrap_or(HeaderValue::from_static("-")),
    );
    response
}

fn not_found(what: &str, id: &str) -> Response {
    let body =
        json!({"error": {"code": "NOT_FOUND", "message": format!("no {what} with id {id:?}")}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn store_failed(err: &StoreError) -> Response {
    // The cause goes to the log, not to the client (it may name hosts or tables).
    tracing::error!(error = %err, "session store failed");
    let body = json!({"error": {
        "code": "STORE_UNAVAILABLE",
        "message": "the session store failed; try again",
    }});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

#[cfg(test)]
mod tests;
