//! The request pipeline: the one place that orders the stages of a request's life.
//!
//! ```text
//! accept ─ strip X-Palisade-* ─ request id + traceparent ─ route ─ body limit
//!        (a CORS preflight on a route with `cors`, and the browser-session sign-in, callback
//!        and logout paths, are answered at `route`, before identity)
//!        ─ identify ─ authorize ─ rate limit ─ guardrails            (request head)
//!        ─ body: dialect routes held whole, parsed once ─ guardrails ─ authorize ─ re-encode
//!        ─ forward (hop-by-hop out, X-Forwarded-* and identity in)
//!        ─ response: SSE parsed once per event ─ audit facts ─ authorize ─ guardrails ─ encode
//!        ─ metrics + log line + audit record
//! ```
//!
//! Every concern is a [`Stage`]; each pingora phase below calls the stages' hooks in order, one
//! line each, with the read-only [`crate::stage::Exchange`] and the stage's own state. A stage
//! that refuses returns a [`ProxyError`] (or a [`crate::stage::Refusal`] naming JSON-RPC ids);
//! [`respond`] writes every refusal, in the shape the exchange calls for.

mod admit;
mod body;
pub mod context;
pub mod headers;
pub mod metadata;
pub mod respond;

pub use body::MAX_JSON_ANSWER_BYTES;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::Digest;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::authn::Authenticator;
use crate::error::ProxyError;
use crate::lifecycle::Lifecycle;
use crate::listener::mtls::ServiceIdentity;
use crate::route::RouteTable;
use crate::stage::{ResponseHead, Stage};
use crate::telemetry::Metrics;
use context::{RequestCtx, ResponseBody};

/// The shared state of every stage, built from one configuration: at start, and again by each
/// config reload ([`crate::reload`]). A request keeps the `Stages` it started with for its whole
/// life (`RequestCtx::stages`), so its route and each stage's per-route state always come from
/// the same configuration, even when a reload swaps in a new one mid-stream. A new stage adds
/// its field here and its hook calls below.
pub struct Stages {
    /// The route table.
    pub routes: Arc<RouteTable>,
    /// The hash of the configuration these stages were built from (`/readyz`, audit records).
    pub config_hash: Arc<str>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness, in-flight tracking, drain.
    pub lifecycle: Arc<Lifecycle>,
    /// Identity.
    pub authn: Arc<Authenticator>,
    /// Cedar authorization (no-op hooks when no policy set is configured).
    pub authz: crate::authz::stage::AuthzStage,
    /// Rate limits, quotas and stream caps.
    pub limit: crate::ratelimit::stage::LimitStage,
    /// Guardrails.
    pub guard: crate::guardrails::GuardrailsStage,
    /// MCP tool-definition integrity (no-op hooks on routes without `tool_integrity`).
    pub integrity: crate::integrity::IntegrityStage,
    /// Human approvals of calls a policy marks `@approval("required")`.
    pub approvals: crate::approvals::stage::ApprovalsStage,
    /// Trusted reverse proxies: who the client is.
    pub edge: crate::listener::Edge,
    /// The audit trail (a no-op when no sink is configured).
    pub audit: Arc<crate::audit::Auditor>,
    /// OpenTelemetry spans (off unless `tracing.enabled`).
    pub tracing: Arc<crate::telemetry::otel::Tracing>,
}

/// The live [`Stages`]: swapped whole by a config reload, loaded once per request.
pub type LiveStages = Arc<arc_swap::ArcSwap<Stages>>;

/// The data plane's [`ProxyHttp`] implementation (one per listener).
pub struct Pipeline {
    stages: LiveStages,
    /// Whether the listener serves TLS (for `X-Forwarded-Proto`).
    tls: bool,
}

/// The exchange view of `ctx` (stages only run after routing put a route in it).
macro_rules! view {
    ($ctx:expr) => {
        $ctx.core.view().ok_or(ProxyError::Internal)?
    };
}

impl Pipeline {
    /// A pipeline for one listener over the shared, live `stages`.
    pub fn new(stages: LiveStages, tls: bool) -> Self {
        Self { stages, tls }
    }
}

