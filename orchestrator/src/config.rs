//! The orchestrator's configuration, read from YAML (`palisade-orchestrator -c FILE`).
//!
//! Every field is optional; an empty file is the default configuration. Unknown fields are
//! errors, so a typo never silently falls back to a default.

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
    /// Delay before each word the built-in offline model streams, in milliseconds. Default `40`.
    pub word_delay_ms: u64,
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
    /// OpenTelemetry span export. Default: off.
    pub tracing: crate::otel::TracingConfig,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8081)),
            word_delay_ms: 40,
            max_iterations: 8,
            model: ModelConfig::default(),
            identity: IdentityConfig::default(),
            tools: ToolsConfig::default(),
            mcp_servers: Vec::new(),
            store: crate::store::StoreConfig::default(),
            idempotency: crate::idempotency::IdempotencyConfig::default(),
            a2a: crate::a2a::A2aConfig::default(),
            tracing: crate::otel::TracingConfig::default(),
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
    /// Timeout of one model request, in milliseconds (the whole streamed answer). Default
    /// `120000`.
    pub timeout_ms: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            provider: ModelProvider::Offline,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_ms: 120_000,
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
    /// How long fetched keys are used before they are fetched again, in seconds; an unknown
    /// `kid` refetches at most once per `refetch_min_interval_s`. Default `300`.
    pub jwks_ttl_s: u64,
    /// Minimum seconds between fetches caused by unknown key ids. Default `10`.
    pub refetch_min_interval_s: u64,
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
            jwks_ttl_s: 300,
            refetch_min_interval_s: 10,
            audiences: Vec::new(),
        }
    }
}

/// Built-in tools and limits shared by every tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Timeout of one tool call, in milliseconds; a timed-out call is a tool error the model
    /// sees. Default `30000`.
    pub timeout_ms: u64,
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
            timeout_ms: 30_000,
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
    /// How long a caller's tool list is reused by later runs, in milliseconds (`0`: list on
    /// every run). A policy change reaches the list within this time; calls are always decided
    /// live by the proxy. Default `30000`.
    #[serde(default = "default_tools_cache_ms")]
    pub tools_cache_ms: u64,
}

fn default_tools_cache_ms() -> u64 {
    30_000
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
    /// The YAML is malformed or does not match [`OrchestratorConfig`] (the message names the
    /// field and position).
    #[error("invalid orchestrator config: {0}")]
    Parse(#[from] yaml_serde::Error),
}

impl OrchestratorConfig {
    /// Parses YAML. An empty document (or one holding only comments) is the default.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let parsed: Option<Self> = yaml_serde::from_str(text)?;
        Ok(parsed.unwrap_or_default())
    }

    /// Reads and parses a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// [`word_delay_ms`](Self::word_delay_ms) as a [`Duration`].
    pub fn word_delay(&self) -> Duration {
        Duration::from_millis(self.word_delay_ms)
    }

    /// The JSON Schema of the file.
    pub fn schema() -> schemars::schema::RootSchema {
        schemars::schema_for!(OrchestratorConfig)
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
        assert_eq!(d.word_delay().as_millis(), 40);
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
        let cfg =
            OrchestratorConfig::from_yaml("listen: 0.0.0.0:9000\nword_delay_ms: 5\n").unwrap();
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(cfg.word_delay_ms, 5);
    }

    #[test]
    fn unknown_and_invalid_fields_are_errors() {
        let err = OrchestratorConfig::from_yaml("word_delay: 5\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
        assert!(err.to_string().contains("word_delay"), "{err}");
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
    fn missing_file_names_the_path() {
        let err = OrchestratorConfig::load("/nonexistent/orch.yaml".as_ref()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/orch.yaml"), "{err}");
    }
}
