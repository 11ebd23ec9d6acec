//! The one error type of the request path and its mapping to the wire.
//!
//! Every non-2xx response the proxy itself produces comes from a [`ProxyError`]. The mapping to
//! HTTP status, stable error code, metric reason and audit field lives in one exhaustive `match`
//! ([`ProxyError::kind`]), so adding a variant without deciding how it looks on the wire does not
//! compile. The JSON body is the contract documented in `docs/errors.md`:
//!
//! ```json
//! {"error":{"code":"FORBIDDEN","message":"…","request_id":"…","trace_id":"…","timestamp":"RFC3339"}}
//! ```

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

/// Why the proxy refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No credentials, or credentials that could not be verified.
    #[error("authentication required")]
    Unauthenticated,
    /// The credentials were valid once but have expired.
    #[error("token expired")]
    TokenExpired,
    /// The credentials were revoked.
    #[error("token revoked")]
    TokenRevoked,
    /// No policy permits the request.
    #[error("access denied")]
    Forbidden,
    /// Denied, but some policy would permit the same request with more OAuth scopes: a
    /// `403` with an RFC 6750 `insufficient_scope` challenge naming them.
    #[error("insufficient scope: the request needs {}", .scopes.join(" "))]
    InsufficientScope {
        /// A minimal set of missing scopes.
        scopes: Vec<String>,
    },
    /// Denied, but permitted after multi-factor authentication: a `401` with an RFC 9470
    /// `insufficient_user_authentication` challenge.
    #[error("multi-factor authentication required")]
    StepUpRequired {
        /// The configured `acr_values` that mean MFA (none: the attribute is left out).
        acr_values: Vec<String>,
        /// The configured `max_age`, in seconds.
        max_age: Option<u64>,
        /// Scopes missing as well (also named in the challenge).
        scopes: Vec<String>,
    },
    /// An approver refused the held call (`docs/approvals.md`).
    #[error("the approver denied this call{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    ApprovalDenied {
        /// The approver's reason, when given.
        reason: Option<String>,
    },
    /// Nobody approved the held call in time (`approvals.timeout`): denied by default.
    #[error("no approver decided in time: the call is denied")]
    ApprovalTimeout,
    /// Too many approvals are pending (all principals, or this principal's).
    #[error("too many approvals pending: {0}")]
    ApprovalQueueFull(&'static str),
    /// The approval store (Redis) is unreachable: the call is refused, never assumed approved.
    #[error("approval store unavailable")]
    ApprovalUnavailable,
    /// A page navigation on a `session` route without a live session: redirected to sign-in.
    #[error("sign-in required")]
    LoginRequired {
        /// The sign-in URL (with `return_to`), the `Location` of the `302`.
        location: String,
    },
    /// The browser session ended (signed out, expired, or its refresh failed).
    #[error("session expired")]
    SessionExpired,
    /// A sign-in step was refused (state, nonce, PKCE, an open redirect…); the message says
    /// which.
    #[error("sign-in refused: {0}")]
    LoginRejected(String),
    /// A state-changing request carried a session cookie but did not come from this site.
    #[error("cross-site request refused: {0}")]
    CsrfRejected(String),
    /// The session store (Redis) is unreachable: sessions fail closed.
    #[error("session store unavailable")]
    SessionStoreUnavailable,
    /// No route matches the request's host and path.
    #[error("no route for this path")]
    NotFound,
    /// A route matches the path but not the method; `allow` lists the methods it accepts.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Comma-separated methods for the `Allow` header.
        allow: String,
    },
    /// A rate limit, quota or stream cap was exceeded.
    #[error("rate limit exceeded")]
    RateLimited {
        /// When the client may retry.
        retry_after: Duration,
        /// The IETF `RateLimit-Policy` / `RateLimit` values (empty for stream caps).
        headers: RateLimitHeaders,
    },
    /// The shared rate-limit backend (Redis) is unreachable and `on_failure` is `fail_closed`.
    #[error("rate limit backend unavailable")]
    RateLimitBackendDown,
    /// The request body is larger than the route allows.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The request is malformed; the message names what is wrong.
    #[error("{0}")]
    InvalidRequest(String),
    /// An MCP `tools/call` of a tool that is not as reviewed: not pinned in the route's tool
    /// lock, changed since, poisoned, or named like another tool (`docs/tool-integrity.md`).
    #[error("tool `{tool}` is not approved: {reason}")]
    ToolNotApproved {
        /// The tool's name (at most 128 characters).
        tool: String,
        /// Why.
        reason: String,
    },
    /// A guardrail blocked the request or the response.
    #[error("blocked by guardrail")]
    GuardrailViolation,
    /// A CORS preflight the route's `cors` policy does not allow; the message says why (origin,
    /// method or header).
    #[error("CORS preflight refused: {0}")]
    CorsRejected(String),
    /// The upstream refused the connection, reset it, or sent something unusable.
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The proxy is shutting down and ended the stream at its drain deadline.
    #[error("proxy is shutting down")]
    ShuttingDown,
    /// An audit sink is failing and `audit.on_sink_failure` is `fail_closed`: nothing is
    /// served unaudited.
    #[error("audit trail unavailable")]
    AuditUnavailable,
    /// A bug or an unexpected failure inside the proxy.
    #[error("internal error")]
    Internal,
}

