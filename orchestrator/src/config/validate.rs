//! Loading in two steps: [`parse`] reads the YAML into the config types (reporting the first
//! mismatch with its field path), [`validate`] checks the values and reports every error.

use std::collections::BTreeSet;

use super::OrchestratorConfig;

/// One configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, with list indexes in brackets (`mcp_servers[0].url`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Keys renamed when durations became humantime strings: old key → an example of the new one.
const RENAMED: [(&str, &str); 11] = [
    ("word_delay_ms", "word_delay: 40ms"),
    ("timeout_ms", "timeout: 30s"),
    ("jwks_ttl_s", "jwks_ttl: 5m"),
    ("refetch_min_interval_s", "refetch_min_interval: 10s"),
    ("tools_cache_ms", "tools_cache: 30s"),
    ("initial_backoff_ms", "initial_backoff: 200ms"),
    ("max_backoff_ms", "max_backoff: 5s"),
    ("attempt_timeout_ms", "attempt_timeout: 30s"),
    ("total_timeout_ms", "total_timeout: 2m"),
    ("ttl_seconds", "ttl: 24h"),
    ("export_interval_ms", "export_interval: 1s"),
];

/// The YAML in `text` as config types; an empty document is the default.
pub(super) fn parse(text: &str) -> Result<OrchestratorConfig, FieldError> {
    let tree: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| FieldError {
        path: e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "(document)".into()),
        message: format!("not valid YAML: {e}"),
    })?;
    if tree.is_null() {
        return Ok(OrchestratorConfig::default());
    }
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." => "(root)".to_owned(),
            p => p,
        };
        let mut message = e.into_inner().to_string();
        if let Some((old, new)) = RENAMED
            .iter()
            .find(|(old, _)| message.starts_with(&format!("unknown field `{old}`")))
        {
            message = format!(
                "`{old}` was renamed: durations are humantime strings now, e.g. `{new}` \
                 (see CHANGELOG.md)"
            );
        }
        FieldError { path, message }
    })
}

/// Every invalid value in `cfg`, each with its path.
pub fn validate(cfg: &OrchestratorConfig) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(FieldError { path, message });
    if cfg.max_iterations == 0 {
        err("max_iterations".into(), "must be at least 1".into());
    }
    if let Some(m) = http_url(&cfg.model.base_url) {
        err("model.base_url".into(), m);
    }
    if cfg.model.model.trim().is_empty() {
        err("model.model".into(), "must not be empty".into());
    }
    if cfg.model.timeout.is_zero() {
        err("model.timeout".into(), "must be more than 0s".into());
    }
    if let Some(m) = http_url(&cfg.identity.jwks_url) {
        err("identity.jwks_url".into(), m);
    }
    if cfg.tools.timeout.is_zero() {
        err("tools.timeout".into(), "must be more than 0s".into());
    }
    let mut names = BTreeSet::new();
    for (i, server) in cfg.mcp_servers.iter().enumerate() {
        if server.name.trim().is_empty() {
            err(format!("mcp_servers[{i}].name"), "must not be empty".into());
        } else if !names.insert(server.name.as_str()) {
            err(
                format!("mcp_servers[{i}].name"),
                format!("`{}` is used by an earlier server", server.name),
            );
        }
        if let Some(m) = http_url(&server.url) {
            err(format!("mcp_servers[{i}].url"), m);
        }
    }
    for (name, url) in &cfg.a2a.agents {
        if let Some(m) = http_url(url) {
            err(format!("a2a.agents.{name}"), m);
        }
    }
    if cfg.a2a.initial_backoff > cfg.a2a.max_backoff {
        err(
            "a2a.initial_backoff".into(),
            "must not be more than a2a.max_backoff".into(),
        );
    }
    if cfg.a2a.attempt_timeout.is_zero() {
        err("a2a.attempt_timeout".into(), "must be more than 0s".into());
    }
    if cfg.a2a.total_timeout.is_zero() {
        err("a2a.total_timeout".into(), "must be more than 0s".into());
    }
    for (field, message) in cfg.store.retention().errors() {
        err(format!("store.retention.{field}"), message.into());
    }
    if let crate::store::StoreConfig::Postgres { url, pool_size, .. } = &cfg.store {
        if *pool_size == 0 {
            err("store.pool_size".into(), "must be at least 1".into());
        }
        if let Err(e) = crate::store::postgres::tls::parse_url(url) {
            err("store.url".into(), e.to_string());
        }
    }
    if cfg.idempotency.ttl.is_zero() {
        err("idempotency.ttl".into(), "must be more than 0s".into());
    }
    if let Some(url) = &cfg.idempotency.redis_url {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            err(
                "idempotency.redis_url".into(),
                "must start with redis:// or rediss://".into(),
            );
        }
    }
    if let Some(endpoint) = &cfg.tracing.otlp_endpoint {
        if let Some(m) = http_url(endpoint) {
            err("tracing.otlp_endpoint".into(), m);
        }
    }
    if cfg.tracing.export_interval.is_zero() {
        err(
            "tracing.export_interval".into(),
            "must be more than 0s".into(),
        );
    }
    if let Some(path) = &cfg.tls.ca_file {
        if let Err(m) = crate::tls::pem_file(path) {
            err("tls.ca_file".into(), m);
        }
    }
    errors
}

