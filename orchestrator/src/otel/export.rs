//! Where spans go: `tracing` from the config, else the standard OpenTelemetry environment
//! variables (the config wins wherever both say something).
//!
//! | variable | use |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the traces URL, used as is |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; `/v1/traces` is appended |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (`OTEL_EXPORTER_OTLP_TRACES_HEADERS` wins per key) | `k=v,k2=v2` headers on every export, values percent-decoded |
//! | `OTEL_SERVICE_NAME` | `service.name` unless `tracing.service_name` is set |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `k=v,…` resource attributes (its `service.name` is used when nothing else names one) |

use std::collections::BTreeMap;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::TracingConfig;

/// The default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "palisade-orchestrator";

/// A resolved export target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The OTLP/HTTP traces URL (ends in `/v1/traces` unless given whole by
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub endpoint: String,
    /// Extra HTTP headers (e.g. a hosted backend's API key).
    pub headers: BTreeMap<String, String>,
    /// `service.name`.
    pub service_name: String,
    /// Other resource attributes.
    pub resource: BTreeMap<String, String>,
    /// Batch interval.
    pub interval: Duration,
}

impl Export {
    /// The export `cfg` and `env` ask for; `None` when neither names an endpoint.
    pub fn resolve(cfg: &TracingConfig, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let endpoint = match (
            &cfg.otlp_endpoint,
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ) {
            (Some(e), _) => with_traces_path(e),
            (None, Some(e)) => e,
            (None, None) => with_traces_path(&env("OTEL_EXPORTER_OTLP_ENDPOINT")?),
        };
        let mut headers = pairs(&env("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default());
        headers.extend(pairs(
            &env("OTEL_EXPORTER_OTLP_TRACES_HEADERS").unwrap_or_default(),
        ));
        let mut resource = pairs(&env("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default());
        let from_resource = resource.remove("service.name");
        let service_name = cfg
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .or(from_resource)
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Some(Self {
            endpoint,
            headers,
            service_name,
            resource,
            interval: cfg.export_interval,
        })
    }
}

/// `base` with `/v1/traces` appended unless present.
fn with_traces_path(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// `k=v,k2=v2` (W3C baggage-like, as the OpenTelemetry spec defines these variables): keys and
/// values trimmed and percent-decoded; malformed entries are skipped.
fn pairs(list: &str) -> BTreeMap<String, String> {
    list.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            // `%XX` decoded; a `%` without two hex digits is kept as written.
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let (k, v) = (decode(k.trim()), decode(v.trim()));
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Export, TracingConfig};

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn nothing_set_means_no_export() {
        assert_eq!(Export::resolve(&TracingConfig::default(), env(&[])), None);
        let blank = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]);
        assert_eq!(Export::resolve(&TracingConfig::default(), blank), None);
    }

    #[test]
    fn the_standard_variables_configure_export() {
        let e = Export::resolve(
            &TracingConfig::default(),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-api-key=s%3Dcret, x-team = blue,broken",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=red"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=from-resource",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(e.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(e.headers["x-api-key"], "s=cret");
        assert_eq!(e.headers["x-team"], "red", "the traces variable wins");
        assert_eq!(e.headers.len(), 2);
        assert_eq!(e.service_name, "from-resource");
        assert_eq!(
            e.resource,
            BTreeMap::from([("deployment.environment".into(), "prod".into())])
        );

        let e = Export::resolve(
            &TracingConfig::default(),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_SERVICE_NAME", "orch-eu"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=loses"),
            ]),
        )
        .unwrap();
        assert_eq!(e.endpoint, "http://c:4318/custom", "used as is");
        assert_eq!(e.service_name, "orch-eu");
    }

    #[test]
    fn the_config_wins_over_the_environment() {
        let cfg = TracingConfig {
            otlp_endpoint: Some("http://from-config:4318".into()),
            service_name: Some("from-config".into()),
            ..TracingConfig::default()
        };
        let e = Export::resolve(
            &cfg,
            env(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://env:4318/v1/traces",
                ),
                ("OTEL_SERVICE_NAME", "from-env"),
            ]),
        )
        .unwrap();
        assert_eq!(e.endpoint, "http://from-config:4318/v1/traces");
        assert_eq!(e.service_name, "from-config");
        let e = Export::resolve(&cfg, env(&[])).unwrap();
        assert_eq!(e.service_name, "from-config");
        let defaults = TracingConfig {
            otlp_endpoint: Some("http://c:4318/v1/traces".into()),
            ..TracingConfig::default()
        };
        let e = Export::resolve(&defaults, env(&[])).unwrap();
        assert_eq!(e.service_name, "palisade-orchestrator");
        assert_eq!(e.endpoint, "http://c:4318/v1/traces");
    }
}
