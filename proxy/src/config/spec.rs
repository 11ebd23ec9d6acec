//! The configuration file as written: `serde` types with `deny_unknown_fields` and JSON Schema.
//!
//! These types mirror `palisade.yaml` one to one and hold no logic. [`super::Config`] is built
//! from them by validation (`TryFrom`), which is where cross-field rules and defaults that depend
//! on other fields live. Every field documents its default; the schema in
//! `config/schema/palisade.schema.json` is generated from these doc comments.

pub use crate::protocol::RouteProtocol;
pub use crate::telemetry::spec::LogFormat;
use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Root of `palisade.yaml`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// Public listeners that accept client traffic. Default: one plain HTTP listener on
    /// `127.0.0.1:8080`.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerSpec>,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`). Never serves client routes.
    #[serde(default)]
    pub admin: AdminSpec,
    /// Process-wide settings: worker threads, shutdown, logging.
    #[serde(default)]
    pub server: ServerSpec,
    /// The client edge: trusted reverse proxies whose forwarding header names the client.
    /// Default: none (the TCP peer is the client). See `docs/configuration.md`.
    #[serde(default)]
    pub edge: crate::listener::spec::EdgeSpec,
    /// Request limits applied to every route unless the route overrides them.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Named upstreams that routes forward to. Default: none.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    /// Routes, matched in order; the first route whose host, path prefix and method match wins.
    /// Default: none (every request gets 404).
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Start the bundled orchestrator in-process (used by `palisade dev`). Default: absent (off).
    #[serde(default)]
    pub embedded_orchestrator: Option<EmbeddedOrchestratorSpec>,
    /// Cedar authorization: the policy sets that decide every request (see
    /// `docs/policies.md`). Default: no policy sets (authorization off).
    #[serde(default)]
    pub authorization: crate::authz::AuthzSpec,
    /// How callers authenticate (JWT issuers, API keys, trusted gateways). Default: nothing
    /// configured, so every route that requires authentication answers 401.
    #[serde(default)]
    pub authentication: crate::authn::AuthnSpec,
    /// Rate limits, quotas and stream caps every route inherits, tiers, and the counter backend
    /// (in-process or Redis). Default: no limits (the dev config ships 300 requests/minute per
    /// principal, admins x10, 10 open streams per principal). See `docs/rate-limits.md`.
    #[serde(default)]
    pub rate_limits: crate::ratelimit::spec::RateLimitsSpec,
    /// Guardrails: named rule sets (prompt injection, PII, secrets, destructive tool
    /// arguments, request shape) and the one routes use by default. Default: no default rule
    /// set (routes are not inspected unless they name one; the dev config uses the built-in
    /// `default`). See `docs/guardrails.md`.
    #[serde(default)]
    pub guardrails: crate::guardrails::spec::GuardrailsSpec,
    /// The audit trail: one record per request to a hash-chained JSONL file, stdout and/or a
    /// Redis Stream (see `docs/operations.md`). Default: no sinks (auditing off; the dev config
    /// writes `{tmp}/palisade-dev/audit.jsonl`).
    #[serde(default)]
    pub audit: crate::audit::AuditSpec,
    /// OpenTelemetry traces over OTLP (http/protobuf or gRPC). Default: off (no network).
    #[serde(default)]
    pub tracing: crate::telemetry::spec::TracingSpec,
    /// Human approval of calls a policy marks `@approval("required")`: deadline, caps, the
    /// shared store, the webhook (see `docs/approvals.md`). Default: 5 minutes, 1000 pending
    /// (10 per principal), in process, no webhook.
    #[serde(default)]
    pub approvals: crate::approvals::ApprovalsSpec,
}

/// One public listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// Name used in logs and metrics. Default: `public`.
    #[serde(default = "default_listener_name")]
    pub name: String,
    /// `host:port` to bind, e.g. `0.0.0.0:8443` or `[::1]:8080`. Required.
    pub address: String,
    /// Serve TLS (rustls) with HTTP/2 and HTTP/1.1 negotiated by ALPN. Default: absent (plain
    /// HTTP).
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Accept HTTP/2 with prior knowledge (h2c) on a plain listener. Default: `false`. Off by
    /// default because detecting the h2 preface waits for its first 24 bytes, so a very short
    /// HTTP/1.0 request on an h2c listener waits until the client closes. TLS listeners always
    /// offer h2 through ALPN.
    #[serde(default)]
    pub h2c: bool,
}