/// How a [`ProxyError`] looks on the wire, in metrics and in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind {
    /// HTTP status code.
    pub status: u16,
    /// Stable, documented error code (`error.code` in the body, `RUN_ERROR.code` on streams).
    pub code: &'static str,
    /// Low-cardinality reason label for `palisade_requests_total{reason}` and the audit record.
    pub reason: &'static str,
}

impl ProxyError {
    /// The one exhaustive mapping from error to status, code and metric reason.
    pub fn kind(&self) -> ErrorKind {
        let (status, code, reason) = match self {
            Self::Unauthenticated => (401, "UNAUTHENTICATED", "unauthenticated"),
            Self::TokenExpired => (401, "TOKEN_EXPIRED", "token_expired"),
            Self::TokenRevoked => (401, "TOKEN_REVOKED", "token_revoked"),
            Self::Forbidden => (403, "FORBIDDEN", "forbidden"),
            Self::InsufficientScope { .. } => (403, "INSUFFICIENT_SCOPE", "insufficient_scope"),
            Self::StepUpRequired { .. } => (401, "STEP_UP_REQUIRED", "step_up_required"),
            Self::ApprovalDenied { .. } => (403, "APPROVAL_DENIED", "approval_denied"),
            Self::ApprovalTimeout => (403, "APPROVAL_TIMEOUT", "approval_timeout"),
            Self::ApprovalQueueFull(_) => (429, "APPROVAL_QUEUE_FULL", "approval_queue_full"),
            Self::ApprovalUnavailable => (503, "APPROVAL_UNAVAILABLE", "approval_unavailable"),
            Self::LoginRequired { .. } => (302, "LOGIN_REQUIRED", "login_required"),
            Self::SessionExpired => (401, "SESSION_EXPIRED", "session_expired"),
            Self::LoginRejected(_) => (400, "LOGIN_REJECTED", "login_rejected"),
            Self::CsrfRejected(_) => (403, "CSRF_REJECTED", "csrf_rejected"),
            Self::SessionStoreUnavailable => (
                503,
                "SESSION_STORE_UNAVAILABLE",
                "session_store_unavailable",
            ),
            Self::NotFound => (404, "NOT_FOUND", "no_route"),
            Self::MethodNotAllowed { .. } => (405, "METHOD_NOT_ALLOWED", "method_not_allowed"),
            Self::RateLimited { .. } => (429, "RATE_LIMITED", "rate_limited"),
            Self::RateLimitBackendDown => {
                (503, "RATE_LIMIT_BACKEND_DOWN", "rate_limit_backend_down")
            }
            Self::PayloadTooLarge { .. } => (413, "PAYLOAD_TOO_LARGE", "payload_too_large"),
            Self::InvalidRequest(_) => (400, "INVALID_REQUEST", "invalid_request"),
            Self::GuardrailViolation => (400, "GUARDRAIL_VIOLATION", "guardrail"),
            Self::ToolNotApproved { .. } => (403, "TOOL_NOT_APPROVED", "tool_not_approved"),
            Self::CorsRejected(_) => (403, "CORS_REJECTED", "cors_rejected"),
            Self::UpstreamUnavailable => (502, "UPSTREAM_UNAVAILABLE", "upstream_unavailable"),
            Self::UpstreamTimeout => (504, "UPSTREAM_TIMEOUT", "upstream_timeout"),
            Self::ShuttingDown => (503, "SHUTTING_DOWN", "shutting_down"),
            Self::AuditUnavailable => (503, "AUDIT_UNAVAILABLE", "audit_unavailable"),
            Self::Internal => (500, "INTERNAL", "internal"),
        };
        ErrorKind {
            status,
            code,
            reason,
        }
    }

