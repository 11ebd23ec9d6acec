//! The request pipeline: the one place that orders the stages of a request's life.
//!
//! ```text
//! accept ─ strip X-Palisade-* ─ request id + traceparent ─ route ─ body limit
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

pub mod context;
pub mod headers;
pub mod metadata;
pub mod respond;

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
use crate::protocol::{event::Item, json, message::Message, relay::SseRelay};
use crate::route::{host_without_port, RouteMatch, RouteTable};
use crate::stage::{ResponseHead, Stage};
use crate::telemetry::{Metrics, TraceContext};
use context::{RequestCtx, ResponseBody, StreamCtx};

/// Largest JSON answer of a dialect route the proxy holds to inspect; a larger one is refused.
pub const MAX_JSON_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The shared state of every stage, built once at start. A new stage adds its field here and
/// its hook calls below.
pub struct Stages {
    /// The route table.
    pub routes: arc_swap::ArcSwap<RouteTable>,
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
    /// Trusted reverse proxies: who the client is.
    pub edge: crate::listener::Edge,
    /// The audit trail (a no-op when no sink is configured).
    pub audit: Arc<crate::audit::Auditor>,
    /// OpenTelemetry spans (off unless `tracing.enabled`).
    pub tracing: Arc<crate::telemetry::otel::Tracing>,
}

/// The data plane's [`ProxyHttp`] implementation (one per listener).
pub struct Pipeline {
    stages: Arc<Stages>,
    /// Whether the listener serves TLS (for `X-Forwarded-Proto`).
    tls: bool,
}

impl std::ops::Deref for Pipeline {
    type Target = Stages;

    fn deref(&self) -> &Stages {
        &self.stages
    }
}

/// The exchange view of `ctx` (stages only run after routing put a route in it).
macro_rules! view {
    ($ctx:expr) => {
        $ctx.core.view().ok_or(ProxyError::Internal)?
    };
}

impl Pipeline {
    /// A pipeline for one listener over the shared `stages`.
    pub fn new(stages: Arc<Stages>, tls: bool) -> Self {
        Self { stages, tls }
    }

    /// Stages that run before anything is forwarded. `Err` short-circuits to the error mapper.
    fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        // Strip first: nothing below may read a client-written identity header.
        headers::strip_palisade_headers(session.req_header_mut());
        ctx.core.tls = self.tls;
        let req = session.req_header();
        ctx.core.request_id = headers::request_id(req);
        ctx.core.method = req.method.clone();
        ctx.core.path = req.uri.path().to_string();
        // The request's span continues the client's trace and names this hop upstream.
        let mut trace = TraceContext::from_request(req);
        ctx.span = self
            .tracing
            .begin(&mut trace, req.method.as_str(), req.uri.path());
        ctx.core.trace = Some(trace);
        // The client behind trusted proxies, before anything keys on it (after the ids, so a
        // refusal carries them).
        ctx.core.client_ip = self.edge.client_ip(session.client_addr(), req)?;
        // Under `fail_closed`, nothing is served while the audit trail cannot be written (after
        // the ids, so the refusal's body and record carry them).
        if self.audit.refuses() {
            self.audit.count_refused();
            return Err(ProxyError::AuditUnavailable);
        }
        // Route before the body limit: the limit is per route.
        let host = headers::request_host(req).map(host_without_port);
        match self.routes.load().find(host, &ctx.core.path, &req.method) {
            RouteMatch::Found(route) => ctx.core.route = Some(route.clone()),
            RouteMatch::MethodNotAllowed(allow) => {
                return Err(ProxyError::MethodNotAllowed { allow })
            }
            RouteMatch::NotFound => return Err(ProxyError::NotFound),
        }
        // A declared length over the limit is refused before a byte of body is read; chunked
        // bodies are counted as they stream in (`request_body_filter`).
        let limit = ctx
            .core
            .route
            .as_ref()
            .map_or(u64::MAX, |r| r.max_body_bytes);
        if headers::declared_length(req).is_some_and(|len| len > limit) {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        Ok(())
    }

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
        ctx.core.principal = Some(principal);
        let req = session.req_header();

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

