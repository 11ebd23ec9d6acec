//! The orchestrator's configuration, read from YAML (`palisade-orchestrator -c FILE`).
//!
//! Every field is optional; an empty file is the default configuration. Unknown fields are
//! errors, so a typo never silently falls back to a default. Durations are humantime strings
//! (`40ms`, `30s`, `2m`, `24h`), as in the proxy's config. Loading parses the file into these
//! types (the first mismatch is reported with its field path), then [`validate`] checks the
//! values and reports every error with its path. The JSON Schema is committed at
//! `config/schema/orchestrator.schema.json` (`palisade-orchestrator config schema`).

mod validate;

pub use crate::tls::TlsConfig;
pub use validate::FieldError;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Orchestrator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// Address the HTTP server listens on. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Delay before each word the built-in offline model streams. Default `40ms`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub word_delay: Duration,
    /// Most model turns one run may take (tool loops included); the run then ends with
    /// `RUN_ERROR` code `MAX_ITERATIONS`. Default `8`.
    pub max_iterations: u32,
    /// The model answering runs. Default: the built-in offline model.
    pub model: ModelConfig,
    /// How callers are identified (the proxy's signed `X-Palisade-Assertion`).
    pub identity: IdentityConfig,
    /// Built-in tools and tool-call limits.
    pub tools: ToolsConfig,
    /// MCP servers (Streamable HTTP) whose tools runs may call, normally routes on the proxy so
    /// its policies apply. Default: none.
    pub mcp_servers: Vec<McpServerConfig>,
    /// Where threads and runs are kept. Default: the SQLite file `palisade-orchestrator.db`.
    pub store: crate::store::StoreConfig,
    /// `Idempotency-Key` deduplication. Default: in-process, 24 h TTL.
    pub idempotency: crate::idempotency::IdempotencyConfig,
    /// A2A delegation (`delegate_to_agent`). Default: no agents (the tool is not offered).
    pub a2a: crate::a2a::A2aConfig,
    /// OpenTelemetry span export. Default: off, unless the standard `OTEL_EXPORTER_OTLP_*`
    /// environment variables name an endpoint.
    pub tracing: crate::otel::TracingConfig,
    /// Trust for outbound HTTPS (model, MCP, A2A, JWKS, OTLP). Default: the built-in web roots
    /// and the system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    pub tls: TlsConfig,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8081)),
            word_delay: Duration::from_millis(40),
            max_iterations: 8,
            model: ModelConfig::default(),
            identity: IdentityConfig::default(),
            tools: ToolsConfig::default(),
            mcp_servers: Vec::new(),
            store: crate::store::StoreConfig::default(),
            idempotency: crate::idempotency::IdempotencyConfig::default(),
            a2a: crate::a2a::A2aConfig::default(),
            tracing: crate::otel::TracingConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Which model answers, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `offline` (the built-in scripted model, no network) or `openai` (any OpenAI-compatible
    /// chat-completions endpoint). Default `offline`.
    pub provider: ModelProvider,
    /// Base URL of the OpenAI-compatible API; `/chat/completions` is appended. Default
    /// `https://api.openai.com/v1`; `OPENAI_BASE_URL` overrides it.
    pub base_url: String,
    /// Model name sent in each request. Default `gpt-4o-mini`; `OPENAI_MODEL` overrides it.
    pub model: String,
    /// Environment variable holding the API key (never put the key in the file). Default
    /// `OPENAI_API_KEY`.
    pub api_key_env: String,
    /// Timeout of one model request (the whole streamed answer). Default `2m`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            provider: ModelProvider::Offline,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout: Duration::from_secs(120),
        }
    }
}

/// The model backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelProvider {
    /// The built-in deterministic offline model (docs/orchestrator.md lists its script).
    Offline,
    /// An OpenAI-compatible chat-completions endpoint with streaming and tool calling.
    Openai,
}

