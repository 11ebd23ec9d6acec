//! The `tracing` section of `palisade.yaml`, as written: OpenTelemetry export over OTLP.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Top-level `tracing`: OpenTelemetry spans for every request, exported over OTLP.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingSpec {
    /// Export spans. Off by default: the embedded default opens no network connection.
    /// Default: `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Collector endpoint: for `http_protobuf` the base URL (`/v1/traces` is appended unless the
    /// URL already has a path), for `grpc` the `http://host:4317` address. Default: the
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// environment variable, else `http://localhost:4318` (`http://localhost:4317` for grpc).
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub endpoint: Option<String>,
    /// OTLP transport: `http_protobuf` or `grpc`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// (`http/protobuf` or `grpc`) when set, else `http_protobuf`.
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// Fraction of new traces sampled, `0.0`–`1.0`; a client's `traceparent` sampling flag is
    /// followed (parent-based). Default: `1.0`.
    #[serde(default = "default_ratio")]
    pub sampling_ratio: f64,
    /// `service.name` of the spans. Default: `palisade`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Deadline of one export. Default: `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// PEM bundle of CAs trusted for an `https` collector (`http_protobuf` or `grpc`), besides
    /// the built-in web roots and the system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    /// Default: absent.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl Default for TracingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            protocol: None,
            sampling_ratio: default_ratio(),
            service_name: default_service_name(),
            timeout: default_timeout(),
            ca_file: None,
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`).
    HttpProtobuf,
    /// OTLP/gRPC.
    Grpc,
}

fn default_ratio() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "palisade".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Pretty lines when stderr is a terminal, JSON lines otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured on a terminal; no event target or source file.
    Pretty,
}