impl Stages {
    /// The policy stages on the request head, in order. Each refuses with a [`ProxyError`].
    async fn enforce(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        let route = ctx.core.route.clone().ok_or(ProxyError::Internal)?;
        // Identify first: authorization and limits key on the principal. After routing, because
        // the route says whether anonymous callers are allowed.
        let cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|tls| tls.extension.get::<ServiceIdentity>())
            .map(|id| id.0.clone());
        let stage = ctx.span.stage("identify");
        let req = session.req_header_mut();
        let principal = self
            .authn
            .identify(req, ctx.core.client_ip, cert.as_deref(), route.auth)
            .await?;
        drop(stage);
        let req = session.req_header();
        // A session cookie rides along on cross-site requests: state-changing ones must come
        // from this site (bearer tokens are unaffected).
        self.authn
            .check_csrf(&principal, req, &route, ctx.core.tls)?;
        ctx.core.principal = Some(principal);

        // Authorize after identify (policies are about the principal) and before limits (a
        // refused request must not spend budget); body-aware checks run on the parsed body.
        let mut stage = ctx.span.stage("authorize");
        let authorized = self
            .authz
            .on_request(&view!(ctx), &mut ctx.authz, req)
            .await;
        if let Some(decision) = &ctx.authz.decision {
            stage.attr("authz.decision", decision.verdict());
        }
        drop(stage);
        authorized?;

        // Limit after authorize: a request refused earlier must not spend its caller's budget.
        let mut stage = ctx.span.stage("limit");
        let admitted = self
            .limit
            .on_request(&view!(ctx), &mut ctx.limit, req)
            .await;
        stage.attr(
            "ratelimit.outcome",
            if admitted.is_ok() {
                "allowed"
            } else {
                "limited"
            },
        );
        drop(stage);
        admitted?;

        // Guardrails last among the admission stages: a refused or limited request is never
        // inspected.
        self.guard
            .on_request(&view!(ctx), &mut ctx.guard, req)
            .await?;

