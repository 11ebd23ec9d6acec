//! OpenTelemetry traces: a span per request, child spans per stage, exported over OTLP
//! (http/protobuf or gRPC) in batches from the aux runtime.
//!
//! The tracer provider is built per proxy from the `tracing` config and handed to the pipeline
//! explicitly (never a global), like the metrics registry. A request's span continues the
//! client's W3C `traceparent`/`tracestate` ([`TraceContext`]) and becomes the parent named in
//! the `traceparent` sent upstream; its ids are written back into the request's
//! [`TraceContext`], so logs, error bodies and audit records carry the trace id the collector
//! sees. With tracing off, a [`RequestSpan`] is an empty `Option`: no span, no allocation.
//!
//! ```text
//! request (server)
//! ├─ identify ─ authorize ─ limit ─ guard      (enforce(), request_body_filter)
//! ├─ upstream                                   (peer chosen → response header)
//! └─ stream                                     (SSE response header → end)
//! ```

use std::str::FromStr;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use super::spec::{OtlpProtocol, TracingSpec};
use crate::error::FieldError;
use crate::telemetry::TraceContext;

/// Validated tracing settings; none in the config means off.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelSettings {
    /// Full export URL (`…/v1/traces` for http/protobuf, `http://host:4317` for gRPC).
    pub endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Sampling ratio of new traces.
    pub sampling_ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// Export deadline.
    pub timeout: Duration,
    /// Extra CAs trusted for an `https` collector.
    pub ca_file: Option<String>,
}

/// Validates the `tracing` section against `env` (the `OTEL_EXPORTER_OTLP_*` variables).
pub fn validate(
    spec: &TracingSpec,
    env: impl Fn(&str) -> Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<OtelSettings> {
    let mut push = |path: &str, message: String| {
        errors.push(FieldError {
            path: format!("tracing.{path}"),
            message,
        })
    };
    if !(0.0..=1.0).contains(&spec.sampling_ratio) {
        push("sampling_ratio", "must be between 0.0 and 1.0".into());
    }
    if !spec.enabled {
        return None;
    }
    let protocol = match (spec.protocol, env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref()) {
        (Some(p), _) => p,
        (None, Some("grpc")) => OtlpProtocol::Grpc,
        (None, Some("http/protobuf") | None) => OtlpProtocol::HttpProtobuf,
        (None, Some(other)) => {
            push(
                "protocol",
                format!("OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported (http/protobuf or grpc)"),
            );
            OtlpProtocol::HttpProtobuf
        }
    };
    let endpoint = match (&spec.endpoint, protocol) {
        (Some(e), OtlpProtocol::HttpProtobuf) => with_traces_path(e),
        (Some(e), OtlpProtocol::Grpc) => e.clone(),
        (None, OtlpProtocol::HttpProtobuf) => env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| with_traces_path(&e)))
            .unwrap_or_else(|| "http://localhost:4318/v1/traces".into()),
        (None, OtlpProtocol::Grpc) => env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .unwrap_or_else(|| "http://localhost:4317".into()),
    };
    if let Some(ca) = &spec.ca_file {
        if let Err(e) = palisade_wire::outbound::pem_file(std::path::Path::new(ca)) {
            push("ca_file", e);
        } else if !is_https(&endpoint) {
            push(
                "ca_file",
                format!("the collector `{endpoint}` is not https: a CA file would not be used"),
            );
        }
    }
    if !matches!(endpoint.parse::<http::Uri>(), Ok(u) if u.scheme().is_some() && u.host().is_some())
    {
        push("endpoint", format!("`{endpoint}` is not an http(s) URL"));
    }
    Some(OtelSettings {
        endpoint,
        protocol,
        sampling_ratio: spec.sampling_ratio,
        service_name: spec.service_name.clone(),
        timeout: spec.timeout,
        ca_file: spec.ca_file.clone(),
    })
}

/// Whether `url`'s scheme is `https` (in any case, as URL schemes are).
fn is_https(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS))
}

/// TLS for an `https` gRPC collector: the same roots as every other outbound client.
pub fn grpc_tls(
    trust: &crate::outbound::Trust,
) -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
        .trust_anchors(trust.roots().roots.iter().cloned())
}

/// `server.address` and `server.port` of an upstream: the configured host name (no reverse
/// lookup), else the resolved IP; the resolved port.
fn server_address(upstream: &crate::route::Upstream) -> (String, u16) {
    let port = upstream.address.port();
    let host = upstream
        .authority
        .parse::<http::uri::Authority>()
        .map(|a| a.host().trim_matches(['[', ']']).to_string())
        .unwrap_or_else(|_| upstream.address.ip().to_string());
    (host, port)
}

