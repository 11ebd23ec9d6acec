//! OpenTelemetry spans over OTLP/HTTP (protobuf), joined to the proxy's trace.
//!
//! Off unless `tracing.otlp_endpoint` (or the standard `OTEL_EXPORTER_OTLP_*` variables, see
//! [`Export`]) names an endpoint. Each run is a server span `agent.run` whose parent is
//! the proxy's span named in the incoming `traceparent`; model calls (GenAI client spans
//! `chat {model}`, see `run/genai.rs`) and tool calls (`tool.call`) are its children, and a tool call's span is the parent named in the
//! `traceparent` sent to MCP servers and A2A agents. The provider is built per orchestrator and
//! passed explicitly, never installed globally.

use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracer, SdkTracerProvider};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::trace::TraceContext;

mod export;

pub use export::Export;

/// Span export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP (protobuf) endpoint, e.g. `http://127.0.0.1:4318` (`/v1/traces` is appended
    /// unless present). Default: absent — then `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else no spans are exported (`traceparent` still
    /// propagates).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans. Default: `OTEL_SERVICE_NAME`, else the `service.name` of
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `palisade-orchestrator`.
    pub service_name: Option<String>,
    /// How often batched spans are sent. Default `1s`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub export_interval: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: None,
            export_interval: Duration::from_secs(1),
        }
    }
}

/// The tracer, when export is on. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    live: Option<(SdkTracerProvider, SdkTracer)>,
}

impl Telemetry {
    /// Starts the exporter (inside a Tokio runtime) for `cfg` and the process environment's
    /// `OTEL_*` variables.
    pub fn start(cfg: &TracingConfig, trust: &crate::tls::Trust) -> anyhow::Result<Self> {
        Self::start_with_env(cfg, trust, |k| std::env::var(k).ok())
    }

    /// [`Telemetry::start`] with the environment read through `env`.
    pub fn start_with_env(
        cfg: &TracingConfig,
        trust: &crate::tls::Trust,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let Some(export) = Export::resolve(cfg, env) else {
            return Ok(Self::default());
        };
        let endpoint = export.endpoint.clone();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(
                trust
                    .client_builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
            )
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_headers(export.headers.clone().into_iter().collect())
            .build()?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(export.interval)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(export.service_name.clone())
                    .with_attributes(
                        export
                            .resource
                            .iter()
                            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
                    )
                    .build(),
            )
            .build();
        let tracer = provider.tracer("palisade-orchestrator");
        tracing::info!(
            endpoint = %endpoint,
            service.name = %export.service_name,
            "tracing: exporting spans over OTLP/HTTP"
        );
        Ok(Self {
            live: Some((provider, tracer)),
        })
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.live {
            let _ = provider.shutdown();
        }
    }

    /// Starts a span named `name` under `parent` (the proxy's span or a run's), and points
    /// `parent` at the new span so its `traceparent` names it. Without export, only a new span
    /// id is drawn.
    pub fn span(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        kind: SpanKind,
        parent: &mut TraceContext,
    ) -> RunSpan {
        let Some((_, tracer)) = &self.live else {
            parent.span_id = TraceContext::new_span_id();
            return RunSpan(None);
        };
        let remote = SpanContext::new(
            TraceId::from_hex(&parent.trace_id).unwrap_or(TraceId::INVALID),
            SpanId::from_hex(&parent.span_id).unwrap_or(SpanId::INVALID),
            TraceFlags::new(u8::from_str_radix(&parent.flags, 16).unwrap_or(1)),
            true,
            TraceState::default(),
        );
        let cx = if remote.is_valid() {
            Context::new().with_remote_span_context(remote)
        } else {
            Context::new()
        };
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(tracer, &cx);
        let sc = span.span_context();
        parent.trace_id = sc.trace_id().to_string();
        parent.span_id = sc.span_id().to_string();
        RunSpan(Some(span))
    }
}

/// A live span (or nothing when export is off); ends when dropped.
pub struct RunSpan(Option<opentelemetry_sdk::trace::Span>);

impl RunSpan {
    /// Adds attributes.
    pub fn attrs(&mut self, attrs: impl IntoIterator<Item = (&'static str, String)>) {
        if let Some(span) = &mut self.0 {
            for (k, v) in attrs {
                span.set_attribute(KeyValue::new(k, v));
            }
        }
    }

    /// Adds typed attributes (integers, arrays).
    pub fn set(&mut self, attrs: impl IntoIterator<Item = KeyValue>) {
        if let Some(span) = &mut self.0 {
            for kv in attrs {
                span.set_attribute(kv);
            }
        }
    }

    /// Whether the span is exported (so building attributes is worth it).
    pub fn is_live(&self) -> bool {
        self.0.is_some()
    }

    /// Marks the span failed.
    pub fn error(&mut self, message: &str) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(message.to_owned()));
        }
    }
}

impl Drop for RunSpan {
    fn drop(&mut self) {
        if let Some(span) = &mut self.0 {
            span.end();
        }
    }
}
