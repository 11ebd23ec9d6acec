//! Config loading tests: defaults, every error with its path, env overrides, schema drift.

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Vec::new())
}

fn paths(err: ConfigError) -> Vec<String> {
    err.field_errors().into_iter().map(|e| e.path).collect()
}

#[test]
fn embedded_dev_config_is_valid() {
    let config = load(EMBEDDED_DEV_CONFIG).unwrap();
    assert_eq!(config.listeners[0].address.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin_address.to_string(), "127.0.0.1:9901");
    let route = &config.routes.routes()[0];
    assert_eq!(route.name, "agent");
    assert_eq!(route.upstream.address.to_string(), "127.0.0.1:8081");
    assert!(config.embedded_orchestrator.is_some());
}

#[test]
fn empty_file_gets_secure_defaults() {
    let config = load("").unwrap();
    assert_eq!(config.listeners.len(), 1);
    assert!(config.admin_address.ip().is_loopback());
    assert!(config.routes.routes().is_empty());
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
}

#[test]
fn unknown_field_is_reported_with_its_path() {
    let err =
        load("routes:\n  - name: a\n    upstream: u\n    match: {path_prefx: /}\n").unwrap_err();
    let errors = err.field_errors();
    let unknown = errors
        .iter()
        .find(|e| e.path == "routes[0].match.path_prefx")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(unknown.message.contains("unknown field"), "{errors:?}");
    // The field set aside, the semantic checks still ran.
    assert!(
        errors.iter().any(|e| e.path == "routes[0].upstream"),
        "{errors:?}"
    );
}

#[test]
fn wrong_type_is_reported_with_its_path() {
    let err = load("server:\n  drain_timeout: soon\n").unwrap_err();
    assert_eq!(paths(err), ["server.drain_timeout"]);
}

#[test]
fn every_semantic_error_is_reported() {
    let text = r#"
listeners:
  - address: not-an-address
admin:
  address: 0.0.0.0:9901
upstreams:
  good: {address: "127.0.0.1:9"}
routes:
  - name: a
    match: {path_prefix: agent, methods: [post]}
    upstream: missing
  - name: a
    match: {path_prefix: /b}
    upstream: good
    max_body_bytes: 0
"#;
    let mut got = paths(load(text).unwrap_err());
    got.sort();
    assert_eq!(
        got,
        [
            "admin.address",
            "listeners[0].address",
            "routes[0].match.methods[0]",
            "routes[0].match.path_prefix",
            "routes[0].upstream",
            "routes[1].max_body_bytes",
            "routes[1].name",
        ]
    );
}

#[test]
fn env_overrides_apply_before_validation() {
    let env = vec![
        (
            "PALISADE_ADMIN__ADDRESS".to_string(),
            "127.0.0.1:9999".to_string(),
        ),
        (
            "PALISADE_ROUTES__0__IDLE_TIMEOUT".to_string(),
            "7s".to_string(),
        ),
    ];
    let config = Config::from_yaml(EMBEDDED_DEV_CONFIG, env).unwrap();
    assert_eq!(config.admin_address.port(), 9999);
    assert_eq!(
        config.routes.routes()[0].idle_timeout,
        Duration::from_secs(7)
    );

    let env = vec![("PALISADE_SERVER__THREADS".to_string(), "zero".to_string())];
    let err = Config::from_yaml(EMBEDDED_DEV_CONFIG, env).unwrap_err();
    assert_eq!(paths(err), ["server.threads"]);
}

/// Every top-level section takes overrides: an override under `authorization` reaches the typed
/// config (here: refused as an unknown field) instead of being silently ignored.
#[test]
fn env_overrides_reach_every_section() {
    let roots = super::env::tests_support_roots();
    for section in [
        "authentication",
        "authorization",
        "rate_limits",
        "listeners",
    ] {
        assert!(
            roots.iter().any(|r| r == section),
            "{section} not overridable"
        );
    }
    let env = vec![(
        "PALISADE_AUTHORIZATION__NO_SUCH_FIELD".to_string(),
        "1".to_string(),
    )];
    let err = Config::from_yaml(EMBEDDED_DEV_CONFIG, env).unwrap_err();
    assert!(
        err.to_string().contains("no_such_field"),
        "override not applied: {err}"
    );
}

/// The committed JSON Schema must match the config types; regenerate with
/// `cargo run -p palisade-proxy -- config schema > config/schema/palisade.schema.json`.
#[test]
fn committed_schema_matches_the_types() {
    let generated = crate::config::schema_json();
    let committed = include_str!("../../../config/schema/palisade.schema.json");
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "config/schema/palisade.schema.json is stale: run \
         `cargo run -p palisade-proxy --bin palisade -- config schema > config/schema/palisade.schema.json`"
    );
}

#[test]
fn assertion_keys_are_checked_by_validation() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.pem");
    std::fs::write(&good, crate::authn::signer::generate_pem().unwrap()).unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let config = |body: String| format!("authentication:\n  assertion:\n{body}");
    load(&config(format!(
        "    signing_key_file: {}\n",
        good.display()
    )))
    .unwrap();
    let err = load(&config(format!(
        "    signing_key_file: {}\n    previous_key_files: [{}, {}]\n",
        dir.path().join("missing.pem").display(),
        good.display(),
        bad.display()
    )))
    .unwrap_err();
    assert_eq!(
        paths(err),
        [
            "authentication.assertion.signing_key_file",
            "authentication.assertion.previous_key_files[1]"
        ]
    );
    let err = load(&config(format!(
        "    signing_key_file: {}\n    signing_key_env: PALISADE_TEST_NEVER_SET\n",
        good.display()
    )))
    .unwrap_err();
    assert_eq!(
        paths(err),
        [
            "authentication.assertion",
            "authentication.assertion.signing_key_env"
        ]
    );
    let err = load(&config(format!(
        "    previous_key_files: [{}]\n",
        good.display()
    )))
    .unwrap_err();
    assert_eq!(paths(err), ["authentication.assertion.previous_key_files"]);
}
