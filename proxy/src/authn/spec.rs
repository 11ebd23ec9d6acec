//! From the `authentication:` spec to issuers: validation with field paths, then construction.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::config::{AuthnSpec, DevIssuerSpec, IssuerSpec};
use super::jwt::Issuer;
use super::keys::{key_source, KeySet, KeyStore};
use super::signer::Signer;
use crate::error::FieldError;

fn algorithms(spec: &IssuerSpec) -> Result<Vec<Algorithm>, String> {
    let names: Vec<&str> = if spec.algorithms.is_empty() {
        if spec.keys.secret_env.is_some() {
            vec!["HS256"]
        } else {
            vec!["RS256"]
        }
    } else {
        spec.algorithms.iter().map(String::as_str).collect()
    };
    names
        .into_iter()
        .map(|n| {
            n.parse::<Algorithm>().map_err(|_| {
                format!("`{n}` is not a JWT signature algorithm (`none` is never allowed)")
            })
        })
        .collect()
}

/// Checks the spec; pushes one error per problem with its field path. Secrets (`secret_env`,
/// assertion keys) are read through `secrets`, which may excuse absent ones (`--no-env`).
pub fn validate_spec(
    spec: &AuthnSpec,
    secrets: &mut crate::secrets::Secrets,
    errors: &mut Vec<FieldError>,
) {
    let mut push = |path: String, message: String| errors.push(FieldError { path, message });
    if let Some(ca) = &spec.ca_file {
        // What the JWKS client will trust: a file that doesn't load is refused here, not at start.
        if let Err(e) = palisade_wire::outbound::pem_file(std::path::Path::new(ca)) {
            push("authentication.ca_file".into(), e);
        }
    }
    for (i, issuer) in spec.issuers.iter().enumerate() {
        let at = format!("authentication.issuers[{i}]");
        if issuer.issuer.is_empty() {
            push(format!("{at}.issuer"), "must not be empty".into());
        }
        match algorithms(issuer) {
            Err(e) => push(format!("{at}.algorithms"), e),
            Ok(algs) => {
                let hmac = issuer.keys.secret_env.is_some();
                for alg in algs {
                    let is_hmac = alg.family() == AlgorithmFamily::Hmac;
                    if is_hmac != hmac {
                        push(
                            format!("{at}.algorithms"),
                            format!(
                                "{alg:?} cannot be used with this key source: HMAC algorithms only with \
                                 `secret_env`, public-key algorithms only with a JWKS"
                            ),
                        );
                    }
                }
            }
        }
        let keys = &issuer.keys;
        if keys.count() != 1 {
            push(
                format!("{at}.keys"),
                "set exactly one of discovery: true, jwks_url, jwks_file, secret_env".into(),
            );
        }
        if let Some(var) = &keys.secret_env {
            let field = format!("{at}.keys.secret_env");
            match secrets.var(&field, var) {
                Ok(Some(secret)) if secret.len() >= 32 => {}
                Ok(None) => {}
                Ok(Some(_)) => push(field, format!("${var} is shorter than 32 bytes")),
                Err(message) => push(field, message),
            }
        }
        if let Some(url) = &keys.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                push(
                    format!("{at}.keys.jwks_url"),
                    "must be an http(s) URL".into(),
                );
            }
        }
    }
    if let Some(keys) = &spec.api_keys {
        let redis = keys.redis_url.is_some() || !keys.redis_cluster.is_empty();
        if keys.file.as_deref().is_none_or(str::is_empty) && !redis {
            push(
                "authentication.api_keys".into(),
                "set `file`, `redis_url` or `redis_cluster`".into(),
            );
        }
        if keys.redis_url.is_some() && !keys.redis_cluster.is_empty() {
            push(
                "authentication.api_keys".into(),
                "set `redis_url` or `redis_cluster`, not both".into(),
            );
        }
    }
    if let Some(trusted) = &spec.trusted_headers {
        if trusted.from.is_empty() {
            push(
                "authentication.trusted_headers.from".into(),
                "list at least one network".into(),
            );
        }
        for (i, net) in trusted.from.iter().enumerate() {
            if net.parse::<ipnet::IpNet>().is_err() && net.parse::<std::net::IpAddr>().is_err() {
                push(
                    format!("authentication.trusted_headers.from[{i}]"),
                    format!("`{net}` is not a CIDR"),
                );
            }
        }
    }
    if spec.assertion.ttl.is_zero() || spec.assertion.ttl.as_secs() > 60 {
        push(
            "authentication.assertion.ttl".into(),
            "must be between 1s and 60s".into(),
        );
    }
    if spec.assertion.signing_key_file.is_some() && spec.assertion.signing_key_env.is_some() {
        push(
            "authentication.assertion".into(),
            "set `signing_key_file` or `signing_key_env`, not both".into(),
        );
    }
    // The keys themselves, so `palisade validate` catches a missing or malformed key, not the
    // start of the proxy.
    let assertion = &spec.assertion;
    let keys = assertion
        .signing_key_file
        .iter()
        .map(|f| ("authentication.assertion.signing_key_file".to_string(), f))
        .chain(
            assertion
                .previous_key_files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        format!("authentication.assertion.previous_key_files[{i}]"),
                        f,
                    )
                }),
        );
    for (at, file) in keys {
        match secrets.read(&at, file) {
            Err(e) => push(at, format!("cannot read {file}: {e}")),
            Ok(None) => {}
            Ok(Some(pem)) => {
                if let Err(e) = super::signer::Signer::from_pem(&pem) {
                    push(at, format!("{file}: {e}"));
                }
            }
        }
    }
    if let Some(var) = &assertion.signing_key_env {
        let at = "authentication.assertion.signing_key_env".to_string();
        match secrets.var(&at, var) {
            Err(message) => push(at, message),
            Ok(None) => {}
            Ok(Some(pem)) => {
                if let Err(e) = super::signer::Signer::from_pem(&pem) {
                    push(at, format!("${var}: {e}"));
                }
            }
        }
    }
    if !spec.assertion.previous_key_files.is_empty()
        && spec.assertion.signing_key_file.is_none()
        && spec.assertion.signing_key_env.is_none()
    {
        push(
            "authentication.assertion.previous_key_files".into(),
            "previous keys are published next to the signing key: set `signing_key_file` or \
             `signing_key_env`"
                .into(),
        );
    }
    let rev = &spec.revocation;
    if rev.redis_url.is_some() && !rev.redis_cluster.is_empty() {
        push(
            "authentication.revocation".into(),
            "set `redis_url` or `redis_cluster`, not both".into(),
        );
    }
    if rev
        .redis_url
        .as_deref()
        .is_some_and(|u| !u.starts_with("redis://") && !u.starts_with("rediss://"))
    {
        push(
            "authentication.revocation.redis_url".into(),
            "must be a redis:// URL".into(),
        );
    }
    if rev.sync_interval.is_zero() {
        push(
            "authentication.revocation.sync_interval".into(),
            "must be greater than 0".into(),
        );
    }
    if spec.max_token_bytes == 0 {
        push(
            "authentication.max_token_bytes".into(),
            "must be greater than 0".into(),
        );
    }
    if let Some(sessions) = &spec.sessions {
        use super::session::config::NamedIssuer;
        let issuer = match spec.issuers.iter().find(|i| i.issuer == sessions.issuer) {
            None => NamedIssuer::Missing,
            Some(i) if i.keys.secret_env.is_some() => NamedIssuer::Hmac,
            Some(_) => NamedIssuer::Keys,
        };
        super::session::config::validate(sessions, issuer, secrets, errors);
    }
}

