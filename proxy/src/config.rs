//! Configuration: one YAML file, `PALISADE_*` overrides, strict typing, every error with its path
//! and its line and column in the file.
//!
//! Loading runs in three steps, each reporting *every* error with the field path it concerns:
//! 1. parse YAML into a tree and apply environment overrides ([`env`]);
//! 2. type the tree into [`spec::ConfigSpec`] (`deny_unknown_fields`); when serde refuses it, the
//!    tree is walked against the JSON Schema for all structural errors at once, and the fields at
//!    fault are set aside so that step 3 can still run;
//! 3. validate it into the runtime [`Config`] (`TryFrom`), collecting every semantic error.
//!
//! [`check`] runs all three and places each error in the file ([`locate`]); `palisade validate`
//! prints its [`Report`]. Full field list: docs/config-reference.md ([`reference`]).
//!
//! ```no_run
//! let config = palisade_proxy::config::Config::load("config/palisade.yaml")?;
//! # Ok::<(), palisade_proxy::config::ConfigError>(())
//! ```

mod budget;
pub mod env;
pub mod locate;
pub mod reference;
pub mod spec;
pub mod stages;
mod structure;
mod validate;

pub use crate::secrets::Secrets;
pub use locate::Position;

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
    /// How often the config and certificate files are checked for changes (`0`: SIGHUP only).
    pub reload_interval: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`EnvFilter` syntax).
    pub log_level: String,
    /// The routes, in match order.
    pub routes: Arc<RouteTable>,
    /// The stages' configuration: each stage's per-route state (policy mapping, limits, rule
    /// set…), by route id, and their top-level settings.
    pub stages: stages::StageConfig,
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
        let report = check(text, Some(env), Secrets::required());
        match report.config {
            Some(config) => Ok(config),
            None => Err(ConfigError::Invalid(
                report.errors.into_iter().map(|d| d.error).collect(),
            )),
        }
    }
}

/// One problem (or note) with where it is written in the file, when it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Line and column of the field (its key, or the list entry), when the field is in the file.
    pub position: Option<Position>,
    /// The field path and message.
    pub error: FieldError,
}

impl Diagnostic {
    /// `FILE:LINE:COLUMN: path: message`, or `FILE: path: message` when not in the file.
    pub fn render(&self, file: &str) -> String {
        match self.position {
            Some(p) => format!("{file}:{}:{}: {}", p.line, p.column, self.error),
            None => format!("{file}: {}", self.error),
        }
    }
}

/// The outcome of [`check`].
#[derive(Debug)]
pub struct Report {
    /// The configuration, when there are no errors.
    pub config: Option<Config>,
    /// Every error, in file order (errors not tied to a place in the file last).
    pub errors: Vec<Diagnostic>,
    /// What was not checked, and why (absent secrets under `--no-env`; semantic checks skipped).
    pub notes: Vec<Diagnostic>,
}

/// Places each error of `errors` in `text` (see [`locate::locate`]).
pub fn locate_all(text: &str, errors: Vec<FieldError>) -> Vec<Diagnostic> {
    // Locating re-reads the file once per error: past the first few hundred, the rest are
    // reported without a position rather than making a huge broken file take minutes.
    const LOCATED: usize = 200;
    let mut out: Vec<Diagnostic> = errors
        .into_iter()
        .enumerate()
        .map(|(i, error)| Diagnostic {
            position: (i < LOCATED)
                .then(|| locate::locate(text, &error.path))
                .flatten(),
            error,
        })
        .collect();
    // File order; errors outside the file keep their order, after the rest.
    out.sort_by_key(|d| (d.position.is_none(), d.position));
    out
}

/// Refuses a file too large to build a tree from (see [`budget`]): the message says why.
pub fn check_budget(text: &str) -> Result<(), String> {
    budget::check(text)
}

/// All three loading steps on `text`, collecting every error with its position.
///
/// `env`: the `PALISADE_*` overrides to apply (`None`: the file as written, as `--no-env` does).
/// `secrets`: whether absent secrets are errors ([`Secrets::required`]) or notes.
pub fn check<I>(text: &str, env: Option<I>, mut secrets: Secrets) -> Report
where
    I: IntoIterator<Item = (String, String)>,
{
    let env: Option<Vec<(String, String)>> = env.map(|vars| vars.into_iter().collect());
    let overridden = env.as_deref().map(env::overridden).unwrap_or_default();
    let failed = |errors: Vec<FieldError>, notes: Vec<FieldError>| Report {
        config: None,
        errors: attribute(locate_all(text, errors), &overridden),
        notes: locate_all(text, notes),
    };
    // Too big to build (an alias bomb): refused before any tree exists.
    if let Err(message) = budget::check(text) {
        return Report {
            config: None,
            errors: vec![Diagnostic {
                position: None,
                error: FieldError {
                    path: "(document)".into(),
                    message,
                },
            }],
            notes: Vec::new(),
        };
    }
    // Not YAML at all: the parser's own position.
    if let Err(e) = yaml_serde::from_str::<yaml_serde::Value>(text) {
        return Report {
            config: None,
            errors: vec![Diagnostic {
                position: e.location().map(|l| Position {
                    line: l.line(),
                    column: l.column(),
                }),
                error: FieldError {
                    path: "(document)".into(),
                    message: format!("not valid YAML: {e}"),
                },
            }],
            notes: Vec::new(),
        };
    }
    let tree = match tree(text, env) {
        Ok(tree) => tree,
        Err(ConfigError::Invalid(errors)) => return failed(errors, Vec::new()),
        Err(e) => return failed(e.field_errors(), Vec::new()),
    };
    let (spec, mut errors, set_aside) = match typed(tree) {
        Typed::Spec(spec) => (spec, Vec::new(), Vec::new()),
        Typed::Repaired {
            spec,
            errors,
            set_aside,
        } => (spec, errors, set_aside),
        Typed::Failed(errors) => {
            let note = FieldError {
                path: "(root)".into(),
                message: "the semantic checks did not run: fix the errors above first".into(),
            };
            return failed(errors, vec![note]);
        }
    };
    match validate::validate(spec, &mut secrets) {
        Ok(config) if errors.is_empty() => {
            return Report {
                config: Some(config),
                errors: Vec::new(),
                notes: locate_all(text, secrets.notes().to_vec()),
            }
        }
        Ok(_) => {}
        // A field set aside fell back to its default: what the checks say about it is moot.
        Err(semantic) => errors.extend(
            semantic
                .into_iter()
                .filter(|e| !set_aside.iter().any(|p| within(&e.path, p))),
        ),
    }
    failed(errors, secrets.notes().to_vec())
}