    /// The whole held body: parsed once, inspected by guardrails then authorization (which
    /// therefore decides on the redacted body), and re-encoded from what they left.
    fn decide_body(
        &self,
        ctx: &mut RequestCtx,
        whole: &[u8],
    ) -> Result<Bytes, crate::stage::Refusal> {
        let protocol = ctx
            .core
            .route
            .as_ref()
            .map_or(Default::default(), |r| r.protocol);
        let Some(mut message) = Message::parse(protocol, whole)? else {
            return Ok(Bytes::new());
        };
        ctx.jsonrpc = message.jsonrpc().map(|b| (b.ids(), b.batch));
        let x = ctx.core.view().ok_or(ProxyError::Internal)?;
        self.guard.on_message(&x, &mut ctx.guard, &mut message)?;
        self.authz.on_message(&x, &mut ctx.authz, &mut message)?;
        Ok(message.encode())
    }

    /// One chunk of an SSE response: parsed once, through the event chain, encoded once.
    fn relay_chunk(
        &self,
        ctx: &mut RequestCtx,
        chunk: &[u8],
        end: bool,
    ) -> Result<Bytes, ProxyError> {
        let ResponseBody::Stream(stream) = &mut ctx.response else {
            return Ok(Bytes::copy_from_slice(chunk));
        };
        let mut items: Vec<Item> = stream.relay.parse(chunk).map_err(|e| {
            tracing::warn!(request_id = %ctx.core.request_id, error = %e, "upstream stream refused");
            ProxyError::UpstreamUnavailable
        })?;
        let x = ctx.core.view().ok_or(ProxyError::Internal)?;
        // Audit facts first (the record lists calls authorization drops), then authorization
        // (what may exist), then guardrails (scan only what the client may see).
        if self.audit.is_enabled() {
            ctx.audit.note(&items);
        }
        let chain = self
            .authz
            .on_events(&x, &mut ctx.authz, &mut items, end)
            .and_then(|()| self.guard.on_events(&x, &mut ctx.guard, &mut items, end));
        let out = stream.relay.encode(&items);
        stream
            .metrics
            .sse_events
            .inc_by(stream.relay.events() - stream.events_counted);
        stream.events_counted = stream.relay.events();
        if let Err(err) = chain {
            // The stage left the items that end the stream; `fail_to_proxy` writes them.
            ctx.closing = Some(out);
            return Err(err);
        }
        Ok(out)
    }

    /// One chunk of a held JSON answer; at the end, parsed once, filtered, re-encoded.
    fn answer_chunk(
        &self,
        ctx: &mut RequestCtx,
        chunk: &[u8],
        end: bool,
    ) -> Result<Bytes, ProxyError> {
        let ResponseBody::Answer(held) = &mut ctx.response else {
            return Ok(Bytes::copy_from_slice(chunk));
        };
        held.extend_from_slice(chunk);
        if held.len() > MAX_JSON_ANSWER_BYTES {
            return Err(ProxyError::UpstreamUnavailable);
        }
        if !end {
            return Ok(Bytes::new());
        }
        let whole = std::mem::take(held);
        if whole.iter().all(u8::is_ascii_whitespace) {
            return Ok(whole.freeze());
        }
        let mut answer = json::parse(&whole).map_err(|e| {
            tracing::warn!(request_id = %ctx.core.request_id, error = %e, "upstream answer refused");
            ProxyError::UpstreamUnavailable
        })?;
        let x = ctx.core.view().ok_or(ProxyError::Internal)?;
        self.authz.on_answer(&x, &mut ctx.authz, &mut answer);
        self.guard.on_answer(&x, &mut ctx.guard, &mut answer);
        Ok(json::to_bytes(&answer))
    }
}

