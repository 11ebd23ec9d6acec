//! [`RequestCtx`]: what the pipeline carries through one request — the exchange's core facts
//! (which stages read through [`crate::stage::Exchange`]) and each stage's own state
//! ([`crate::config::stages::States`]).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::authn::Principal;
use crate::error::ProxyError;
use crate::lifecycle::{InFlight, StreamGuard};
use crate::protocol::relay::SseRelay;
use crate::route::Route;
use crate::stage::Exchange;
use crate::telemetry::TraceContext;

/// The facts of one exchange as the pipeline learns them.
pub struct Core {
    /// `X-Request-Id`: the client's when well-formed, else generated.
    pub request_id: String,
    /// W3C trace context of this hop.
    pub trace: Option<TraceContext>,
    /// The matched route, once routing ran.
    pub route: Option<Arc<Route>>,
    /// The request's method.
    pub method: http::Method,
    /// The request's path (no query), as routing matched it.
    pub path: String,
    /// Who is calling, once identification ran.
    pub principal: Option<std::sync::Arc<Principal>>,
    /// The client's IP address (the TCP peer, or the client behind trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// Whether a proxy not in `edge.trusted_proxies` relayed the request.
    pub forwarded: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

impl Core {
    /// [`Core::view`] in a pingora phase that only runs after routing.
    pub fn routed(&self) -> pingora_core::Result<Exchange<'_>> {
        self.view().ok_or_else(|| {
            pingora_core::Error::explain(
                pingora_core::ErrorType::InternalError,
                "no route in context",
            )
        })
    }

    /// The read-only view stages receive; `None` before routing.
    pub fn view(&self) -> Option<Exchange<'_>> {
        Some(Exchange {
            request_id: &self.request_id,
            trace_id: self.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
            route: self.route.as_deref()?,
            principal: self.principal.as_deref(),
            client_ip: self.client_ip,
            forwarded: self.forwarded,
            tls: self.tls,
            method: &self.method,
            path: &self.path,
        })
    }
}

/// What the response body is, once its head arrived.
#[derive(Default)]
pub enum ResponseBody {
    /// Passed through chunk by chunk.
    #[default]
    Pass,
    /// An SSE stream, relayed event by event.
    Stream(Box<StreamCtx>),
    /// A JSON answer of a dialect route, held whole (bounded) and parsed once.
    Answer {
        /// What arrived so far.
        held: BytesMut,
        /// Whether the status is 2xx (an error answer that is not JSON loses its body instead
        /// of failing the response).
        success: bool,
    },
}

/// Per-request state carried through every pipeline phase.
pub struct RequestCtx {
    /// The configuration generation this request runs under, from its first hook to its last
    /// (a reload never changes a request's route or its stages' per-route state midway).
    pub stages: std::sync::Arc<crate::config::stages::Stages>,
    /// The exchange's facts.
    pub core: Core,
    /// This request's OpenTelemetry spans (empty when tracing is off).
    pub span: crate::telemetry::otel::RequestSpan,
    /// When the request arrived.
    pub started: Instant,
    /// Why the request failed, when it did (drives the status, metrics and audit reason).
    pub error: Option<ProxyError>,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// The upstream socket and its peer, once connected.
    pub upstream_socket: Option<(RawFd, SocketAddr)>,
    /// The upstream response's status, once its header arrived (for the audit record).
    pub upstream_status: Option<u16>,
    /// The body of a dialect route, held until whole (it is parsed once, then forwarded).
    pub held: Option<BytesMut>,
    /// The JSON-RPC ids of the parsed request and whether it was a batch (refusal shape).
    pub jsonrpc: Option<(Vec<Value>, bool)>,
    /// The response body's handling.
    pub response: ResponseBody,
    /// Items that end a stream a stage stopped, written by `fail_to_proxy`.
    pub closing: Option<Bytes>,
    /// What each stage keeps for this request.
    pub states: crate::config::stages::States,
    /// The CORS headers of every response to this request (empty unless the route has `cors`).
    pub cors: Vec<crate::route::cors::CorsHeader>,
    /// The proxy answered this request as a CORS preflight (reason `cors_preflight`).
    pub preflight: bool,
    _in_flight: InFlight,
}

/// State of a relayed SSE response.
pub struct StreamCtx {
    /// The relay: parses each event once, encodes what the filters kept.
    pub relay: SseRelay,
    /// Events already counted in metrics.
    pub events_counted: u64,
    /// Registration with the drain; `None` when the upstream socket was unknown.
    pub guard: Option<StreamGuard>,
    /// When the stream started.
    pub started: Instant,
    /// The route's metrics (resolved once per stream, not per chunk).
    pub metrics: crate::telemetry::metrics::RouteMetrics,
}

impl RequestCtx {
    /// A fresh context, counted in flight until dropped.
    pub fn new(in_flight: InFlight, stages: std::sync::Arc<crate::config::stages::Stages>) -> Self {
        Self {
            stages,
            core: Core {
                request_id: String::new(),
                trace: None,
                route: None,
                method: http::Method::GET,
                path: String::new(),
                principal: None,
                client_ip: None,
                forwarded: false,
                tls: false,
            },
            span: Default::default(),
            started: Instant::now(),
            error: None,
            request_bytes: 0,
            response_bytes: 0,
            upstream_socket: None,
            upstream_status: None,
            held: None,
            jsonrpc: None,
            response: ResponseBody::Pass,
            closing: None,
            states: Default::default(),
            cors: Vec::new(),
            preflight: false,
            _in_flight: in_flight,
        }
    }

    /// The route name for metrics and logs (`-` before routing).
    pub fn route_name(&self) -> &str {
        self.core.route.as_ref().map_or("-", |r| r.name.as_str())
    }

    /// The trace id (empty before the request was read).
    pub fn trace_id(&self) -> &str {
        self.core.trace.as_ref().map_or("", |t| t.trace_id.as_str())
    }

    /// The relayed stream, when the response is one.
    pub fn stream(&self) -> Option<&StreamCtx> {
        match &self.response {
            ResponseBody::Stream(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the drain deadline ended this request's stream.
    pub fn ended_by_drain(&self) -> bool {
        self.stream()
            .and_then(|s| s.guard.as_ref())
            .is_some_and(StreamGuard::ended_by_drain)
    }
}
