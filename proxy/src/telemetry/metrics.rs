//! The proxy's Prometheus metrics, all prefixed `palisade_` with units in their names.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Latency buckets for proxy work: sub-millisecond resolution up to long streams.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The `method` label of a request: the standard method (RFC 9110 §9 plus `PATCH`) or `OTHER`.
/// Clients choose the method, and every distinct label value is a new time series kept for the
/// life of the process, so `FOO1`, `FOO2`… must not each get one. Logs and the audit record keep
/// the method as sent.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("OTHER")
}

/// The per-route children of the route-labelled metrics, resolved once per route so the request
/// path does one map lookup instead of one label hash per metric.
#[derive(Clone)]
pub struct RouteMetrics {
    /// `palisade_active_streams{route}`.
    pub active_streams: prometheus::IntGauge,
    /// `palisade_sse_events_total{route}`.
    pub sse_events: prometheus::IntCounter,
    /// `palisade_request_bytes_total{route}`.
    pub request_bytes: prometheus::IntCounter,
    /// `palisade_response_bytes_total{route}`.
    pub response_bytes: prometheus::IntCounter,
}

/// Handles to every metric the data plane updates.
#[derive(Clone)]
pub struct Metrics {
    by_route: std::sync::Arc<dashmap::DashMap<String, RouteMetrics>>,
    /// Registry the metrics are registered in (served on `/metrics`).
    pub registry: Registry,
    /// `palisade_requests_total{route,method,status,reason}`.
    pub requests: IntCounterVec,
    /// `palisade_request_duration_seconds{route,method,status,reason}`: from accept to the last
    /// byte sent, labelled like `palisade_requests_total` so latency splits by outcome.
    pub request_duration: HistogramVec,
    /// `palisade_active_streams{route}`: SSE responses being relayed now.
    pub active_streams: IntGaugeVec,
    /// `palisade_sse_events_total{route}`: SSE events relayed.
    pub sse_events: IntCounterVec,
    /// `palisade_stream_duration_seconds`: lifetime of SSE responses.
    pub stream_duration: Histogram,
    /// `palisade_upstream_errors_total{route,kind}`: connect refused, timeouts, resets.
    pub upstream_errors: IntCounterVec,
    /// `palisade_request_bytes_total{route}`: request body bytes received from clients.
    pub request_bytes: IntCounterVec,
    /// `palisade_response_bytes_total{route}`: response body bytes sent to clients.
    pub response_bytes: IntCounterVec,
    /// `palisade_ratelimit_decisions_total{scope,outcome}`: per limit checked, `allowed` or
    /// `rejected` (stream caps: scope `streams_*`).
    pub ratelimit_decisions: IntCounterVec,
    /// `palisade_ratelimit_backend_errors_total{backend}`: failed or late calls to Redis.
    pub ratelimit_backend_errors: IntCounterVec,
    /// `palisade_ratelimit_fallback_total`: requests checked in-process because Redis was down
    /// (`fail_open`).
    pub ratelimit_fallbacks: prometheus::IntCounter,
    /// `palisade_client_connections_cut_total{reason}`: connections cut below HTTP
    /// (`listener::conn`).
    pub client_connections_cut: IntCounterVec,
    /// `palisade_authz_decisions_total{policy_set,mode,action,decision}`: Cedar decisions.
    pub authz_decisions: IntCounterVec,
    /// `palisade_guardrail_findings_total{rule,action}`: guardrail rules that fired (matches).
    pub guardrail_findings: IntCounterVec,
    /// `palisade_authz_decision_seconds`: time to decide one request (all sets, incl. entity
    /// construction).
    pub authz_duration: Histogram,
    /// `palisade_policy_reloads_total{result}`: policy reloads, `success` or `failure`.
    pub policy_reloads: IntCounterVec,
    /// Audit delivery: records per sink, queue depth, drops, sink errors.
    pub audit: super::audit::AuditMetrics,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("palisade_requests_total", "Requests handled, by outcome."),
            &["route", "method", "status", "reason"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "palisade_request_duration_seconds",
                "Time from request start to the last response byte.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "method", "status", "reason"],
        )?;
        let active_streams = IntGaugeVec::new(
            Opts::new("palisade_active_streams", "SSE responses being relayed."),
            &["route"],
        )?;
        let sse_events = IntCounterVec::new(
            Opts::new(
                "palisade_sse_events_total",
                "SSE events relayed to clients.",
            ),
            &["route"],
        )?;
        let stream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "palisade_stream_duration_seconds",
                "Lifetime of relayed SSE responses.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "palisade_upstream_errors_total",
                "Failures talking to upstreams, by kind.",
            ),
            &["route", "kind"],
        )?;
        let request_bytes = IntCounterVec::new(
            Opts::new(
                "palisade_request_bytes_total",
                "Request body bytes received.",
            ),
            &["route"],
        )?;
        let response_bytes = IntCounterVec::new(
            Opts::new("palisade_response_bytes_total", "Response body bytes sent."),
            &["route"],
        )?;
        let authz_decisions = IntCounterVec::new(
            Opts::new(
                "palisade_authz_decisions_total",
                "Authorization decisions, by policy set, mode, action and verdict.",
            ),
            &["policy_set", "mode", "action", "decision"],
        )?;
        let authz_duration = Histogram::with_opts(
            HistogramOpts::new(
                "palisade_authz_decision_seconds",
                "Time to decide one request with every policy set.",
            )
            .buckets(vec![
                0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.01,
            ]),
        )?;
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "palisade_policy_reloads_total",
                "Policy set reloads, by result.",
            ),
            &["result"],
        )?;
        // Constant 1, labelled with what is running: join it to any series to see the version.
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "palisade_build_info",
                "Always 1; the version and git commit of the running binary.",
            ),
            &["version", "git_sha"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_SHA])
            .set(1);
        registry.register(Box::new(build_info))?;
        // `process_*`: CPU, memory, descriptors, threads, read from /proc at each scrape.
        registry.register(Box::new(super::process::ProcessCollector::new()?))?;
        registry.register(Box::new(authz_decisions.clone()))?;
        registry.register(Box::new(authz_duration.clone()))?;
        registry.register(Box::new(policy_reloads.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(active_streams.clone()))?;
        registry.register(Box::new(sse_events.clone()))?;
        registry.register(Box::new(stream_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(request_bytes.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        let ratelimit_decisions = IntCounterVec::new(
            Opts::new(
                "palisade_ratelimit_decisions_total",
                "Rate-limit decisions per limit checked, by scope and outcome.",
            ),
            &["scope", "outcome"],
        )?;
        let ratelimit_backend_errors = IntCounterVec::new(
            Opts::new(
                "palisade_ratelimit_backend_errors_total",
                "Failed or timed-out calls to the shared rate-limit backend.",
            ),
            &["backend"],
        )?;
        let ratelimit_fallbacks = prometheus::IntCounter::with_opts(Opts::new(
            "palisade_ratelimit_fallback_total",
            "Requests limited in-process because the shared backend was down (fail_open).",
        ))?;
        registry.register(Box::new(ratelimit_decisions.clone()))?;
        registry.register(Box::new(ratelimit_backend_errors.clone()))?;
        registry.register(Box::new(ratelimit_fallbacks.clone()))?;
        let guardrail_findings = IntCounterVec::new(
            Opts::new(
                "palisade_guardrail_findings_total",
                "Guardrail matches, by rule id and action (block, flag, redact, stop).",
            ),
            &["rule", "action"],
        )?;
        registry.register(Box::new(guardrail_findings.clone()))?;
        let client_connections_cut = IntCounterVec::new(
            Opts::new(
                "palisade_client_connections_cut_total",
                "Client connections the proxy cut off below HTTP, by reason: `per_ip_cap` \
                 (over server.max_connections_per_ip) or `header_timeout` (a request head not \
                 complete within server.header_timeout).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(client_connections_cut.clone()))?;
        let audit = super::audit::AuditMetrics::new(&registry)?;
        Ok(Self {
            audit,
            by_route: Default::default(),
            registry,
            requests,
            request_duration,
            active_streams,
            sse_events,
            stream_duration,
            upstream_errors,
            request_bytes,
            response_bytes,
            ratelimit_decisions,
            ratelimit_backend_errors,
            ratelimit_fallbacks,
            guardrail_findings,
            client_connections_cut,
            authz_decisions,
            authz_duration,
            policy_reloads,
        })
    }

    /// The route-labelled metrics of `route` (`-` for requests that matched no route).
    pub fn route(&self, route: &str) -> RouteMetrics {
        if let Some(hit) = self.by_route.get(route) {
            return hit.clone();
        }
        let children = RouteMetrics {
            active_streams: self.active_streams.with_label_values(&[route]),
            sse_events: self.sse_events.with_label_values(&[route]),
            request_bytes: self.request_bytes.with_label_values(&[route]),
            response_bytes: self.response_bytes.with_label_values(&[route]),
        };
        self.by_route.insert(route.to_string(), children.clone());
        children
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_the_standard_methods_or_other() {
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            assert_eq!(method_label(m), m);
        }
        for m in ["FOO1", "FOO2", "get", "PROPFIND", "", "GET "] {
            assert_eq!(method_label(m), "OTHER", "{m:?}");
        }
    }
}