/// A certificate and key for a TLS listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file with the certificate chain, leaf first. Required.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1). Required.
    pub key: String,
    /// PEM bundle of CAs whose client certificates are accepted (mTLS); a verified certificate
    /// identifies the caller as `Service::"<SPIFFE URI SAN or CN>"`. Default: absent (no
    /// client certificates requested).
    #[serde(default)]
    pub client_ca: Option<String>,
    /// With `client_ca`: refuse TLS handshakes without a valid client certificate. Default:
    /// `false` (clients without one authenticate by other means).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// `host:port` of the admin listener. Default: `127.0.0.1:9901` (loopback only).
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// Allow binding the admin listener to a non-loopback address. Default: `false`.
    #[serde(default)]
    pub allow_non_loopback: bool,
}

impl Default for AdminSpec {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
            allow_non_loopback: false,
        }
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Worker threads of the data plane. Default: the number of CPU cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// After SIGTERM/SIGINT: how long live streams may run before the proxy ends them (AG-UI
    /// streams get a `RUN_ERROR` with code `SHUTTING_DOWN`). Default: `30s`.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub drain_timeout: Duration,
    /// Log line format: `auto` (pretty on a terminal, JSON otherwise), `json` or `pretty`.
    /// Default: `auto`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` `EnvFilter` syntax, e.g. `info,palisade_proxy=debug`. Default:
    /// `info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// How long a client may take to send a request head (request line and headers), from the
    /// connection's start or from the first byte of a later request on a kept-alive connection.
    /// A client still sending after it is disconnected. pingora's read timeout alone restarts
    /// at every read, so a client trickling a header line every few seconds would hold its
    /// socket forever. Default: `30s`.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_timeout: Duration,
    /// Concurrent connections one client address may hold on the public listeners; one more is
    /// answered `429 RATE_LIMITED` and closed. The address is the TCP peer: behind a reverse
    /// proxy every client shares the proxy's address, so raise this there. `0`: no cap.
    /// Default: `512`.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// How often the config file (and the listeners' certificate files) are checked for
    /// changes; a change is validated and applied live, or refused with the reason logged
    /// (SIGHUP reloads at once too). `0s`: only on SIGHUP. Default: `2s`.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reload_interval: Duration,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            threads: None,
            header_timeout: default_header_timeout(),
            max_connections_per_ip: default_max_connections_per_ip(),
            drain_timeout: default_drain_timeout(),
            log_format: LogFormat::default(),
            log_level: default_log_level(),
            reload_interval: default_reload_interval(),
        }
    }
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(2)
}

/// Request limits.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest request body accepted, in bytes; larger bodies get 413 `PAYLOAD_TOO_LARGE`.
    /// Default: `1048576` (1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// A named upstream.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// `host:port` of the upstream; a host name is resolved at start-up. Required.
    pub address: String,
    /// Connect with TLS (rustls, verified against the system's root certificates). Default:
    /// `false`.
    #[serde(default)]
    pub tls: bool,
    /// SNI and certificate name for TLS. Default: the host part of `address`.
    #[serde(default)]
    pub sni: Option<String>,
    /// Time allowed to establish the TCP (and TLS) connection; a timeout answers 504. Default:
    /// `5s`.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept for reuse. Default: `60s`.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub pool_idle_timeout: Duration,
}