/// `base` with `/v1/traces` appended when it has no path of its own.
fn with_traces_path(base: &str) -> String {
    let trimmed = base.trim_end_matches('/');
    match trimmed.parse::<http::Uri>() {
        Ok(u) if u.path() == "/" || u.path().is_empty() => format!("{trimmed}/v1/traces"),
        _ => trimmed.to_string(),
    }
}

/// The proxy's tracer; [`Tracing::off`] when tracing is disabled.
#[derive(Default)]
pub struct Tracing {
    live: Option<(SdkTracerProvider, SdkTracer)>,
}

impl Tracing {
    /// No tracing: every [`RequestSpan`] is empty.
    pub fn off() -> Self {
        Self::default()
    }

    /// Builds the exporter and batch processor on `runtime` (the aux runtime).
    pub fn start(
        settings: Option<&OtelSettings>,
        runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let Some(s) = settings else {
            return Ok(Self::off());
        };
        let _entered = runtime.enter();
        // An `https` collector is verified against web roots + system store + `tracing.ca_file`,
        // over either transport.
        let trust = crate::outbound::trust("tracing.ca_file", s.ca_file.as_deref())?;
        let exporter = match s.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(trust.client_builder().timeout(s.timeout).build()?)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(s.endpoint.clone())
                .with_timeout(s.timeout)
                .build()?,
            OtlpProtocol::Grpc => {
                let builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(s.endpoint.clone())
                    .with_timeout(s.timeout);
                let builder = if is_https(&s.endpoint) {
                    builder.with_tls_config(grpc_tls(&trust))
                } else {
                    builder
                };
                builder.build()?
            }
        };
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                s.sampling_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(s.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("palisade");
        tracing::info!(endpoint = %s.endpoint, protocol = ?s.protocol, "tracing: exporting spans over OTLP");
        Ok(Self {
            live: Some((provider, tracer)),
        })
    }

    /// Starts the span of a request continuing `trace` (the client's context, when it sent
    /// one), and writes the span's ids back into `trace`.
    pub fn begin(&self, trace: &mut TraceContext, method: &str, path: &str) -> RequestSpan {
        let Some((_, tracer)) = &self.live else {
            return RequestSpan::default();
        };
        let mut parent = Context::new();
        if let Some(remote) = remote_parent(trace) {
            parent = parent.with_remote_span_context(remote);
        }
        // OpenTelemetry's HTTP conventions: the name is `{method}` until routing names the
        // route (`{method} {http.route}`, see [`finish_request`]) — never the raw path, which
        // clients choose; a method outside the standard set is `_OTHER` (`HTTP` in the name).
        let known = crate::telemetry::metrics::method_label(method) != "OTHER";
        let mut attributes = vec![KeyValue::new("url.path", path.to_string())];
        if known {
            attributes.push(KeyValue::new("http.request.method", method.to_string()));
        } else {
            attributes.push(KeyValue::new("http.request.method", "_OTHER"));
            attributes.push(KeyValue::new(
                "http.request.method_original",
                method.to_string(),
            ));
        }
        let span = tracer
            .span_builder(span_method(method))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let sc = span.span_context().clone();
        trace.trace_id = sc.trace_id().to_string();
        trace.span_id = sc.span_id().to_string();
        trace.flags = if sc.is_sampled() { "01" } else { "00" }.into();
        RequestSpan(Some(Box::new(Live {
            tracer: tracer.clone(),
            cx: parent.with_span(span),
            upstream: None,
            stream: None,
        })))
    }

    /// Exports what is buffered and stops the exporter. Blocks: call it off the runtimes.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.live {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }
}

fn remote_parent(trace: &TraceContext) -> Option<SpanContext> {
    let parent = trace.parent_span_id.as_deref()?;
    let flags = u8::from_str_radix(&trace.flags, 16).ok()?;
    let state = trace
        .tracestate
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        TraceId::from_hex(&trace.trace_id).ok()?,
        SpanId::from_hex(parent).ok()?,
        TraceFlags::new(flags),
        true,
        state,
    ))
}

struct Live {
    tracer: SdkTracer,
    cx: Context,
    upstream: Option<opentelemetry_sdk::trace::Span>,
    stream: Option<opentelemetry_sdk::trace::Span>,
}

/// One request's spans; empty (and free) when tracing is off.
#[derive(Default)]
pub struct RequestSpan(Option<Box<Live>>);

