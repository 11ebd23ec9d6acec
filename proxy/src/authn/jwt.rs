//! JWT verification against configured issuers (RFC 8725 hygiene).
//!
//! - the token is bounded in size before any parsing;
//! - the issuer is chosen by the (unverified) `iss`, then *its* allowed algorithms and keys are
//!   the only ones considered: `none` never parses, an HMAC algorithm never verifies against a
//!   public key (the key family must match), and an issuer with public keys never lists HMAC;
//! - `jku`, `x5u` and embedded `jwk` headers are ignored: keys come only from configuration;
//! - `kid` is only a map key (never a path or a query), and an unknown `kid` triggers at most one
//!   refetch per interval;
//! - nested JWTs (`cty: JWT`) are refused.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::claims::principal_from_claims;
use super::config::ClaimMappingSpec;
use super::keys::KeyStore;
use crate::error::ProxyError;
use crate::principal::Principal;

/// A configured, validated issuer.
pub struct Issuer {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted audiences (empty: any).
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Verification keys.
    pub keys: Arc<KeyStore>,
    /// Clock skew allowance.
    pub leeway: Duration,
    /// Required claims besides `exp`.
    pub required_claims: Vec<String>,
    /// Claim mapping.
    pub claims: ClaimMappingSpec,
    /// Whether readiness waits for this issuer's keys.
    pub required_for_readiness: bool,
    /// Background refresh interval.
    pub refresh_every: Duration,
}

/// Why a token was refused (kept for logs; clients only see the documented code).
fn refuse(why: &'static str) -> ProxyError {
    tracing::debug!(reason = why, "token refused");
    ProxyError::Unauthenticated
}

/// Verifies `token` against `issuers` and returns its principal.
pub async fn verify(
    issuers: &[Arc<Issuer>],
    token: &str,
    max_bytes: usize,
) -> Result<Principal, ProxyError> {
    let (issuer, claims) = verify_claims(issuers, token, max_bytes, None).await?;
    Ok(principal_from_claims(
        &issuer.issuer,
        &claims,
        &issuer.claims,
    ))
}

/// Verifies `token` against `issuers` with every rule above and returns its issuer and claims.
/// `audiences` replaces the issuer's own accepted audiences: an OIDC ID token is addressed to
/// the client (`aud` = client id), not to the API (authn/session).
pub async fn verify_claims<'a>(
    issuers: &'a [Arc<Issuer>],
    token: &str,
    max_bytes: usize,
    audiences: Option<&[String]>,
) -> Result<(&'a Issuer, Value), ProxyError> {
    if token.len() > max_bytes {
        return Err(refuse("token too large"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| refuse("bad header"))?;
    if header
        .cty
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("jwt"))
    {
        return Err(refuse("nested JWT"));
    }
    if header.kid.as_deref().is_some_and(|k| k.len() > 256) {
        return Err(refuse("kid too long"));
    }
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    let iss = jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
        .map_err(|_| refuse("no iss"))?
        .iss;
    let issuer = issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or_else(|| refuse("unknown issuer"))?;
    if !issuer.algorithms.contains(&header.alg) {
        return Err(refuse("algorithm not allowed for issuer"));
    }
    let kid = header.kid.as_deref();
    let mut key = issuer.keys.current().get(kid).cloned();
    if key.is_none() && issuer.keys.refresh_for_unknown_kid().await {
        key = issuer.keys.current().get(kid).cloned();
    }
    let key = key.ok_or_else(|| refuse("unknown kid"))?;
    if key.alg.is_some_and(|pinned| pinned != header.alg) {
        return Err(refuse("algorithm differs from the key's"));
    }

    let mut validation = Validation::new(header.alg);
    validation.leeway = issuer.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[&issuer.issuer]);
    let audiences = audiences.unwrap_or(&issuer.audiences);
    if audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(audiences);
    }
    let mut required: Vec<&str> = vec!["exp", "iss"];
    required.extend(issuer.required_claims.iter().map(String::as_str));
    if !audiences.is_empty() {
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);

    let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| match e
        .kind()
    {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => ProxyError::TokenExpired,
        _ => refuse("signature or claims invalid"),
    })?;
    for claim in &issuer.required_claims {
        if data.claims.get(claim).is_none_or(Value::is_null) {
            return Err(refuse("required claim missing"));
        }
    }
    Ok((issuer.as_ref(), data.claims))
}
