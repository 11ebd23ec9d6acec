//! Who is calling: the proxy's signed `X-Palisade-Assertion`, verified against its JWKS.
//!
//! The orchestrator trusts no identity header on its own: the proxy removes client-supplied
//! `X-Palisade-*` headers and signs an ES256 assertion (≤ 60 s) naming the principal, its roles
//! and tenant. [`Verifier::verify`] checks signature, issuer and expiry and yields a [`Caller`].
//! Keys come either from the proxy's admin listener (`/.well-known/jwks.json`, fetched and
//! cached, refetched on an unknown `kid` at most once per interval) or are handed over directly
//! (the proxy's embedded orchestrator).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

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

/// Where verification keys come from.
enum KeySource {
    /// Keys handed over at start (the embedded orchestrator).
    Static(Arc<Keys>),
    /// Keys fetched from the proxy's admin listener. Requests read the cache lock-free; only a
    /// refresh takes the mutex (so concurrent unknown `kid`s cost one fetch).
    Url {
        url: String,
        http: reqwest::Client,
        ttl: Duration,
        refetch_min: Duration,
        cache: ArcSwapOption<Keys>,
        refresh: Mutex<()>,
    },
}

/// Decoding keys by `kid`, built once per key set.
struct Keys {
    keys: Vec<(Option<String>, DecodingKey)>,
    at: Instant,
}

impl Keys {
    fn new(set: &JwkSet) -> Self {
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        Self {
            keys,
            at: Instant::now(),
        }
    }

    /// The key named `kid` (the first key when the token names none).
    fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, key)| key),
            None => self.keys.first().map(|(_, key)| key),
        }
    }
}

/// Verifies assertions. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    source: KeySource,
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
        let source = match keys {
            Some(keys) => KeySource::Static(Arc::new(Keys::new(&keys))),
            None => KeySource::Url {
                url: cfg.jwks_url.clone(),
                http: trust
                    .client_builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                ttl: cfg.jwks_ttl,
                refetch_min: cfg.refetch_min_interval,
                cache: ArcSwapOption::empty(),
                refresh: Mutex::new(()),
            },
        };
        Self {
            inner: Arc::new(Inner {
                source,
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
        match &self.inner.source {
            KeySource::Static(_) => true,
            KeySource::Url { .. } => self.keys(None).await.is_ok(),
        }
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
        let keys = self.keys(header.kid.as_deref()).await?;
        let key = keys
            .find(header.kid.as_deref())
            .ok_or_else(|| IdentityError::Invalid("unknown key id".into()))?;
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
        let data = jsonwebtoken::decode::<AssertionClaims>(token, key, &validation)
            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
        Ok(Caller {
            principal: data.claims.sub,
            roles: data.claims.roles,
            tenant: data.claims.tenant,
            credential: credential.map(str::to_owned),
        })
    }

    /// The key set, fetched when stale or when `kid` is unknown (rate-limited).
    async fn keys(&self, kid: Option<&str>) -> Result<Arc<Keys>, IdentityError> {
        let (url, http, ttl, refetch_min, cache, refresh) = match &self.inner.source {
            KeySource::Static(keys) => return Ok(keys.clone()),
            KeySource::Url {
                url,
                http,
                ttl,
                refetch_min,
                cache,
                refresh,
            } => (url, http, *ttl, *refetch_min, cache, refresh),
        };
        let usable = |keys: &Keys| {
            let fresh = keys.at.elapsed() < ttl;
            let known = kid.is_none() || keys.find(kid).is_some();
            fresh && (known || keys.at.elapsed() < refetch_min)
        };
        if let Some(keys) = cache.load_full().filter(|k| usable(k)) {
            return Ok(keys);
        }
        let _refreshing = refresh.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(keys) = cache.load_full().filter(|k| usable(k)) {
            return Ok(keys);
        }
        match fetch(http, url).await {
            Ok(set) => {
                let keys = Arc::new(Keys::new(&set));
                cache.store(Some(keys.clone()));
                Ok(keys)
            }
            // Keep serving the last keys when a refresh fails.
            Err(e) => match cache.load_full() {
                Some(old) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the last keys");
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, IdentityError> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| IdentityError::Keys(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(IdentityError::Keys(format!(
            "{url} answered {}",
            resp.status()
        )));
    }
    resp.json::<JwkSet>()
        .await
        .map_err(|e| IdentityError::Keys(e.to_string()))
}

#[cfg(test)]
mod tests;