/// One route: which requests it matches and where they go.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique route name, used in metrics, logs, audit and as Cedar `Route::"<name>"`. Required.
    pub name: String,
    /// What the route matches.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Name of an entry in `upstreams`. Required.
    pub upstream: String,
    /// Protocol spoken on this route; `agui` streams are ended with a `RUN_ERROR` event when the
    /// upstream dies or the proxy drains. Default: `http`.
    #[serde(default)]
    pub protocol: RouteProtocol,
    /// Longest silence allowed while waiting for the upstream's response or its next body chunk
    /// (an idle timeout, never a total one, so streams may run for hours). Default: `5m`.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Overrides `limits.max_body_bytes` for this route. Default: absent.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Replace the matched `path_prefix` with this before forwarding, e.g. `/` to strip it.
    /// Default: absent (the path is forwarded unchanged).
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Forward the client's `Host` header instead of the upstream's address. Default: `false`.
    #[serde(default)]
    pub preserve_host: bool,
    /// How this route's requests map to Cedar actions and resources, and what AG-UI streams do
    /// with denied tool calls. Default: `run_agent` on `Agent::"<route name>"` for `agui`
    /// routes, `http_request` on `Route::"<route name>"` otherwise.
    #[serde(default)]
    pub authorization: crate::authz::RouteAuthzSpec,
    /// Whether callers must authenticate: `required` (401 without credentials) or `optional`
    /// (no credentials = the `Anonymous::"<ip>"` principal). Default: `required`.
    #[serde(default)]
    pub auth: crate::route::AuthRequirement,
    /// Forward the client's `Authorization` / `X-API-Key` headers upstream. Default: `false`
    /// (the upstream gets the identity headers and the signed assertion instead).
    #[serde(default)]
    pub forward_credentials: bool,
    /// This route's own limits and stream caps, on top of the inherited top-level ones.
    /// Default: absent (only the top-level `rate_limits` apply).
    #[serde(default)]
    pub rate_limits: Option<crate::ratelimit::spec::RouteLimitsSpec>,
    /// Browser calls from other origins (AG-UI web apps): preflights answered before
    /// authentication, CORS headers on every response of the route (docs/configuration.md#cors).
    /// Default: absent (no CORS headers; a preflight is an `OPTIONS` like any other).
    #[serde(default)]
    pub cors: Option<crate::route::cors::CorsSpec>,
    /// Which guardrail rule set inspects this route (`{rule_set: strict}`), or `{enabled:
    /// false}` to turn guardrails off here. Default: absent (`guardrails.default_rule_set`).
    #[serde(default)]
    pub guardrails: Option<crate::guardrails::spec::RouteGuardrailsSpec>,
    /// MCP routes: pin what was reviewed of the upstream's tools (a lock file from `palisade
    /// tools pin`) and block or flag tools that are new, changed, poisoned or named like
    /// another's (`docs/tool-integrity.md`). Default: absent (tool definitions not checked).
    #[serde(default)]
    pub tool_integrity: Option<crate::integrity::ToolIntegritySpec>,
}

/// Request matching of a route.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Exact host (without port), or `*.example.com` for any subdomain. Default: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix on a segment boundary: `/agent` matches `/agent` and `/agent/x`, not
    /// `/agents`. Default: `/`.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Allowed methods, upper case. A request to a matching path with another method gets 405.
    /// Default: any method.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// The bundled orchestrator started in-process.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedOrchestratorSpec {
    /// `host:port` the orchestrator binds. Default: `127.0.0.1:8081`.
    #[serde(default = "default_orchestrator_address")]
    pub address: String,
    /// Delay between words of the offline model's streamed answer, in milliseconds. Default:
    /// `40`.
    #[serde(default = "default_word_delay_ms")]
    pub word_delay_ms: u64,
    /// An orchestrator YAML file (model, tools, MCP servers, store…; see
    /// `docs/orchestrator.md`); `address` and `word_delay_ms` above override its `listen` and
    /// `word_delay_ms`. Default: absent (the offline model, built-in tools, sessions in memory).
    #[serde(default)]
    pub config: Option<String>,
}

fn default_listeners() -> Vec<ListenerSpec> {
    vec![ListenerSpec {
        name: default_listener_name(),
        address: "127.0.0.1:8080".into(),
        tls: None,
        h2c: false,
    }]
}
fn default_listener_name() -> String {
    "public".into()
}
fn default_admin_address() -> String {
    "127.0.0.1:9901".into()
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections_per_ip() -> usize {
    512
}
fn default_log_level() -> String {
    "info".into()
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_path_prefix() -> String {
    "/".into()
}
fn default_orchestrator_address() -> String {
    "127.0.0.1:8081".into()
}
fn default_word_delay_ms() -> u64 {
    40
}