#[async_trait]
impl ProxyHttp for Pipeline {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.lifecycle.enter())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<bool> {
        // RFC 9728 metadata for MCP routes is public: it tells clients where to get a token.
        if respond::metadata(session, &self.routes.load(), &self.authn).await? {
            return Ok(true);
        }
        let outcome = match self.admit(session, ctx) {
            Ok(()) => self.enforce(session, ctx).await,
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
        let Some(held) = ctx.held.as_mut() else {
            // Not a dialect route: chunks stream on; guardrails may depth-check JSON.
            let checked = match (body.as_ref(), ctx.core.view()) {
                (Some(chunk), Some(x)) => self.guard.on_body_chunk(&x, &mut ctx.guard, chunk),
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
        // The body stages decide on the last chunk: that call is the request's `guard` span.
        let _span = ctx.span.stage("guard");
        let whole = ctx.held.take().unwrap_or_default();
        match self.decide_body(ctx, &whole) {
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
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Box<HttpPeer>> {
        let route = ctx
            .core
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        ctx.span.start_upstream();
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
        let x = ctx
            .core
            .view()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let original_host = headers::request_host(session.req_header()).map(str::to_string);
        headers::forward(upstream, &x, original_host.as_deref())?;
        self.edge
            .forward_headers(upstream, session.req_header(), session.client_addr())?;
        // A held body is re-encoded (its length may change): it goes upstream chunked.
        headers::prepare_inspected(upstream, x.route.protocol.is_inspected())?;
        self.authn
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
        ctx.upstream_status = Some(resp.status.as_u16());
        let head = ResponseHead {
            status: resp.status.as_u16(),
            is_sse: headers::is_event_stream(resp),
        };
        headers::response(resp, &ctx.core.request_id, head.is_sse)?;
        ctx.span.upstream_answered(head.status, head.is_sse);
        let x = ctx
            .core
            .view()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let stages = self
            .authz
            .on_response(&x, &mut ctx.authz, &head, resp)
            .and_then(|()| self.limit.on_response(&x, &mut ctx.limit, &head, resp))
            .and_then(|()| self.guard.on_response(&x, &mut ctx.guard, &head, resp));
        if let Err(e) = stages {
            return Error::e_because(ErrorType::InternalError, "response stages", e);
        }
        let protocol = x.route.protocol;
        ctx.response = if head.is_sse {
            let metrics = self.metrics.route(x.route.name.as_str());
            metrics.active_streams.inc();
            let guarded = ctx.guard.inspects_response();
            ResponseBody::Stream(Box::new(StreamCtx {
                metrics,
                relay: SseRelay::new(
                    respond::reading(protocol, guarded),
                    protocol == crate::protocol::RouteProtocol::Agui,
                ),
                events_counted: 0,
                guard: ctx
                    .upstream_socket
                    .map(|(fd, peer)| self.lifecycle.register_stream(fd, peer)),
                started: std::time::Instant::now(),
            }))
        } else if protocol.is_inspected() && resp.status.is_success() {
            // A dialect route's answer that is not a stream is one JSON document: held (bounded),
            // parsed once, re-encoded; whatever its declared content type.
            resp.remove_header(&http::header::CONTENT_LENGTH);
            ResponseBody::Answer(BytesMut::new())
        } else {
            ResponseBody::Pass
        };
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Option<Duration>> {
        let chunk = body.take().unwrap_or_default();
        let out = match &ctx.response {
            ResponseBody::Pass => Ok(chunk),
            ResponseBody::Stream(_) => self.relay_chunk(ctx, &chunk, end_of_stream),
            ResponseBody::Answer(_) => self.answer_chunk(ctx, &chunk, end_of_stream),
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
            if let Some(frame) = respond::unfinished_run(ctx) {
                ctx.response_bytes += frame.len() as u64;
                let mut joined = body.take().map(|b| b.to_vec()).unwrap_or_default();
                joined.extend_from_slice(&frame);
                *body = Some(Bytes::from(joined));
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let classified = respond::classify(e, ctx);
        if matches!(
            classified,
            Some(ProxyError::UpstreamUnavailable | ProxyError::UpstreamTimeout)
        ) && ctx.error.is_none()
        {
            self.metrics
                .upstream_errors
                .with_label_values(&[ctx.route_name(), respond::upstream_error_kind(e)])
                .inc();
        }
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
        let reason = match (&ctx.error, e) {
            (Some(err), _) => err.kind().reason,
            (None, Some(_)) => "client_closed",
            (None, None) => "ok",
        };
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        // Built before the stream state is released; queued last, after the log line.
        let record = self.audit.is_enabled().then(|| {
            let mut record = respond::record(session, ctx, status, reason);
            self.authz.audit(&ctx.authz, &mut record);
            self.guard.audit(&ctx.guard, &mut record);
            record.note_tool_calls(&ctx.audit.0);
            record
        });
        respond::observe(&self.metrics, session, ctx, status, reason);
        // Audit last, once per request (refusals included): into a bounded queue.
        if let Some(record) = record {
            self.audit.submit(record).await;
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one structured log line from `logging`.
        true
    }
}