/// Errors about a field an environment override set point at the variable, not at the file.
fn attribute(mut errors: Vec<Diagnostic>, overridden: &[(String, String)]) -> Vec<Diagnostic> {
    for d in &mut errors {
        if let Some((_, var)) = overridden.iter().find(|(p, _)| within(&d.error.path, p)) {
            d.position = None;
            d.error.message.push_str(&format!(" (set by {var})"));
        }
    }
    errors.sort_by_key(|d| (d.position.is_none(), d.position));
    errors
}

/// Whether field path `path` is `prefix` or inside it.
fn within(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Step 1: the YAML tree with the overrides in `env` applied.
fn tree<I>(text: &str, env: Option<I>) -> Result<yaml_serde::Value, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    budget::check(text).map_err(|message| {
        ConfigError::Invalid(vec![FieldError {
            path: "(document)".into(),
            message,
        }])
    })?;
    let mut tree: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "document".into());
        ConfigError::Invalid(vec![FieldError {
            path: at,
            message: format!("not valid YAML: {e}"),
        }])
    })?;
    if tree.is_null() {
        tree = yaml_serde::Value::Mapping(Default::default());
    }
    if let Some(env) = env {
        let env_errors = env::apply(&mut tree, env);
        if !env_errors.is_empty() {
            return Err(ConfigError::Invalid(env_errors));
        }
    }
    Ok(tree)
}

/// The outcome of step 2.
enum Typed {
    /// The tree is well-typed.
    Spec(ConfigSpec),
    /// It is not, but with the fields in `set_aside` removed it is.
    Repaired {
        spec: ConfigSpec,
        errors: Vec<FieldError>,
        set_aside: Vec<String>,
    },
    /// It is not, and no removal helps.
    Failed(Vec<FieldError>),
}

/// Step 2: serde decides; when it refuses, the schema walk lists every structural error.
fn typed(tree: yaml_serde::Value) -> Typed {
    let first = match serde_path_to_error::deserialize::<_, ConfigSpec>(tree.clone()) {
        Ok(spec) => return Typed::Spec(spec),
        Err(e) => {
            let path = e.path().to_string();
            FieldError {
                path: if path == "." { "(root)".into() } else { path },
                message: e.into_inner().to_string(),
            }
        }
    };
    let problems = structure::check(&schema(), &tree);
    let mut errors: Vec<FieldError> = problems.iter().map(FieldError::from).collect();
    // serde saw something the schema walk did not: report it too.
    if !errors.iter().any(|e| e.path == first.path) {
        errors.push(first);
    }
    let removals: Option<Vec<_>> = problems.iter().map(|p| p.remove.clone()).collect();
    let Some(removals) = removals.filter(|_| errors.len() == problems.len()) else {
        return Typed::Failed(errors);
    };
    let mut repaired = tree;
    structure::remove_all(&mut repaired, &removals);
    match serde_path_to_error::deserialize::<_, ConfigSpec>(repaired) {
        Ok(spec) => Typed::Repaired {
            spec,
            errors,
            set_aside: removals.iter().map(|p| structure::render(p)).collect(),
        },
        Err(_) => Typed::Failed(errors),
    }
}

/// Steps 1 and 2: YAML tree, overrides, typed spec (every structural error when it fails).
pub fn parse_spec(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ConfigSpec, ConfigError> {
    match typed(tree(text, Some(env))?) {
        Typed::Spec(spec) => Ok(spec),
        Typed::Repaired { errors, .. } | Typed::Failed(errors) => Err(ConfigError::Invalid(errors)),
    }
}

impl TryFrom<ConfigSpec> for Config {
    type Error = Vec<FieldError>;

    fn try_from(spec: ConfigSpec) -> Result<Self, Self::Error> {
        validate::validate(spec, &mut Secrets::required())
    }
}

#[cfg(test)]
mod tests;

/// The JSON Schema of `palisade.yaml` (draft 2020-12), the one source of the committed schema,
/// the field reference, the structural walk and the override roots.
pub fn schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::default()
        .with_transform(schemars::transform::RecursiveTransform(one_line_paragraphs))
        .into_generator()
        .into_root_schema_for::<ConfigSpec>()
}

/// Descriptions with each doc-comment paragraph on one line: the doc comments wrap at 100
/// columns, which says nothing about the text (editors show descriptions as they are).
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

/// The JSON Schema of `palisade.yaml`, pretty-printed (committed as
/// `config/schema/palisade.schema.json`).
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default() + "\n"
}