    /// The `WWW-Authenticate` challenge of this error, if it has one; `resource_metadata` is
    /// the route's RFC 9728 metadata URL on MCP routes (the MCP authorization spec points
    /// clients at it).
    pub fn challenge(&self, resource_metadata: Option<&str>) -> Option<String> {
        let mut params: Vec<(&str, String)> = Vec::new();
        match self {
            Self::Unauthenticated | Self::TokenExpired | Self::TokenRevoked => {}
            Self::InsufficientScope { scopes } => {
                params.push(("error", "insufficient_scope".into()));
                params.push(("scope", scopes.join(" ")));
            }
            Self::StepUpRequired {
                acr_values,
                max_age,
                scopes,
            } => {
                params.push(("error", "insufficient_user_authentication".into()));
                params.push((
                    "error_description",
                    "A different authentication level is required".into(),
                ));
                if !acr_values.is_empty() {
                    params.push(("acr_values", acr_values.join(" ")));
                }
                if !scopes.is_empty() {
                    params.push(("scope", scopes.join(" ")));
                }
                if let Some(age) = max_age {
                    params.push(("max_age", age.to_string()));
                }
            }
            _ => return None,
        }
        if let Some(url) = resource_metadata {
            params.push(("resource_metadata", url.to_string()));
        }
        let mut out = String::from("Bearer");
        for (i, (name, value)) in params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(name);
            out.push('=');
            // RFC 9470 writes `max_age` as a bare number; everything else is a quoted-string.
            if *name == "max_age" {
                out.push_str(value);
            } else {
                out.push_str(&quoted(value));
            }
        }
        Some(out)
    }

    /// Extra response headers this error carries (`Allow`, `Retry-After`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::MethodNotAllowed { allow } => vec![("allow", allow.clone())],
            Self::LoginRequired { location } => vec![("location", location.clone())],
            Self::RateLimited {
                retry_after,
                headers,
            } => {
                // Whole seconds, rounded up: retrying at `Retry-After` must not be early.
                let secs = ceil_secs(*retry_after).max(1);
                let mut out = vec![("retry-after", secs.to_string())];
                out.extend(headers.pairs());
                out
            }
            _ => self
                .challenge(None)
                .map(|c| vec![("www-authenticate", c)])
                .unwrap_or_default(),
        }
    }

    /// The JSON error body (`docs/errors.md`).
    pub fn body(&self, request_id: &str, trace_id: &str) -> Bytes {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Body<'a>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'a str,
            message: String,
            request_id: &'a str,
            trace_id: &'a str,
            timestamp: String,
        }
        let envelope = Envelope {
            error: Body {
                code: self.kind().code,
                message: self.to_string(),
                request_id,
                trace_id,
                timestamp: crate::text::now_rfc3339(),
            },
        };
        // Serializing plain strings into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }
}

/// `value` as an RFC 9110 quoted-string: `"` and `\` escaped, control characters (which no
/// header may carry) dropped.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One problem in a configuration, located by its field path (`routes[1].upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, with list indexes in brackets.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Rendered header values; empty when no limit applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy` value.
    pub policy: String,
    /// `RateLimit` value.
    pub state: String,
}

impl RateLimitHeaders {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.policy.is_empty()
    }

    /// `(name, value)` pairs to add to a response.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        if self.is_empty() {
            return Vec::new();
        }
        vec![
            ("ratelimit-policy", self.policy.clone()),
            ("ratelimit", self.state.clone()),
        ]
    }
}