        // A dialect route's body is held whole and parsed once, whatever the method or declared
        // content type: inspection is keyed on the route's protocol.
        if route.protocol.is_inspected() {
            ctx.held = Some(BytesMut::new());
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Pipeline {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        // The request's configuration generation, kept to its end.
        let stages = self.stages.load_full();
        RequestCtx::new(stages.lifecycle.enter(), stages)
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<bool> {
        let stages = ctx.stages.clone();
        // RFC 9728 metadata for MCP routes is public: it tells clients where to get a token.
        if respond::metadata(session, &stages.routes, &stages.authn).await? {
            return Ok(true);
        }
        ctx.core.tls = self.tls;
        let outcome = match stages.admit(session, ctx) {
            Ok(admit::Admitted::Proxy) => stages.enforce(session, ctx).await,
            Ok(admit::Admitted::Preflight) => {
                respond::preflight(session, ctx).await?;
                return Ok(true);
            }
            Ok(admit::Admitted::Session(endpoint)) => {
                let origin = respond::origin(session);
                let answer = stages
                    .authn
                    .answer_session(endpoint, session.req_header(), &origin, ctx.core.tls)
                    .await;
                match answer {
                    Ok(answer) => {
                        respond::answer(session, ctx, answer).await?;
                        return Ok(true);
                    }
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => Ok(false),
            Err(err) => {
                respond::refuse(session, ctx, err.into()).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        let stages = ctx.stages.clone();
        ctx.request_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        let limit = ctx
            .core
            .route
            .as_ref()
            .map_or(u64::MAX, |r| r.max_body_bytes);
        if ctx.request_bytes > limit {
            ctx.error = Some(ProxyError::PayloadTooLarge { limit });
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
        }
        // The body stages decide on the last chunk: that call is the request's `guard` span.
        let _span = end_of_stream.then(|| ctx.span.stage("guard"));
        let Some(held) = ctx.held.as_mut() else {
            // Not a dialect route: chunks stream on; guardrails may depth-check JSON.
            let checked = match (body.as_ref(), ctx.core.view()) {
                (Some(chunk), Some(x)) => stages.guard.on_body_chunk(&x, &mut ctx.guard, chunk),
                _ => Ok(()),
            };
            if let Err(err) = checked {
                respond::refuse(session, ctx, err.into()).await?;
                return Error::e_explain(ErrorType::HTTPStatus(400), "refused by guardrails");
            }
            return Ok(());
        };
        if let Some(chunk) = body.take() {
            held.extend_from_slice(&chunk);
        }
        if !end_of_stream {
            *body = Some(Bytes::new()); // hold: an empty chunk is not written upstream
            return Ok(());
        }
        let whole = ctx.held.take().unwrap_or_default();
        match stages.decide_body(ctx, &whole).await {
            Ok(out) => {
                *body = Some(out);
                Ok(())
            }
            Err(refusal) => {
                let status = refusal.error.kind().status;
                respond::refuse(session, ctx, refusal).await?;
                Error::e_explain(ErrorType::HTTPStatus(status), "refused on the request body")
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Box<HttpPeer>> {
        let route = ctx.core.routed()?.route;
        if ctx.span.is_live() {
            // The span names the URL as sent upstream (after the route's rewrite).
            let path = session
                .req_header()
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str());
            let sent = route.upstream_path(path);
            ctx.span
                .start_upstream(&route.upstream, sent.as_deref().unwrap_or(path));
        }
        Ok(Box::new(headers::peer(route)))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        if let Some(addr) = peer.address().as_inet() {
            ctx.upstream_socket = Some((fd, *addr));
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        let stages = ctx.stages.clone();
        let x = ctx.core.routed()?;
        let original_host = headers::request_host(session.req_header()).map(str::to_string);
        headers::forward(upstream, &x, original_host.as_deref())?;
        stages
            .edge
            .forward_headers(upstream, session.req_header(), session.client_addr())?;
        // A held body is re-encoded (its length may change): it goes upstream chunked.
        headers::prepare_inspected(upstream, x.route.protocol.is_inspected())?;
        stages
            .authn
            .on_upstream_request(&x, &(), upstream)
            .map_err(|e| Error::because(ErrorType::InternalError, "identity headers", e))?;
        if let Some(trace) = &ctx.core.trace {
            trace.propagate(upstream)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        let stages = ctx.stages.clone();
        ctx.upstream_status = Some(resp.status.as_u16());
        let head = ResponseHead {
            status: resp.status.as_u16(),
            is_sse: headers::is_event_stream(resp),
        };
        headers::response(resp, &ctx.core.request_id, head.is_sse)?;
        headers::cors(resp, ctx)?;
        ctx.span.upstream_answered(head.status, head.is_sse);
        let x = ctx.core.routed()?;
        let answered = stages
            .authz
            .on_response(&x, &mut ctx.authz, &head, resp)
            .and_then(|()| stages.limit.on_response(&x, &mut ctx.limit, &head, resp))
            .and_then(|()| stages.guard.on_response(&x, &mut ctx.guard, &head, resp));
        if let Err(e) = answered {
            return Error::e_because(ErrorType::InternalError, "response stages", e);
        }
        // How the body is read follows from the route's protocol and the head just seen.
        ctx.response = stages.response_body(ctx, &head, resp);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Option<Duration>> {
        let stages = ctx.stages.clone();
        let chunk = body.take().unwrap_or_default();
        let out = match &ctx.response {
            ResponseBody::Pass => Ok(chunk),
            ResponseBody::Stream(_) => stages.relay_chunk(ctx, &chunk, end_of_stream),
            ResponseBody::Answer { .. } => stages.answer_chunk(ctx, &chunk, end_of_stream),
        };
        let out = match out {
            Ok(out) => out,
            Err(err) => {
                ctx.error = Some(err);
                // Failing the filter drops the upstream; `fail_to_proxy` ends the response.
                return Error::e_explain(ErrorType::InternalError, "response refused by a stage");
            }
        };
        ctx.response_bytes += out.len() as u64;
        *body = Some(out);
        if end_of_stream {
            // The upstream closed cleanly but an AG-UI run never finished: say so, in-protocol.
            respond::end_unfinished_run(ctx, body);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let stages = ctx.stages.clone();
        let classified = respond::classify(e, ctx, &stages.metrics);
        let error_code = match classified {
            None => 0, // the client is gone: nothing to write
            Some(err) => respond::fail(session, ctx, err).await,
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let stages = ctx.stages.clone();
        let reason = match (&ctx.error, e) {
            (Some(err), _) => err.kind().reason,
            (None, Some(_)) => "client_closed",
            (None, None) if ctx.preflight => "cors_preflight",
            (None, None) => "ok",
        };
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        // Built before the stream state is released; queued last, after the log line.
        let record = stages.audit.is_enabled().then(|| {
            let mut record = respond::record(session, ctx, status, reason);
            stages.authz.audit(&ctx.authz, &mut record);
            stages.guard.audit(&ctx.guard, &mut record);
            stages.integrity.audit(&ctx.integrity, &mut record);
            stages.approvals.audit(&ctx.approvals, &mut record);
            record.note_tool_calls(&ctx.audit.0);
            record
        });
        respond::observe(&stages.metrics, session, ctx, status, reason);
        // Audit last, once per request (refusals included): into a bounded queue.
        if let Some(record) = record {
            stages.audit.submit(record).await;
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one structured log line from `logging`.
        true
    }
}
