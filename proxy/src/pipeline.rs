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

use crate::config::spec::RouteProtocol;
use crate::error::ProxyError;
use crate::lifecycle::Lifecycle;
use crate::protocol::{agui, relay::SseRelay};
use crate::route::{host_without_port, RouteMatch, RouteTable};
use crate::telemetry::Metrics;
use context::{RequestCtx, StreamCtx};
use headers::TraceContext;

/// The data plane's [`ProxyHttp`] implementation.
pub struct Pipeline {
    routes: arc_swap::ArcSwap<RouteTable>,
    metrics: Metrics,
    lifecycle: Arc<Lifecycle>,
    /// Rate limits, quotas and stream caps (shared by every listener).
    ratelimit: Arc<crate::ratelimit::RateLimiter>,
    /// Whether the listener serves TLS (for `X-Forwarded-Proto`).
    tls: bool,
}

impl Pipeline {
    /// A pipeline over `routes`, reporting to `metrics`, limiting with `ratelimit`.
    pub fn new(
        routes: Arc<RouteTable>,
        metrics: Metrics,
        lifecycle: Arc<Lifecycle>,
        ratelimit: Arc<crate::ratelimit::RateLimiter>,
        tls: bool,
    ) -> Self {
        Self {
            routes: arc_swap::ArcSwap::new(routes),
            metrics,
            lifecycle,
            ratelimit,
            tls,
        }
    }

    /// Stages that run before anything is forwarded. `Err` short-circuits to the error mapper.
    fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        // Strip first: nothing below may read a client-written identity header.
        headers::strip_palisade_headers(session.req_header_mut());
        ctx.client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let req = session.req_header();
        ctx.request_id = headers::request_id(req);
        ctx.trace = Some(TraceContext::from_request(req));

        // Route before the body limit: the limit is per route.
        let host = request_host(req);
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

        // Later issues add, in this order: identify (authn) → authorize (authz) → rate limit
        // (keys on the principal) → request guardrails (need the body-aware decisions).
        Ok(())
    }
}

fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri.host().or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
    })
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
        let admitted = match self.admit(session, ctx) {
            // Limit after identify and authorize (they slot into `admit`): limits key on the
            // principal, and a request refused earlier must not spend its caller's budget.
            // Async: a shared limit asks Redis.
            Ok(()) => self
                .ratelimit
                .admit(ctx, session.req_header())
                .await
                .map(|admission| ctx.ratelimit = admission),
            Err(err) => Err(err),
        };
        match admitted {
            Ok(()) => Ok(false),
            Err(err) => {
                respond::error_response(session, ctx, err).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
        ctx.request_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        let limit = ctx.route.as_ref().map_or(u64::MAX, |r| r.max_body_bytes);
        if ctx.request_bytes > limit {
            ctx.error = Some(ProxyError::PayloadTooLarge { limit });
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
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
        headers::strip_hop_by_hop_request(upstream);
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let original_host = request_host(session.req_header()).map(str::to_string);
        if let Some(ip) = client_ip {
            let forwarded_for = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip.to_string(),
            };
            upstream.insert_header("x-forwarded-for", forwarded_for)?;
        }
        upstream.insert_header("x-forwarded-proto", if self.tls { "https" } else { "http" })?;
        if let Some(host) = &original_host {
            upstream.insert_header("x-forwarded-host", host.as_str())?;
        }
        if !route.preserve_host {
            upstream.insert_header(http::header::HOST, route.upstream.authority.as_str())?;
        }
        if let Some(path) =
            route.upstream_path(upstream.uri.path_and_query().map_or("/", |p| p.as_str()))
        {
            let uri = path
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewritten path", e))?;
            upstream.set_uri(uri);
        }
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(trace) = &ctx.trace {
            upstream.insert_header("traceparent", trace.traceparent())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_core::Result<()> {
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
            self.metrics
                .active_streams
                .with_label_values(&[ctx.route_name()])
                .inc();
            ctx.stream = Some(StreamCtx {
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
                *body = Some(framed);
            }
            let events = stream.relay.events();
            let route = ctx.route.as_ref().map_or("-", |r| r.name.as_str());
            self.metrics
                .sse_events
                .with_label_values(&[route])
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
        ctx.response_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
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
        let route = ctx.route_name().to_string();
        let method = session.req_header().method.as_str().to_string();
        let elapsed = ctx.started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[route.as_str(), method.as_str(), &status.to_string(), reason])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route.as_str()])
            .observe(elapsed.as_secs_f64());
        self.metrics
            .request_bytes
            .with_label_values(&[route.as_str()])
            .inc_by(ctx.request_bytes);
        self.metrics
            .response_bytes
            .with_label_values(&[route.as_str()])
            .inc_by(ctx.response_bytes);
        if let Some(stream) = ctx.stream.take() {
            self.metrics
                .active_streams
                .with_label_values(&[route.as_str()])
                .dec();
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
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one structured log line from `logging`.
        true
    }
}
