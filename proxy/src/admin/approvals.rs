//! The approvals admin API (`docs/approvals.md`, "Deciding"): list the pending approvals, show
//! one, approve or deny one.
//!
//! Every call needs the admin token (`Authorization: Bearer <admin token>`, like the rest of
//! the admin API). Deciding needs more: the approver's own credential in
//! `X-Palisade-Approver: Bearer <JWT or API key>`, verified by the same authenticator as the
//! data plane; the approver must not be the principal whose call is held, and the enforcing
//! policy set must permit `Action::"approve"` on the held call's resource. Every decision is
//! audited with the approver's identity.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::approvals::record::Approval;
use crate::approvals::store::Decided;
use crate::approvals::Approvals;
use crate::authz::{AuthzRequest, RequestFacts, Resource};
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::route::AuthRequirement;

/// The header carrying the approver's credential.
pub const APPROVER_HEADER: &str = "x-palisade-approver";

/// Longest reason kept (characters); control characters are dropped.
pub const MAX_REASON_CHARS: usize = 500;

/// The approvals routes.
pub fn router(approvals: Arc<Approvals>) -> Router {
    Router::new()
        .route("/admin/approvals", get(list))
        .route("/admin/approvals/{id}", get(show))
        .route("/admin/approvals/{id}/approve", post(approve))
        .route("/admin/approvals/{id}/deny", post(deny))
        .with_state(approvals)
}

/// The body of a decision (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// Why, shown to the caller in the refusal of a denial and kept in the audit trail.
    #[serde(default)]
    reason: Option<String>,
}

async fn list(State(a): State<Arc<Approvals>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = super::authorize_with(&a.authn, &headers) {
        return refusal;
    }
    match a.list().await {
        Ok(pending) => Json(json!({"approvals": pending, "shared": a.is_shared()})).into_response(),
        Err(e) => error(e, ""),
    }
}

async fn show(
    State(a): State<Arc<Approvals>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = super::authorize_with(&a.authn, &headers) {
        return refusal;
    }
    if !is_id(&id) {
        return error(ProxyError::NotFound, "no such approval");
    }
    match a.get(&id).await {
        Ok(Some(found)) => Json(found).into_response(),
        Ok(None) => error(ProxyError::NotFound, "no such approval"),
        Err(e) => error(e, ""),
    }
}

async fn approve(
    State(a): State<Arc<Approvals>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    decide(&a, &id, true, &headers, &body).await
}

async fn deny(
    State(a): State<Arc<Approvals>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    decide(&a, &id, false, &headers, &body).await
}

async fn decide(
    a: &Approvals,
    id: &str,
    approve: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // The admin token first: nothing else is read without it.
    if let Err(refusal) = super::authorize_with(&a.authn, headers) {
        return refusal;
    }
    if !is_id(id) {
        return error(ProxyError::NotFound, "no such approval");
    }
    let body: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return error(ProxyError::InvalidRequest(format!("body: {e}")), ""),
        }
    };
    let reason = body
        .reason
        .as_deref()
        .map(clean_reason)
        .filter(|r| !r.is_empty());
    let approver = match identify(a, headers).await {
        Ok(p) => p,
        Err(e) => {
            return error(
                e,
                "deciding needs the approver's credential: X-Palisade-Approver: Bearer <token>",
            )
        }
    };
    let held = match a.get(id).await {
        Ok(Some(held)) => held,
        Ok(None) => return error(ProxyError::NotFound, "no such approval"),
        Err(e) => return error(e, ""),
    };
    let approver_uid = approver.entity_uid();
    if approver_uid == held.principal {
        tracing::warn!(approval.id = %id, approver = %approver_uid, "self-approval refused");
        return error(
            ProxyError::Forbidden,
            "the principal whose call is held cannot decide it",
        );
    }
    if let Err(e) = may_approve(a, &approver, &held, id) {
        tracing::warn!(approval.id = %id, approver = %approver_uid, "approver not permitted");
        return error(
            e,
            "the policies do not permit this principal to `approve` this call",
        );
    }
    let decided = match a
        .decide(id, approve, &approver_uid, reason.as_deref())
        .await
    {
        Ok(d) => d,
        Err(e) => return error(e, ""),
    };
    match decided {
        Decided::Done(done) => {
            let outcome = if approve { "approved" } else { "denied" };
            tracing::info!(approval.id = %id, approval.outcome = outcome,
                approver = %approver_uid, "approval decided");
            a.audit_event(&done, outcome, Some(&approver)).await;
            Json(done).into_response()
        }
        Decided::Settled(settled) => {
            // 409 `APPROVAL_SETTLED`: someone (or the deadline) decided first.
            let mut body: serde_json::Value = serde_json::from_slice(
                &ProxyError::InvalidRequest(String::new())
                    .body(&uuid::Uuid::new_v4().to_string(), ""),
            )
            .unwrap_or_default();
            body["error"]["code"] = "APPROVAL_SETTLED".into();
            body["error"]["message"] =
                format!("the approval is already {}", settled.status.as_str()).into();
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
        Decided::Missing => error(ProxyError::NotFound, "no such approval"),
    }
}