/// Caller identity: the proxy signs an ES256 `X-Palisade-Assertion` for every request it
/// forwards; the orchestrator verifies it against the proxy's JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Refuse (`401`) runs without a valid assertion. Turn off only for local experiments with
    /// no proxy in front. Default `true`.
    pub require_assertion: bool,
    /// The proxy's JWKS (its admin listener). Default
    /// `http://127.0.0.1:9901/.well-known/jwks.json` (the `palisade dev` admin address).
    pub jwks_url: String,
    /// Expected `iss` of assertions (the proxy's `authentication.assertion.issuer`). Default
    /// `palisade`.
    pub issuer: String,
    /// How long fetched keys are used before they are fetched again; an unknown `kid`
    /// refetches at most once per `refetch_min_interval`. Default `5m`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub jwks_ttl: Duration,
    /// Minimum time between fetches caused by unknown key ids. Default `10s`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refetch_min_interval: Duration,
    /// Accepted `aud` values: the proxy sets an assertion's audience to the route's name, so
    /// listing the agent route (e.g. `[agent]`) refuses assertions minted for other upstreams.
    /// Default: empty (any route of the proxy).
    pub audiences: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            require_assertion: true,
            jwks_url: "http://127.0.0.1:9901/.well-known/jwks.json".into(),
            issuer: "palisade".into(),
            jwks_ttl: Duration::from_secs(300),
            refetch_min_interval: Duration::from_secs(10),
            audiences: Vec::new(),
        }
    }
}

/// Built-in tools and limits shared by every tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Timeout of one tool call; a timed-out call is a tool error the model sees. Default
    /// `30s`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Environment variable holding the credential `mock_weather` needs (injected into the
    /// tool, never shown to the model). Default `PALISADE_WEATHER_API_KEY`.
    pub weather_api_key_env: String,
    /// Roles a caller needs (any one of them, from the proxy's assertion) to see and call a
    /// tool, by tool name (built-in or MCP), e.g. `{delegate_to_agent: [developer, admin]}`.
    /// Default: none (every tool for every caller the proxy admits).
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            weather_api_key_env: "PALISADE_WEATHER_API_KEY".into(),
            roles: Default::default(),
        }
    }
}

/// One MCP server reached over Streamable HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Name used in logs and metrics. Required.
    pub name: String,
    /// The MCP endpoint, e.g. `http://127.0.0.1:8080/mcp` (a proxy route). Required.
    pub url: String,
    /// How long a caller's tool list is reused by later runs (`0s`: list on every run). A
    /// policy change reaches the list within this time; calls are always decided live by the
    /// proxy. Default `30s`.
    #[serde(default = "default_tools_cache", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub tools_cache: Duration,
}

fn default_tools_cache() -> Duration {
    Duration::from_secs(30)
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed, does not match [`OrchestratorConfig`], or holds invalid values:
    /// every error found, each with its field path.
    #[error("invalid orchestrator config: {}", list(.0))]
    Invalid(Vec<FieldError>),
}

/// Descriptions with each doc-comment paragraph on one line (the proxy's schema does the same):
/// the doc comments wrap at 100 columns, which says nothing about the text.
fn one_line_paragraphs(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::String(d)) = schema.get_mut("description") {
        let paragraphs: Vec<String> = d
            .split("\n\n")
            .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
            .filter(|p| !p.trim().is_empty())
            .collect();
        *d = paragraphs.join("\n\n");
    }
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConfigError {
    /// Every error with its field path (a read error is reported at `(file)`).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Read { path, source } => vec![FieldError {
                path: "(file)".into(),
                message: format!("cannot read {}: {source}", path.display()),
            }],
            Self::Invalid(errors) => errors.clone(),
        }
    }
}

impl OrchestratorConfig {
    /// Parses and validates YAML. An empty document (or one holding only comments) is the
    /// default.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg = validate::parse(text).map_err(|e| ConfigError::Invalid(vec![e]))?;
        let errors = validate::validate(&cfg);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Reads and parses a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The JSON Schema of the file.
    pub fn schema() -> schemars::Schema {
        schemars::generate::SchemaSettings::default()
            .with_transform(schemars::transform::RecursiveTransform(one_line_paragraphs))
            .into_generator()
            .into_root_schema_for::<OrchestratorConfig>()
    }

