//! Who is calling: the proxy's signed `X-Palisade-Assertion`, verified against its JWKS.
//!
//! The orchestrator trusts no identity header on its own: the proxy removes client-supplied
//! `X-Palisade-*` headers and signs an ES256 assertion (≤ 60 s) naming the principal, its roles
//! and tenant. [`Verifier::verify`] checks signature, issuer and expiry and yields a [`Caller`].
//! Keys live in a shared [`KeyStore`] (the proxy's own): fetched from the proxy's admin listener
//! (`/.well-known/jwks.json`) on first use, refreshed when older than `jwks_ttl`, refetched on an
//! unknown `kid` at most once per `refetch_min_interval`, the last keys kept when a refresh
//! fails; or handed over directly (the proxy's embedded orchestrator).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Validation};
use palisade_wire::jwks::{KeySet, KeySource, KeyStore, VerifyKey};
use serde::Deserialize;

use crate::config::IdentityConfig;

/// The verified caller of a run, as the proxy vouched for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The Cedar entity uid, e.g. `User::"https://idp|alice"`; empty when unverified.
    pub principal: String,
    /// The principal's roles.
    pub roles: Vec<String>,
    /// The principal's tenant.
    pub tenant: Option<String>,
    /// The credential the caller presented to the proxy (`Authorization` header value), when the
    /// proxy route forwards it (`forward_credentials: true`). MCP calls back through the proxy
    /// present it, so the proxy decides them for the same principal.
    pub credential: Option<String>,
}

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why an assertion was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No `X-Palisade-Assertion` header.
    #[error("missing X-Palisade-Assertion: call the orchestrator through the Palisade proxy")]
    Missing,
    /// Signature, issuer, expiry or shape is wrong.
    #[error("invalid assertion: {0}")]
    Invalid(String),
    /// The proxy's keys could not be fetched.
    #[error("cannot fetch the proxy's JWKS: {0}")]
    Keys(String),
}

/// The claims of an assertion the orchestrator reads.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
}

/// Verifies assertions. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeyStore,
    /// Keys older than this are refetched before use.
    ttl: Duration,
    issuer: String,
    audiences: Vec<String>,
    require: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("require", &self.inner.require)
            .finish()
    }
}

impl Verifier {
    /// A verifier fetching keys from `cfg.jwks_url` (over a client trusting `trust`), or using
    /// `keys` when given.
    pub fn new(cfg: &IdentityConfig, keys: Option<JwkSet>, trust: &crate::tls::Trust) -> Self {
        // Either failure below leaves no key: every assertion is refused (fail closed), said once.
        let no_keys = |why: String| {
            tracing::error!(error = %why, "identity: no verification keys; assertions are refused");
            KeyStore::fixed(KeySet::default())
        };
        let keys = match keys {
            Some(set) => match serde_json::to_vec(&set)
                .map_err(|e| e.to_string())
                .and_then(|json| KeySet::from_jwks(&json))
            {
                Ok(parsed) => KeyStore::fixed(parsed),
                Err(e) => no_keys(format!("the key set handed over: {e}")),
            },
            None => match trust
                .client_builder()
                .timeout(Duration::from_secs(5))
                .build()
            {
                Ok(http) => KeyStore::new(
                    KeySource::Url(cfg.jwks_url.clone()),
                    cfg.refetch_min_interval,
                    http,
                ),
                Err(e) => no_keys(format!("the JWKS client: {e}")),
            },
        };
        Self {
            inner: Arc::new(Inner {
                keys,
                ttl: cfg.jwks_ttl,
                issuer: cfg.issuer.clone(),
                audiences: cfg.audiences.clone(),
                require: cfg.require_assertion,
            }),
        }
    }

    /// Whether runs without an assertion are refused.
    pub fn required(&self) -> bool {
        self.inner.require
    }

    /// Ready when keys are at hand (static, or fetched once).
    pub async fn ready(&self) -> bool {
        if !self.inner.require {
            return true;
        }
        self.inner.keys.ensure_fresh(self.inner.ttl).await.is_ok()
    }

    /// The caller named by `assertion`; `credential` is the forwarded `Authorization` header.
    /// Without an assertion and with `require_assertion: false`, an anonymous caller.
    pub async fn verify(
        &self,
        assertion: Option<&str>,
        credential: Option<&str>,
    ) -> Result<Caller, IdentityError> {
        let Some(token) = assertion else {
            if self.inner.require {
                return Err(IdentityError::Missing);
            }
            return Ok(Caller {
                credential: credential.map(str::to_owned),
                ..Caller::default()
            });
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(IdentityError::Invalid(format!(
                "algorithm {:?} is not ES256",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref()).await?;
        if key.alg.is_some_and(|pinned| pinned != Algorithm::ES256) {
            return Err(IdentityError::Invalid(
                "the key is pinned to another algorithm".into(),
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.inner.issuer]);
        // The audience is the proxy route's name: checked when routes are listed.
        if self.inner.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.inner.audiences);
        }
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<AssertionClaims>(token, &key.key, &validation)
            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
        Ok(Caller {
            principal: data.claims.sub,
            roles: data.claims.roles,
            tenant: data.claims.tenant,
            credential: credential.map(str::to_owned),
        })
    }

    /// The key named `kid` (a token without `kid` matches a single-key set only): keys are
    /// fetched when missing or older than the TTL, and refetched once for an unknown `kid`
    /// (rate-limited by `refetch_min_interval`).
    async fn key(&self, kid: Option<&str>) -> Result<VerifyKey, IdentityError> {
        let store = &self.inner.keys;
        store
            .ensure_fresh(self.inner.ttl)
            .await
            .map_err(IdentityError::Keys)?;
        if let Some(key) = store.current().get(kid) {
            return Ok(key.clone());
        }
        if store.refresh_for_unknown_kid().await {
            if let Some(key) = store.current().get(kid) {
                return Ok(key.clone());
            }
        }
        Err(IdentityError::Invalid("unknown key id".into()))
    }
}

#[cfg(test)]
mod tests;