/// Builds the configured issuers (keys load in the background).
pub fn build_issuers(spec: &AuthnSpec, http: &reqwest::Client) -> anyhow::Result<Vec<Arc<Issuer>>> {
    spec.issuers
        .iter()
        .map(|s| {
            let keys = match &s.keys.secret_env {
                Some(var) => {
                    let secret = std::env::var(var)
                        .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?;
                    KeyStore::fixed(KeySet::hmac(secret.as_bytes()))
                }
                None => KeyStore::new(
                    key_source(&s.keys, &s.issuer),
                    s.refetch_min_interval,
                    http.clone(),
                ),
            };
            Ok(Arc::new(Issuer {
                issuer: s.issuer.clone(),
                audiences: s.audiences.clone(),
                algorithms: algorithms(s).map_err(anyhow::Error::msg)?,
                keys: Arc::new(keys),
                leeway: s.leeway,
                required_claims: s.required_claims.clone(),
                claims: s.claims.clone(),
                required_for_readiness: s.required_for_readiness,
                refresh_every: s.jwks_ttl,
            }))
        })
        .collect()
}

/// The dev issuer: fixed ES256 key, audience `palisade`.
pub fn dev_issuer(spec: &DevIssuerSpec, signer: &Signer) -> Issuer {
    Issuer {
        issuer: spec.issuer.clone(),
        audiences: vec!["palisade".into()],
        algorithms: vec![Algorithm::ES256],
        keys: Arc::new(KeyStore::fixed(signer.key_set())),
        leeway: std::time::Duration::from_secs(30),
        required_claims: vec!["sub".into()],
        claims: Default::default(),
        required_for_readiness: true,
        refresh_every: std::time::Duration::from_secs(3600),
    }
}