/// The approver, from `X-Palisade-Approver`, through the data plane's authenticator.
async fn identify(a: &Approvals, headers: &HeaderMap) -> Result<Arc<Principal>, ProxyError> {
    let credential = headers
        .get(APPROVER_HEADER)
        .ok_or(ProxyError::Unauthenticated)?;
    let mut req = pingora_http::RequestHeader::build("POST", b"/admin/approvals", None)
        .map_err(|_| ProxyError::Internal)?;
    req.insert_header(http::header::AUTHORIZATION, credential.clone())
        .map_err(|_| ProxyError::Unauthenticated)?;
    // No client address: a trusted-header gateway never vouches for an approver.
    a.authn
        .identify(&mut req, None, None, AuthRequirement::Required)
        .await
}

/// Cedar: may `approver` `approve` the call held in `held`?
fn may_approve(
    a: &Approvals,
    approver: &Principal,
    held: &Approval,
    id: &str,
) -> Result<(), ProxyError> {
    let authz = a.authz.as_deref().ok_or(ProxyError::Forbidden)?;
    let resource = Resource::parse(&held.resource).map_err(|_| ProxyError::Forbidden)?;
    let facts = RequestFacts {
        method: "POST".into(),
        path: format!("/admin/approvals/{id}"),
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        forwarded: false,
        time: time::OffsetDateTime::now_utc(),
        tls: false,
        request_bytes: 0,
        route: held.route.clone(),
        protocol: "http",
    };
    let decision = authz.primary().decide(&AuthzRequest {
        principal: Some(approver),
        action: "approve",
        resource: &resource,
        facts: &facts,
        arguments: None,
    });
    if decision.allowed {
        Ok(())
    } else {
        Err(ProxyError::Forbidden)
    }
}

/// Whether `id` can be an approval id (a UUID's characters, bounded): anything else never
/// reaches the store.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The reason as kept: control characters dropped, at most [`MAX_REASON_CHARS`].
fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The documented error body with `message` (when non-empty) in place of the default.
fn error(err: ProxyError, message: &str) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut body: serde_json::Value =
        serde_json::from_slice(&err.body(&request_id, "")).unwrap_or_default();
    if !message.is_empty() {
        body["error"]["message"] = message.into();
    }
    let status = StatusCode::from_u16(err.kind().status).unwrap_or(StatusCode::FORBIDDEN);
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::{clean_reason, is_id};

    #[test]
    fn only_uuid_shaped_ids_reach_the_store() {
        assert!(is_id("6f1c2d3e-0000-4000-8000-0123456789ab"));
        for bad in ["", "x", "a:k:b", "../a", &"a".repeat(65)] {
            assert!(!is_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn reasons_are_bounded_and_printable() {
        assert_eq!(clean_reason(" ok\u{0}\n then "), "ok then");
        assert_eq!(
            clean_reason(&"x".repeat(900)).len(),
            super::MAX_REASON_CHARS
        );
    }
}
