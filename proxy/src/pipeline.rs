//! The request pipeline: the one place that orders the stages of a request's life.
//!
//! ```text
//! accept ─ strip X-Palisade-* ─ request id + traceparent ─ route ─ body limit
//!        ─ [identify ─ authorize ─ rate limit ─ guardrails]   (later stages slot in here)
//!        ─ forward (hop-by-hop out, X-Forwarded-* in) ─ relay response (SSE event by event)
//!        ─ metrics + log line
//! ```
//!
//! Each pingora phase below calls into a concern's module in a line or two. A stage that refuses
//! the request returns a [`ProxyError`]; [`respond::error_response`] turns it into the documented
//! body, and `logging` still records it.

pub mod context;
pub mod headers;
pub mod respond;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::Digest;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::authn::Authenticator;
use crate::authz;
use crate::config::spec::RouteProtocol;
use crate::error::ProxyError;
use crate::lifecycle::Lifecycle;
use crate::listener::mtls::ServiceIdentity;
use crate::protocol::{agui, relay::SseRelay};
use crate::route::{host_without_port, RouteMatch, RouteTable};
use crate::telemetry::Metrics;
use context::{RequestCtx, StreamCtx};
use headers::TraceContext;

/// The shared state of every stage, built once by [`crate::server::start`]. A new stage adds its
/// field here.
pub struct Stages {
    /// The route table.
    pub routes: arc_swap::ArcSwap<RouteTable>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness, in-flight tracking, drain.
    pub lifecycle: Arc<Lifecycle>,
    /// Authentication.
    pub authn: Arc<Authenticator>,
    /// Rate limits, quotas and stream caps.
    pub ratelimit: Arc<crate::ratelimit::RateLimiter>,
    /// Cedar authorization; `None` when no policy set is configured.
    pub authz: Option<Arc<crate::authz::Authz>>,
    /// Trusted reverse proxies: who the client is.
    pub edge: crate::listener::Edge,
    /// The audit trail's queue (a no-op when no sink is configured).
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

impl Pipeline {
    /// A pipeline for one listener over the shared `stages`.
    pub fn new(stages: Arc<Stages>, tls: bool) -> Self {
        Self { stages, tls }
    }

    /// Stages that run before anything is forwarded. `Err` short-circuits to the error mapper.
    fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        // Strip first: nothing below may read a client-written identity header.
        headers::strip_palisade_headers(session.req_header_mut());
        let req = session.req_header();
        ctx.request_id = headers::request_id(req);
        // The request's span continues the client's trace and names this hop upstream.
        let mut trace = TraceContext::from_request(req);
        ctx.span = self
            .tracing
            .begin(&mut trace, req.method.as_str(), req.uri.path());
        ctx.trace = Some(trace);
        // The client behind trusted proxies, before anything keys on it (after the ids, so a refusal carries them).
        ctx.client_ip = self.edge.client_ip(session.client_addr(), req)?;
        // Under `fail_closed`, nothing is served while the audit trail cannot be written (after
        // the ids, so the refusal's body and record carry them).
        if self.audit.refuses() {
            self.audit.count_refused();
            return Err(ProxyError::AuditUnavailable);
        }

        // Route before the body limit: the limit is per route.
        let host = headers::request_host(req);
        let routes = self.routes.load();
        match routes.find(host.map(host_without_port), req.uri.path(), &req.method) {
            RouteMatch::Found(route) => ctx.route = Some(route.clone()),
            RouteMatch::MethodNotAllowed(allow) => {
                return Err(ProxyError::MethodNotAllowed { allow })
            }
            RouteMatch::NotFound => return Err(ProxyError::NotFound),
        }

        // A declared length over the limit is refused before a byte of body is read; chunked
        // bodies are counted as they stream in (`request_body_filter`).
        let limit = ctx.route.as_ref().map_or(u64::MAX, |r| r.max_body_bytes);
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(ProxyError::PayloadTooLarge { limit });
        }

