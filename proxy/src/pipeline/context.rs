//! [`RequestCtx`]: everything the pipeline learns about one request, from accept to audit.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::headers::TraceContext;
use crate::authn::Principal;
use crate::error::ProxyError;
use crate::lifecycle::{InFlight, StreamGuard};
use crate::protocol::relay::SseRelay;
use crate::route::Route;

/// Per-request state carried through every pipeline phase.
pub struct RequestCtx {
    /// `X-Request-Id`: the client's when well-formed, else generated.
    pub request_id: String,
    /// W3C trace context of this hop.
    pub trace: Option<TraceContext>,
    /// This request's OpenTelemetry spans (empty when tracing is off).
    pub span: crate::telemetry::otel::RequestSpan,
    /// When the request arrived.
    pub started: Instant,
    /// The matched route, once routing ran.
    pub route: Option<Arc<Route>>,
    /// Who is calling, once identification ran.
    pub principal: Option<Principal>,
    /// The client's IP address (the TCP peer).
    pub client_ip: Option<IpAddr>,
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
    /// Set when the response is an SSE stream.
    pub stream: Option<StreamCtx>,
    /// The request-level authorization decision (the enforcing policy set's), for audit and
    /// metrics; `None` when authorization is off or did not run.
    pub decision: Option<crate::authz::Decision>,
    /// Further authorization state: shadow decisions, body-aware decisions, stream filtering.
    pub authz: crate::authz::Exchange,
    /// What the rate-limit stage admitted: the stream slot (an RAII permit released when this
    /// context drops, however the request ended) and the `RateLimit` headers to send.
    pub ratelimit: crate::ratelimit::Admission,
    /// What the guardrails found (rule ids, locations, actions; never content), for metrics
    /// and the audit record.
    pub guardrails: crate::guardrails::Findings,
    /// Tool calls seen in the relayed AG-UI stream (ids and names), for the audit record.
    pub tool_calls_seen: crate::audit::SeenToolCalls,
    /// Guardrail working state: the held request body, the response filter, a pending stop.
    pub guardrail_state: crate::guardrails::Exchange,
    _in_flight: InFlight,
}

/// State of a relayed SSE response.
pub struct StreamCtx {
    /// The re-framing relay.
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
    pub fn new(in_flight: InFlight) -> Self {
        Self {
            request_id: String::new(),
            trace: None,
            span: Default::default(),
            started: Instant::now(),
            route: None,
            principal: None,
            client_ip: None,
            error: None,
            request_bytes: 0,
            response_bytes: 0,
            upstream_socket: None,
            upstream_status: None,
            stream: None,
            decision: None,
            authz: Default::default(),
            ratelimit: Default::default(),
            guardrails: Default::default(),
            tool_calls_seen: Default::default(),
            guardrail_state: Default::default(),
            _in_flight: in_flight,
        }
    }

    /// The route name for metrics and logs (`-` before routing).
    pub fn route_name(&self) -> &str {
        self.route.as_ref().map_or("-", |r| r.name.as_str())
    }

    /// The trace id (empty before the request was read).
    pub fn trace_id(&self) -> &str {
        self.trace.as_ref().map_or("", |t| t.trace_id.as_str())
    }

    /// Whether the drain deadline ended this request's stream.
    pub fn ended_by_drain(&self) -> bool {
        self.stream
            .as_ref()
            .and_then(|s| s.guard.as_ref())
            .is_some_and(StreamGuard::ended_by_drain)
    }
}
