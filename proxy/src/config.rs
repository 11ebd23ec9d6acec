//! Configuration: one YAML file, `PALISADE_*` overrides, strict typing, every error with its path.
//!
//! Loading runs in three steps, each reporting errors with the field path they concern:
//! 1. parse YAML into a tree and apply environment overrides ([`env`]);
//! 2. type the tree into [`spec::ConfigSpec`] (`deny_unknown_fields`; the path of the first type
//!    error is reported by `serde_path_to_error`);
//! 3. validate it into the runtime [`Config`] (`TryFrom`), collecting *every* semantic error.
//!
//! ```no_run
//! let config = palisade_proxy::config::Config::load("config/palisade.yaml")?;
//! # Ok::<(), palisade_proxy::config::ConfigError>(())
//! ```

pub mod env;
pub mod spec;
mod validate;

pub use validate::PerRoute;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use crate::error::FieldError;

use crate::route::RouteTable;
use spec::{ConfigSpec, EmbeddedOrchestratorSpec, LogFormat, TlsSpec};

/// The embedded-default configuration used by `palisade dev` (`config/palisade.yaml`).
pub const EMBEDDED_DEV_CONFIG: &str = include_str!("../../config/palisade.yaml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid, with every problem found.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The individual problems (one for an I/O error).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Io { path, source } => vec![FieldError {
                path: path.clone(),
                message: source.to_string(),
            }],
            Self::Invalid(errors) => errors.clone(),
        }
    }
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public listeners.
    pub listeners: Vec<Listener>,
    /// Admin listener address (loopback unless explicitly allowed otherwise).
    pub admin_address: SocketAddr,
    /// Data-plane worker threads.
    pub threads: usize,
    /// How long live streams may run after a shutdown signal.
    pub drain_timeout: Duration,
    /// How long a client may take to send a request head.
    pub header_timeout: Duration,
    /// Concurrent connections per client address (`0`: no cap).
    pub max_connections_per_ip: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`EnvFilter` syntax).
    pub log_level: String,
    /// The routes, in match order.
    pub routes: Arc<RouteTable>,
    /// Each stage's per-route state (policy mapping, limits, rule set), by route id.
    pub per_route: PerRoute,
    /// The in-process orchestrator, when configured.
    pub embedded_orchestrator: Option<EmbeddedOrchestratorSpec>,
    /// The loaded Cedar policy sets; `None` when authorization is off.
    pub authz: Option<Arc<crate::authz::Authz>>,
    /// Authentication settings (validated).
    pub authentication: crate::authn::AuthnSpec,
    /// The client edge: trusted reverse proxies (validated).
    pub edge: crate::listener::spec::EdgeSpec,
    /// Rate-limit settings (backend, tiers); the limits themselves travel on each route.
    pub rate_limits: crate::ratelimit::Settings,
    /// Audit trail settings (sinks, queue, failure policy).
    pub audit: crate::audit::Settings,
    /// OpenTelemetry export; `None` when tracing is off.
    pub tracing: Option<crate::telemetry::otel::OtelSettings>,
    /// The spec this was validated from, environment overrides applied (`GET /admin/config`
    /// serializes it with secrets redacted).
    pub spec: Arc<ConfigSpec>,
}

/// A validated public listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Name for logs and metrics.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// TLS certificate and key, when the listener serves TLS.
    pub tls: Option<TlsSpec>,
    /// Accept h2c (HTTP/2 prior knowledge) on a plain listener.
    pub h2c: bool,
}

impl Config {
    /// Reads, overrides from the process environment, and validates `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, std::env::vars())
    }

    /// Parses `text`, applies the overrides in `env` (`PALISADE_*` variables), and validates.
    pub fn from_yaml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let spec = parse_spec(text, env)?;
        Self::try_from(spec).map_err(ConfigError::Invalid)
    }
}

/// Steps 1 and 2: YAML tree, overrides, typed spec.
pub fn parse_spec(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ConfigSpec, ConfigError> {
    let invalid =
        |path: String, message: String| ConfigError::Invalid(vec![FieldError { path, message }]);
    let mut tree: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "document".into());
        invalid(at, format!("not valid YAML: {e}"))
    })?;
    if tree.is_null() {
        tree = yaml_serde::Value::Mapping(Default::default());
    }
    let env_errors = env::apply(&mut tree, env);
    if !env_errors.is_empty() {
        return Err(ConfigError::Invalid(env_errors));
    }
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(root)".to_string()
        } else {
            path
        };
        invalid(path, e.into_inner().to_string())
    })
}

impl TryFrom<ConfigSpec> for Config {
    type Error = Vec<FieldError>;

    fn try_from(spec: ConfigSpec) -> Result<Self, Self::Error> {
        validate::validate(spec)
    }
}

#[cfg(test)]
mod tests;

/// The JSON Schema of `palisade.yaml`, pretty-printed (committed as
/// `config/schema/palisade.schema.json`).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ConfigSpec);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