        Ok(())
    }

    /// The policy stages, in order. Each refuses with a [`ProxyError`].
    async fn enforce(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        let route = ctx.route.clone().ok_or(ProxyError::Internal)?;
        // Identify first: authorization and limits key on the principal. After routing, because
        // the route says whether anonymous callers are allowed.
        let client_cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|tls| tls.extension.get::<ServiceIdentity>())
            .map(|id| id.0.clone());
        let stage = ctx.span.stage("identify");
        let principal = self
            .authn
            .identify(
                session.req_header_mut(),
                ctx.client_ip,
                client_cert.as_deref(),
                route.auth,
            )
            .await?;
        drop(stage);
        ctx.principal = Some(principal);

        // Authorize after identify (policies are about the principal) and before limits (a
        // refused request must not spend budget); request-level only — body-aware checks run
        // as the body arrives (`request_body_filter`).
        let mut stage = ctx.span.stage("authorize");
        let authorized = authz::stage::authorize(
            self.authz.as_deref(),
            &self.metrics,
            session.req_header(),
            ctx,
            self.tls,
        );
        if let Some(decision) = &ctx.decision {
            stage.attr("authz.decision", decision.verdict());
        }
        drop(stage);
        authorized?;

        // Limit after identify and authorize: limits key on the principal, and a request refused
        // earlier must not spend its caller's budget. Async: a shared limit asks Redis.
        let mut stage = ctx.span.stage("limit");
        let admitted = self.ratelimit.admit(ctx, session.req_header()).await;
        stage.attr(
            "ratelimit.outcome",
            if admitted.is_ok() {
                "allowed"
            } else {
                "limited"
            },
        );
        drop(stage);
        ctx.ratelimit = admitted?;

        // Guardrails last among the admission stages (a refused or limited request is never
        // inspected); the body itself is inspected as it arrives (`request_body_filter`).
        crate::guardrails::start(ctx, session.req_header());
        Ok(())
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
        let path = session.req_header().uri.path();
        if path.starts_with(crate::authn::metadata::WELL_KNOWN) {
            let doc = crate::authn::metadata::document(
                &self.routes.load(),
                path,
                &respond::origin(session),
                &self.authn.authorization_servers(),
            );
            if let Some(doc) = doc {
                respond::json(session, 200, &doc).await?;
                return Ok(true);
            }
        }
        let outcome = match self.admit(session, ctx) {
            Ok(()) => self.enforce(session, ctx).await,
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => Ok(false),
            Err(err) => {
                respond::error_response(session, ctx, err).await?;
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
        let limit = ctx.route.as_ref().map_or(u64::MAX, |r| r.max_body_bytes);
        if ctx.request_bytes > limit {
            ctx.error = Some(ProxyError::PayloadTooLarge { limit });
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
        }
        // The body stages (guardrails, body-aware authorization) decide on the last chunk: that
        // call is the request's `guard` span.
        let _guard_span = end_of_stream.then(|| ctx.span.stage("guard"));
        // Request guardrails after the size check and before body-aware authorization: they
        // may redact the body, and authorization must decide on what is forwarded.
        if let Err(refusal) =
            crate::guardrails::on_request_body(&self.metrics, body, end_of_stream, ctx)
        {
            crate::guardrails::write_refusal(session, ctx, refusal).await?;
            return Error::e_explain(ErrorType::HTTPStatus(400), "refused by guardrails");
        }
        // Body-aware authorization after the size check (it holds the body, so the limit bounds
        // it): AG-UI tools, MCP tools/call, A2A methods, decided once the body is whole.
        let headers = &session.req_header().headers;
        if let Err(refusal) = authz::body::on_request_body(
            self.authz.as_deref(),
            &self.metrics,
            headers,
            body,
            end_of_stream,
            ctx,
        ) {
            authz::body::write_refusal(session, ctx, refusal).await?;
            return Error::e_explain(
                ErrorType::HTTPStatus(403),
                "refused by body-aware authorization",
            );
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let up = &route.upstream;
        let mut peer = HttpPeer::new(up.address, up.tls, up.sni.clone());
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.total_connection_timeout = Some(up.connect_timeout);
        // An idle timeout, not a total one: streams may run for hours as long as bytes flow.
        peer.options.read_timeout = Some(route.idle_timeout);
        peer.options.write_timeout = Some(route.idle_timeout);
        peer.options.idle_timeout = Some(up.pool_idle_timeout);
        ctx.span.start_upstream();
        Ok(Box::new(peer))
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
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let original_host = headers::request_host(session.req_header()).map(str::to_string);
        headers::forward(
            upstream,
            &route,
            client_ip,
            original_host.as_deref(),
            self.tls,
            &ctx.request_id,
        )?;
        self.edge
            .forward_headers(upstream, session.req_header(), session.client_addr())?;
        // A body held for authorization may shrink (AG-UI tools removed): send it chunked.
        authz::body::prepare_upstream(upstream, ctx)?;
        crate::guardrails::prepare_upstream(upstream, ctx)?;
        if let Some(principal) = &ctx.principal {
            self.authn.forward(
                upstream,
                principal,
                &route.name,
                &ctx.request_id,
                route.forward_credentials,
            )?;
        }
        if let Some(trace) = &ctx.trace {
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
        headers::strip_hop_by_hop_response(resp);
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        let is_sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        ctx.span.upstream_answered(resp.status.as_u16(), is_sse);
        // Tool filtering of AG-UI streams and MCP tools/list answers; a JSON answer may shrink.
        let content_type = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if authz::stream::on_response_header(self.authz.as_deref(), ctx, is_sse, &content_type) {
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        // Output guardrails: AG-UI / SSE event by event, MCP and A2A JSON answers held whole.
        if crate::guardrails::stream::on_response_header(ctx, is_sse, &content_type) {
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        // IETF rate-limit headers when configured; a response that is not a stream gives its
        // stream slot back now instead of when the body ends.
        for (name, value) in ctx.ratelimit.response_headers() {
            resp.insert_header(name, value)?;
        }
        if !is_sse {
            ctx.ratelimit.release_stream();
        }
        if is_sse {
            // Re-framing changes the length; intermediaries must not buffer or transform.
            resp.remove_header(&http::header::CONTENT_LENGTH);
            resp.remove_header(&http::header::CONTENT_ENCODING);
            if resp.headers.get(http::header::CACHE_CONTROL).is_none() {
                resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
            }
            resp.insert_header("x-accel-buffering", "no")?;
            let agui = ctx
                .route
                .as_ref()
                .is_some_and(|r| r.protocol == RouteProtocol::Agui);
            let metrics = self.metrics.route(ctx.route_name());
            metrics.active_streams.inc();
            ctx.stream = Some(StreamCtx {
                metrics,
                relay: SseRelay::new(agui),
                events_counted: 0,
                guard: ctx
                    .upstream_socket
                    .map(|(fd, peer)| self.lifecycle.register_stream(fd, peer)),
                started: std::time::Instant::now(),
            });
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<Option<Duration>> {
        if let Some(stream) = ctx.stream.as_mut() {
            if let Some(chunk) = body.take() {
                let framed = stream
                    .relay
                    .relay(&chunk)
                    .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream SSE", e))?;
                // Before tool filtering: the audit record lists denied calls too.
                ctx.tool_calls_seen.scan(&framed);
                *body = Some(framed);
            }
            let events = stream.relay.events();
            stream
                .metrics
                .sse_events
                .inc_by(events - stream.events_counted);
            stream.events_counted = events;
            let agui = ctx
                .route
                .as_ref()
                .is_some_and(|r| r.protocol == RouteProtocol::Agui);
            if end_of_stream && agui && !stream.relay.terminal_seen() {
                // The upstream closed cleanly but the run never finished: say so, in-protocol.
                let err = ProxyError::UpstreamUnavailable;
                let frame = agui::run_error_frame(
                    err.kind().code,
                    "upstream ended the stream before the run finished",
                );
                let mut joined = body.take().map(|b| b.to_vec()).unwrap_or_default();
                joined.extend_from_slice(&frame);
                *body = Some(Bytes::from(joined));
                ctx.error = Some(err);
            }
        }
        // Output guardrails after re-framing (they read complete events) and before tool
        // filtering; a `stop` fails the filter so pingora drops the upstream connection, and
        // `fail_to_proxy` writes the stop's closing frames.
        if let Err(why) =
            crate::guardrails::stream::on_response_body(&self.metrics, body, end_of_stream, ctx)
        {
            return Error::e_explain(ErrorType::InternalError, why);
        }
        // After re-framing: the filter reads only complete events.
        if let Err(why) = authz::stream::on_response_body(
            self.authz.as_deref(),
            &self.metrics,
            body,
            end_of_stream,
            ctx,
        ) {
            return Error::e_explain(ErrorType::InternalError, why);
        }
        ctx.response_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // A guardrail `stop` ended the response on purpose: write its closing frames.
        if let Some(error_code) = crate::guardrails::stream::finish_stop(session, ctx).await {
            return FailToProxy {
                error_code,
                can_reuse_downstream: false,
            };
        }
        let classified = respond::classify(e, ctx);
        if matches!(
            classified,
            Some(ProxyError::UpstreamUnavailable | ProxyError::UpstreamTimeout)
        ) {
            self.metrics
                .upstream_errors
                .with_label_values(&[ctx.route_name(), respond::upstream_error_kind(e)])
                .inc();
        }
        let error_code = match classified {
            None => 0, // the client is gone: nothing to write
            Some(err) if session.response_written().is_some() => {
                let status = session.response_written().map_or(0, |r| r.status.as_u16());
                respond::end_started_stream(session, ctx, err).await;
                status
            }
            Some(err) => {
                let status = err.kind().status;
                // The connection is not reused (below): say so, or a keep-alive client sends
                // its next request into a closing socket.
                session.set_keepalive(None);
                if let Err(write_err) = respond::error_response(session, ctx, err).await {
                    tracing::debug!(request_id = %ctx.request_id, error = %write_err, "error response not written");
                }
                status
            }
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let reason = match (&ctx.error, e) {
            (Some(err), _) => err.kind().reason,
            (None, Some(_)) => "client_closed",
            (None, None) => "ok",
        };
        let route_arc = ctx.route.clone();
        let route = route_arc.as_ref().map_or("-", |r| r.name.as_str());
        let method = session.req_header().method.as_str();
        let status_label = session
            .response_written()
            .map_or("0", |r| r.status.as_str());
        let elapsed = ctx.started.elapsed();
        // Built before the stream state is released below; queued after the log line.
        let record = self.audit.is_enabled().then(|| {
            crate::audit::AuditRecord::from_ctx(
                ctx,
                crate::audit::RequestLine {
                    method,
                    path: session.req_header().uri.path(),
                    status,
                    reason,
                },
            )
        });
        let method_label = crate::telemetry::metrics::method_label(method);
        self.metrics
            .requests
            .with_label_values(&[route, method_label, status_label, reason])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route, method_label, status_label, reason])
            .observe(elapsed.as_secs_f64());
        let per_route = self.metrics.route(route);
        per_route.request_bytes.inc_by(ctx.request_bytes);
        per_route.response_bytes.inc_by(ctx.response_bytes);
        if let Some(stream) = ctx.stream.take() {
            per_route.active_streams.dec();
            self.metrics
                .stream_duration
                .observe(stream.started.elapsed().as_secs_f64());
        }
        tracing::info!(
            request_id = %ctx.request_id,
            trace_id = %ctx.trace_id(),
            route = %route,
            method = %method,
            path = %session.req_header().uri.path(),
            status,
            reason,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_bytes = ctx.request_bytes,
            response_bytes = ctx.response_bytes,
            "request"
        );
        crate::telemetry::otel::finish_request(ctx, status, route, reason);
        // Audit last, once per request (errors written by request_filter and fail_to_proxy
        // included): into a bounded queue, never onto a sink from here.
        if let Some(record) = record {
            self.audit.submit(record).await;
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one structured log line from `logging`.
        true
    }
}