    /// The JSON Schema, pretty-printed (committed as `config/schema/orchestrator.schema.json`).
    pub fn schema_json() -> String {
        serde_json::to_string_pretty(&Self::schema()).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, OrchestratorConfig};

    #[test]
    fn empty_and_comment_only_files_are_the_default() {
        for text in ["", "\n", "# nothing here\n", "{}"] {
            assert_eq!(
                OrchestratorConfig::from_yaml(text).unwrap(),
                OrchestratorConfig::default(),
                "{text:?}"
            );
        }
        let d = OrchestratorConfig::default();
        assert_eq!(d.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(d.word_delay.as_millis(), 40);
        assert_eq!(d.max_iterations, 8);
        assert!(d.identity.require_assertion);
        assert_eq!(d.model.provider, super::ModelProvider::Offline);
    }

    #[test]
    fn nested_sections_are_read() {
        let cfg = OrchestratorConfig::from_yaml(
            "model: {provider: openai, base_url: \"http://x/v1\", model: m}\n\
             identity: {require_assertion: false}\n\
             mcp_servers: [{name: docs, url: \"http://127.0.0.1:1/mcp\"}]\n",
        )
        .unwrap();
        assert_eq!(cfg.model.provider, super::ModelProvider::Openai);
        assert_eq!(cfg.model.api_key_env, "OPENAI_API_KEY");
        assert!(!cfg.identity.require_assertion);
        assert_eq!(cfg.identity.issuer, "palisade");
        assert_eq!(cfg.mcp_servers[0].name, "docs");
        let err = OrchestratorConfig::from_yaml("model: {provider: llama}\n").unwrap_err();
        assert!(err.to_string().contains("provider"), "{err}");
    }

    #[test]
    fn fields_are_read() {
        let cfg = OrchestratorConfig::from_yaml("listen: 0.0.0.0:9000\nword_delay: 5ms\n").unwrap();
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(cfg.word_delay, std::time::Duration::from_millis(5));
    }

    #[test]
    fn unknown_and_invalid_fields_are_errors() {
        let err = OrchestratorConfig::from_yaml("word_delay: 5\n").unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)));
        assert!(err.to_string().contains("word_delay"), "{err}");
        let err = OrchestratorConfig::from_yaml("wordy_delay: 5ms\n").unwrap_err();
        assert!(err.to_string().contains("wordy_delay"), "{err}");
        let err = OrchestratorConfig::from_yaml("listen: nowhere\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn the_shipped_example_file_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/orchestrator.yaml");
        let cfg = OrchestratorConfig::load(path.as_ref()).unwrap();
        assert_eq!(cfg.mcp_servers.len(), 1);
        let defaults = OrchestratorConfig {
            mcp_servers: cfg.mcp_servers.clone(),
            ..OrchestratorConfig::default()
        };
        assert_eq!(cfg, defaults, "the file lists the defaults");
    }

    #[test]
    fn the_deployment_files_load() {
        for file in [
            "/../deploy/docker/orchestrator.yaml",
            "/../deploy/kubernetes/overlays/redis/orchestrator.yaml",
        ] {
            let path = format!("{}{file}", env!("CARGO_MANIFEST_DIR"));
            if let Err(e) = OrchestratorConfig::load(path.as_ref()) {
                panic!("{file}: {e}");
            }
        }
    }

    /// The committed JSON Schema must match the config types; regenerate with
    /// `cargo run -p palisade-orchestrator -- config schema > config/schema/orchestrator.schema.json`.
    #[test]
    fn committed_schema_matches_the_types() {
        let committed = include_str!("../../config/schema/orchestrator.schema.json");
        assert_eq!(
            committed.trim_end(),
            OrchestratorConfig::schema_json().trim_end(),
            "config/schema/orchestrator.schema.json is stale: run `cargo run -p \
             palisade-orchestrator -- config schema > config/schema/orchestrator.schema.json`"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = OrchestratorConfig::load("/nonexistent/orch.yaml".as_ref()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/orch.yaml"), "{err}");
    }
}