impl RequestSpan {
    /// Whether spans are being made (build attributes only then).
    pub fn is_live(&self) -> bool {
        self.0.is_some()
    }

    /// A child span for one stage, ended when dropped (or by [`StageSpan::end`]).
    pub fn stage(&self, name: &'static str) -> StageSpan {
        StageSpan(
            self.0
                .as_ref()
                .map(|l| l.tracer.start_with_context(name, &l.cx)),
        )
    }

    /// Starts the `upstream` span (the peer was chosen) with the OpenTelemetry HTTP client
    /// attributes `server.address`, `server.port` and `url.full`. `path_and_query` is what goes
    /// upstream (after the route's rewrite); `url.full` keeps only its path, since a query
    /// string may carry secrets (tokens, signatures) that must not reach the trace backend.
    pub fn start_upstream(&mut self, upstream: &crate::route::Upstream, path_and_query: &str) {
        if let Some(l) = self.0.as_mut() {
            let (host, port) = server_address(upstream);
            let path = path_and_query.split(['?', '#']).next().unwrap_or("/");
            let scheme = if upstream.tls { "https" } else { "http" };
            let url = format!("{scheme}://{}{path}", upstream.authority);
            let span = l
                .tracer
                .span_builder("upstream")
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("server.address", host),
                    KeyValue::new("server.port", i64::from(port)),
                    KeyValue::new("url.full", url),
                ])
                .start_with_context(&l.tracer, &l.cx);
            l.upstream = Some(span);
        }
    }

    /// Ends the `upstream` span with the upstream's status; starts `stream` for SSE.
    pub fn upstream_answered(&mut self, status: u16, sse: bool) {
        if let Some(l) = self.0.as_mut() {
            if let Some(mut span) = l.upstream.take() {
                span.set_attribute(KeyValue::new("http.response.status_code", status as i64));
                span.end();
            }
            if sse {
                l.stream = Some(l.tracer.start_with_context("stream", &l.cx));
            }
        }
    }

    /// Ends every open span; `attributes` (called only when live) describe the outcome.
    pub fn finish(&mut self, error: Option<&str>, attributes: impl FnOnce() -> Vec<KeyValue>) {
        let Some(mut l) = self.0.take() else {
            return;
        };
        for mut span in [l.upstream.take(), l.stream.take()].into_iter().flatten() {
            if let Some(code) = error {
                span.set_status(Status::error(code.to_string()));
            }
            span.end();
        }
        let span = l.cx.span();
        span.set_attributes(attributes());
        if let Some(code) = error {
            span.set_status(Status::error(code.to_string()));
        }
        span.end();
    }
}

/// The method as a span name: the method, or `HTTP` for one outside the standard set.
fn span_method(method: &str) -> String {
    match crate::telemetry::metrics::method_label(method) {
        "OTHER" => "HTTP".to_string(),
        known => known.to_string(),
    }
}

/// Ends the request's spans with its outcome: `(status, route, reason)` — `route` the matched
/// route's `(name, path prefix)` — the authorization decision (verdict and determining
/// policies), and the error code as the span status. A routed request's span is renamed
/// `{method} {path prefix}` with `http.route` the prefix (the route template) and
/// `palisade.route` the route's name.
pub fn finish_request(
    span: &mut RequestSpan,
    request_id: &str,
    error_code: Option<&'static str>,
    decision: Option<(&'static str, String)>,
    (status, route, reason): (u16, Option<(&str, &str)>, &'static str),
    method: &str,
) {
    if let (Some((_, template)), Some(live)) = (route, span.0.as_ref()) {
        live.cx
            .span()
            .update_name(format!("{} {template}", span_method(method)));
    }
    span.finish(error_code, || {
        let mut attrs = vec![
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("palisade.request_id", request_id.to_string()),
            KeyValue::new("palisade.reason", reason),
        ];
        if let Some((name, template)) = route {
            attrs.push(KeyValue::new("http.route", template.to_string()));
            attrs.push(KeyValue::new("palisade.route", name.to_string()));
        }
        if let Some((verdict, policies)) = decision {
            attrs.push(KeyValue::new("authz.decision", verdict));
            attrs.push(KeyValue::new("authz.policies", policies));
        }
        attrs
    });
}

/// A stage's span; ends when dropped.
pub struct StageSpan(Option<opentelemetry_sdk::trace::Span>);

impl StageSpan {
    /// Adds an attribute (e.g. `authz.decision`); a no-op when tracing is off.
    pub fn attr(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = self.0.as_mut() {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Ends the span now.
    pub fn end(self) {}
}
