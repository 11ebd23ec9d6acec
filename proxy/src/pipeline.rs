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

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::Digest;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::audit::record::AuditRecord;
use crate::config::stages::States;
pub use crate::config::stages::{LiveStages, Stages};
use crate::error::ProxyError;
use crate::listener::mtls::ServiceIdentity;
use crate::protocol::event::Item;
use crate::protocol::message::Message;
use crate::stage::{Exchange, Refusal, ResponseHead, Stage};
use context::{RequestCtx, ResponseBody};

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
            .on_request(&view!(ctx), &mut ctx.states.authz, req)
            .await;
        if let Some(decision) = &ctx.states.authz.decision {
            stage.attr("authz.decision", decision.verdict());
        }
        drop(stage);
        authorized?;

        // Limit after authorize: a request refused earlier must not spend its caller's budget.
        let mut stage = ctx.span.stage("limit");
        let admitted = self
            .limit
            .on_request(&view!(ctx), &mut ctx.states.limit, req)
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
            .on_request(&view!(ctx), &mut ctx.states.guard, req)
            .await?;

        // A dialect route's body is held whole and parsed once, whatever the method or declared
        // content type: inspection is keyed on the route's protocol.
        if route.protocol.is_inspected() {
            ctx.held = Some(BytesMut::new());
        }
        Ok(())
    }

    /// The body stages on a dialect route's parsed request body, in order: guardrails, then
    /// tool integrity (a tool nobody reviewed is refused whoever calls it), then authorization
    /// (which therefore decides on the redacted body), then approvals (after authorization: a
    /// forbid always wins, and only a permitted call waits). `body.rs` parses and re-encodes.
    fn on_message(
        &self,
        x: &Exchange<'_>,
        states: &mut States,
        message: &mut Message,
    ) -> Result<(), Refusal> {
        self.guard.on_message(x, &mut states.guard, message)?;
        self.integrity
            .on_message(x, &mut states.integrity, message)?;
        self.authz.on_message(x, &mut states.authz, message)?;
        self.approvals.on_message(x, &mut states.approvals, message)
    }

    /// After every `on_message`, before a byte of the body goes upstream: the approvals stage
    /// may hold the request until an approver decides.
    async fn on_hold(&self, x: &Exchange<'_>, states: &mut States) -> Result<(), Refusal> {
        self.approvals.on_hold(x, &mut states.approvals).await
    }

    /// The response head's stages, in order.
    fn on_response(
        &self,
        x: &Exchange<'_>,
        states: &mut States,
        head: &ResponseHead,
        resp: &mut ResponseHeader,
    ) -> Result<(), ProxyError> {
        self.authz.on_response(x, &mut states.authz, head, resp)?;
        self.limit.on_response(x, &mut states.limit, head, resp)?;
        self.guard.on_response(x, &mut states.guard, head, resp)
    }

    /// The event chain over the parsed items of one SSE chunk, in order: audit facts first (the
    /// record lists the calls authorization drops), then tool integrity (the whole upstream
    /// `tools/list`, before any principal's filter), then authorization (what may exist), then
    /// guardrails (scan only what the client may see). `Err` ends the stream after the items
    /// left.
    fn on_events(
        &self,
        x: &Exchange<'_>,
        states: &mut States,
        items: &mut Vec<Item>,
        end: bool,
    ) -> Result<(), ProxyError> {
        if self.audit.is_enabled() {
            states.audit.note(items);
        }
        self.integrity
            .on_events(x, &mut states.integrity, items, end)?;
        // Authorization may end the stream (a denied call under `run_error`); what it kept
        // before its RUN_ERROR still goes through guardrails, as the stream's last items — a
        // secret in the same chunk as a denied call is not relayed because the run ended for
        // another reason.
        let authz_end = self.authz.on_events(x, &mut states.authz, items, end);
        self.guard
            .on_events(x, &mut states.guard, items, end || authz_end.is_err())?;
        authz_end
    }

    /// A dialect route's whole JSON answer, parsed once: integrity (the upstream's own
    /// `tools/list`), authorization, guardrails.
    fn on_answer(&self, x: &Exchange<'_>, states: &mut States, answer: &mut serde_json::Value) {
        self.integrity.on_answer(x, &mut states.integrity, answer);
        self.authz.on_answer(x, &mut states.authz, answer);
        self.guard.on_answer(x, &mut states.guard, answer);
    }

    /// Each stage's part of the request's audit record.
    fn audit_record(&self, states: &States, record: &mut AuditRecord) {
        self.authz.audit(&states.authz, record);
        self.guard.audit(&states.guard, record);
        self.integrity.audit(&states.integrity, record);
        self.approvals.audit(&states.approvals, record);
        record.note_tool_calls(&states.audit.0);
    }
}

#[async_trait]
impl ProxyHttp for Pipeline {
    /// Boxed: pingora keeps the context inline in its per-connection future, several times over
    /// (the future takes it by value and hands it down), so a 1.7 KB context made every
    /// connection's task larger — idle ones too — and was copied each time pingora moved that
    /// future. Boxed, each holds a pointer, for one allocation per request.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        // The request's configuration generation, kept to its end.
        let stages = self.stages.load_full();
        Box::new(RequestCtx::new(stages.lifecycle.enter(), stages))
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
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
        ctx: &mut Box<RequestCtx>,
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
                (Some(chunk), Some(x)) => {
                    stages.guard.on_body_chunk(&x, &mut ctx.states.guard, chunk)
                }
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
        ctx: &mut Box<RequestCtx>,
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
        ctx: &mut Box<RequestCtx>,
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
        ctx: &mut Box<RequestCtx>,
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
        ctx: &mut Box<RequestCtx>,
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
        if let Err(e) = stages.on_response(&x, &mut ctx.states, &head, resp) {
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
        ctx: &mut Box<RequestCtx>,
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
        ctx: &mut Box<RequestCtx>,
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
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
            stages.audit_record(&ctx.states, &mut record);
            record
        });
        respond::observe(&stages.metrics, session, ctx, status, reason);
        // Audit last, once per request (refusals included): into a bounded queue.
        if let Some(record) = record {
            stages.audit.submit(record).await;
        }
    }

    fn suppress_error_log(
        &self,
        _session: &Session,
        _ctx: &Box<RequestCtx>,
        _error: &Error,
    ) -> bool {
        // Every request already gets one structured log line from `logging`.
        true
    }
}