/// Whole seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_a_documented_code() {
        let all = [
            ProxyError::Unauthenticated,
            ProxyError::TokenExpired,
            ProxyError::TokenRevoked,
            ProxyError::Forbidden,
            ProxyError::InsufficientScope {
                scopes: vec!["tools:write".into()],
            },
            ProxyError::StepUpRequired {
                acr_values: Vec::new(),
                max_age: None,
                scopes: Vec::new(),
            },
            ProxyError::ApprovalDenied {
                reason: Some("no".into()),
            },
            ProxyError::ApprovalTimeout,
            ProxyError::ApprovalQueueFull("full"),
            ProxyError::ApprovalUnavailable,
            ProxyError::NotFound,
            ProxyError::MethodNotAllowed {
                allow: "GET".into(),
            },
            ProxyError::RateLimited {
                retry_after: Duration::from_secs(3),
                headers: Default::default(),
            },
            ProxyError::RateLimitBackendDown,
            ProxyError::PayloadTooLarge { limit: 10 },
            ProxyError::InvalidRequest("bad".into()),
            ProxyError::GuardrailViolation,
            ProxyError::ToolNotApproved {
                tool: "t".into(),
                reason: "it is not pinned in the route's tool lock".into(),
            },
            ProxyError::CorsRejected("origin".into()),
            ProxyError::UpstreamUnavailable,
            ProxyError::UpstreamTimeout,
            ProxyError::ShuttingDown,
            ProxyError::AuditUnavailable,
            ProxyError::LoginRequired {
                location: "/.palisade/login".into(),
            },
            ProxyError::SessionExpired,
            ProxyError::LoginRejected("state".into()),
            ProxyError::CsrfRejected("origin".into()),
            ProxyError::SessionStoreUnavailable,
            ProxyError::Internal,
        ];
        let docs = include_str!("../../docs/errors.md");
        for err in all {
            let kind = err.kind();
            // The one redirect: a page navigation sent to sign-in (it still carries the body).
            let redirect = matches!(err, ProxyError::LoginRequired { .. }) && kind.status == 302;
            assert!(redirect || (400..600).contains(&kind.status), "{err:?}");
            assert!(
                docs.contains(&format!("`{}`", kind.code)),
                "docs/errors.md does not document {}",
                kind.code
            );
        }
    }

    #[test]
    fn body_has_the_design_shape() {
        let body = ProxyError::PayloadTooLarge { limit: 1024 }.body("req-1", "trace-1");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let error = &json["error"];
        assert_eq!(error["code"], "PAYLOAD_TOO_LARGE");
        assert_eq!(error["message"], "request body exceeds 1024 bytes");
        assert_eq!(error["request_id"], "req-1");
        assert_eq!(error["trace_id"], "trace-1");
        let ts = error["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "{ts}"
        );
        assert_eq!(json.as_object().unwrap().len(), 1);
        assert_eq!(error.as_object().unwrap().len(), 5);
    }

    #[test]
    fn step_up_challenges_are_rfc_6750_and_9470_headers() {
        let scope = ProxyError::InsufficientScope {
            scopes: vec!["tools:write".into(), "files:read".into()],
        };
        assert_eq!(
            scope.challenge(Some("https://h/.well-known/oauth-protected-resource/mcp")),
            Some(
                "Bearer error=\"insufficient_scope\", scope=\"tools:write files:read\", \
                 resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\""
                    .into()
            )
        );
        assert_eq!(scope.kind().status, 403);
        let mfa = ProxyError::StepUpRequired {
            acr_values: vec!["urn:mfa".into(), "say \"hi\"\\".into()],
            max_age: Some(300),
            scopes: Vec::new(),
        };
        assert_eq!(
            mfa.challenge(None),
            Some(
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A different authentication level is required\", \
                 acr_values=\"urn:mfa say \\\"hi\\\"\\\\\", max_age=300"
                    .into()
            )
        );
        assert_eq!(mfa.kind().status, 401);
        let bare = ProxyError::StepUpRequired {
            acr_values: Vec::new(),
            max_age: None,
            scopes: vec!["x".into()],
        };
        assert_eq!(
            bare.headers(),
            vec![(
                "www-authenticate",
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A different authentication level is required\", scope=\"x\""
                    .to_string()
            )]
        );
        assert_eq!(
            ProxyError::Unauthenticated.challenge(Some("u")),
            Some("Bearer resource_metadata=\"u\"".into())
        );
        assert_eq!(ProxyError::Forbidden.challenge(Some("u")), None);
        assert_eq!(quoted("a\"b\\c\r\n"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let err = ProxyError::RateLimited {
            retry_after: Duration::from_millis(200),
            headers: Default::default(),
        };
        assert_eq!(err.headers(), vec![("retry-after", "1".to_string())]);
    }
}
