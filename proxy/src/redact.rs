//! Redaction of secrets when a config spec is serialized (`GET /admin/config`,
//! `palisade admin config`).
//!
//! Redaction is structural: a spec field that may carry a secret names one of these functions in
//! `#[serde(serialize_with = "…")]`, so a new secret-bearing field is redacted by declaring it so,
//! not by matching key names. The config file itself holds no secret values (keys, tokens and HMAC
//! secrets come from files and environment variables whose *names* are shown); what it can hold
//! are credentials inside URLs — `redis://user:password@host`, a token in a JWKS URL's query — so
//! URLs lose their user info (`redis://***@host:6379`) and their query string (`?***`).

use serde::Serializer;

/// What replaces a redacted value.
pub const REDACTED: &str = "***";

/// `url` without its credentials: user info becomes `***@`, a query string `?***`, a fragment is
/// dropped. Something that does not parse as a URL is redacted whole, since it cannot be told
/// apart from a secret.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // `host:port` (an address, no credentials possible) is kept; anything else is not.
        let plain = !url.is_empty()
            && url
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        return if plain {
            url.to_string()
        } else {
            REDACTED.to_string()
        };
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_query, query) = match rest.split_once('?') {
        Some((before, _)) => (before, true),
        None => (rest, false),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    // The last `@` ends the user info (a password may itself contain `@`).
    let host = match authority.rfind('@') {
        Some(i) => format!("{REDACTED}@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let query = if query { "?***" } else { "" };
    format!("{scheme}://{host}{path}{query}")
}

/// `serialize_with` for a URL that may carry credentials.
pub fn url<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(value))
}

/// `serialize_with` for an optional URL that may carry credentials.
pub fn opt_url<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.serialize_some(&redact_url(v)),
        None => serializer.serialize_none(),
    }
}

/// `serialize_with` for a list of URLs that may carry credentials (Redis Cluster seed nodes).
pub fn urls<S: Serializer>(value: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(value.iter().map(|v| redact_url(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_and_query() {
        for (url, want) in [
            ("redis://:hunter2@cache:6379/0", "redis://***@cache:6379/0"),
            ("rediss://user:p@ss@cache:6380", "rediss://***@cache:6380"),
            ("redis://cache:6379", "redis://cache:6379"),
            (
                "https://idp.example/jwks?access_token=abc#frag",
                "https://idp.example/jwks?***",
            ),
            ("http://collector:4318", "http://collector:4318"),
            ("cache:6379", "cache:6379"),
            ("user:pw@cache:6379", "***"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    /// Every field of the config that can hold a credential, some set through `PALISADE_*`
    /// overrides: the dump shows none of the secrets, and still shows paths and env var names.
    #[test]
    fn a_config_with_every_kind_of_secret_dumps_none_of_them() {
        let yaml = r#"
listeners: [{address: "127.0.0.1:0", tls: {cert: /etc/palisade/tls.crt, key: /etc/palisade/tls.key}}]
authentication:
  issuers:
    - issuer: https://idp.example
      keys: {jwks_url: "https://jwks-user:S3cret-jwks@idp.example/keys?access_token=S3cret-query"}
    - issuer: supabase
      keys: {secret_env: SUPABASE_JWT_SECRET}
  api_keys:
    file: /etc/palisade/keys.yaml
    redis_url: "redis://:S3cret-apikeys@keys-redis:6379/1"
    redis_cluster: ["redis://user:S3cret-apikeys-node@k0:6379"]
  revocation:
    redis_url: "rediss://default:S3cret-revocation@rev-redis:6380"
    redis_cluster: ["redis://:S3cret-revocation-node@r0:6379"]
    admin_token_file: /etc/palisade/admin-token
  assertion: {signing_key_env: PALISADE_ASSERTION_KEY, previous_key_files: [/etc/palisade/old.pem]}
rate_limits:
  redis: {cluster: ["redis://:S3cret-rl-node@rl-0:6379"]}
audit:
  redis: {url: "redis://audit:S3cret-audit@audit-redis:6379"}
tracing:
  endpoint: "https://otel:S3cret-otlp@collector.example:4318"
"#;
        let env = [(
            "PALISADE_RATE_LIMITS__REDIS__URL".to_string(),
            "redis://:S3cret-env-override@rl:6379".to_string(),
        )];
        let spec = crate::config::parse_spec(yaml, env).expect("the spec parses");
        let dump = serde_json::to_string_pretty(&spec).unwrap();
        assert!(!dump.contains("S3cret"), "a secret leaked:\n{dump}");
        let json: serde_json::Value = serde_json::from_str(&dump).unwrap();
        let authn = &json["authentication"];
        assert_eq!(
            authn["issuers"][0]["keys"]["jwks_url"],
            "https://***@idp.example/keys?***"
        );
        assert_eq!(
            authn["issuers"][1]["keys"]["secret_env"],
            "SUPABASE_JWT_SECRET"
        );
        assert_eq!(
            authn["api_keys"]["redis_url"],
            "redis://***@keys-redis:6379/1"
        );
        assert_eq!(authn["api_keys"]["redis_cluster"][0], "redis://***@k0:6379");
        assert_eq!(authn["api_keys"]["file"], "/etc/palisade/keys.yaml");
        assert_eq!(
            authn["revocation"]["redis_url"],
            "rediss://***@rev-redis:6380"
        );
        assert_eq!(
            authn["revocation"]["redis_cluster"][0],
            "redis://***@r0:6379"
        );
        assert_eq!(
            authn["revocation"]["admin_token_file"],
            "/etc/palisade/admin-token"
        );
        assert_eq!(
            authn["assertion"]["signing_key_env"],
            "PALISADE_ASSERTION_KEY"
        );
        // The override was applied, then redacted.
        assert_eq!(json["rate_limits"]["redis"]["url"], "redis://***@rl:6379");
        assert_eq!(
            json["rate_limits"]["redis"]["cluster"][0],
            "redis://***@rl-0:6379"
        );
        assert_eq!(
            json["audit"]["redis"]["url"],
            "redis://***@audit-redis:6379"
        );
        assert_eq!(
            json["tracing"]["endpoint"],
            "https://***@collector.example:4318"
        );
        assert_eq!(json["listeners"][0]["tls"]["key"], "/etc/palisade/tls.key");
        // Defaults are part of the effective config.
        assert_eq!(json["server"]["log_format"], "auto");
    }
}