/// Why `url` is not an absolute http(s) URL, if it is not.
fn http_url(url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => None,
        Ok(u) => Some(format!(
            "`{url}` must be an http:// or https:// URL with a host (scheme `{}`)",
            u.scheme()
        )),
        Err(e) => Some(format!("`{url}` is not a URL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, OrchestratorConfig};

    fn errors(yaml: &str) -> Vec<String> {
        match OrchestratorConfig::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn store_settings_are_checked() {
        let e = errors(
            "store: {backend: postgres, url: \"host=db sslmode=sometimes\", pool_size: 0, \
             retention: {max_age: 0s, max_runs: 0, max_events_per_run: 0, sweep_interval: 10ms}}\n",
        );
        assert_eq!(
            e,
            [
                "store.retention.max_age: must be more than 0s",
                "store.retention.max_runs: must be at least 1",
                "store.retention.max_events_per_run: must be at least 1",
                "store.retention.sweep_interval: must be at least 1s",
                "store.pool_size: must be at least 1",
                "store.url: postgres url: sslmode \"sometimes\": use disable, prefer, require, \
                 verify-ca or verify-full",
            ]
        );
        let cfg = OrchestratorConfig::from_yaml(
            "store: {backend: postgres, url: \"postgres://db/app?sslmode=verify-full\", \
             pool_size: 4, retention: {max_age: 7d}}\n",
        )
        .unwrap();
        assert_eq!(cfg.store.retention().max_age.as_secs(), 7 * 86_400);
        assert_eq!(cfg.store.retention().max_runs, 100_000);
    }

    #[test]
    fn durations_are_humantime_strings() {
        let cfg = OrchestratorConfig::from_yaml(
            "word_delay: 5ms\nmodel: {timeout: 2m}\nidentity: {jwks_ttl: 1h}\n\
             idempotency: {ttl: 24h}\na2a: {initial_backoff: 100ms}\n",
        )
        .unwrap();
        assert_eq!(cfg.word_delay.as_millis(), 5);
        assert_eq!(cfg.model.timeout.as_secs(), 120);
        assert_eq!(cfg.identity.jwks_ttl.as_secs(), 3600);
        assert_eq!(cfg.idempotency.ttl.as_secs(), 86_400);
        assert_eq!(cfg.a2a.initial_backoff.as_millis(), 100);
        let e = errors("model: {timeout: soon}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("model.timeout: "), "{e:?}");
    }

    #[test]
    fn old_keys_name_their_replacement() {
        let e = errors("word_delay_ms: 40\n");
        assert_eq!(
            e,
            ["word_delay_ms: `word_delay_ms` was renamed: durations are humantime strings now, e.g. \
              `word_delay: 40ms` (see CHANGELOG.md)"]
        );
        let e = errors("a2a: {total_timeout_ms: 1000}\n");
        assert!(
            e[0].starts_with("a2a.total_timeout_ms: `total_timeout_ms` was renamed"),
            "{e:?}"
        );
        assert!(e[0].contains("total_timeout: 2m"), "{e:?}");
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_path() {
        let e = errors(
            "max_iterations: 0\n\
             model: {base_url: 'ftp://x', model: ''}\n\
             mcp_servers: [{name: a, url: 'http://h/mcp'}, {name: a, url: 'nope'}]\n\
             a2a: {agents: {bob: 'file:///x'}}\n\
             idempotency: {redis_url: 'http://r'}\n\
             tracing: {otlp_endpoint: 'localhost:4318'}\n\
             tls: {ca_file: /nonexistent/ca.pem}\n",
        );
        let paths: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "max_iterations",
                "model.base_url",
                "model.model",
                "mcp_servers[1].name",
                "mcp_servers[1].url",
                "a2a.agents.bob",
                "idempotency.redis_url",
                "tracing.otlp_endpoint",
                "tls.ca_file",
            ],
            "{e:#?}"
        );
    }

    #[test]
    fn malformed_yaml_names_the_position() {
        let err = OrchestratorConfig::from_yaml("model: [\n").unwrap_err();
        let ConfigError::Invalid(e) = &err else {
            panic!("{err}")
        };
        assert!(e[0].path.starts_with("line "), "{e:?}");
    }
}
