//! An issuer's verification keys: fetched (OIDC discovery, JWKS URL or file) or configured (HMAC
//! secret), cached with a TTL, refetched on an unknown `kid` at most once per interval, and kept
//! serving when the IdP is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::config::KeySourceSpec;

/// One usable key.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key.
    pub key: Arc<DecodingKey>,
    /// The algorithm the JWK pins (`alg`), if it does.
    pub alg: Option<Algorithm>,
}

/// Keys of one issuer by `kid` (the empty string for a key without `kid`).
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
}

impl KeySet {
    /// Parses a JWKS document, skipping keys this proxy cannot use (e.g. `use: enc`, unknown
    /// `kty`) instead of rejecting the whole set.
    pub fn from_jwks(json: &[u8]) -> Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc["keys"]
            .as_array()
            .ok_or_else(|| "JWKS has no `keys` array".to_string())?;
        let mut by_kid = HashMap::new();
        for raw in keys {
            if raw
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk.common.key_algorithm.and_then(key_algorithm);
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            by_kid.insert(
                kid,
                VerifyKey {
                    key: Arc::new(key),
                    alg,
                },
            );
        }
        Ok(Self { by_kid })
    }

    /// A set with one HMAC secret.
    pub fn hmac(secret: &[u8]) -> Self {
        let mut by_kid = HashMap::new();
        by_kid.insert(
            String::new(),
            VerifyKey {
                key: Arc::new(DecodingKey::from_secret(secret)),
                alg: None,
            },
        );
        Self { by_kid }
    }

    /// The key for `kid`; a token without `kid` matches only when the set has a single key.
    pub fn get(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None if self.by_kid.len() == 1 => self.by_kid.values().next(),
            None => None,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Where a [`KeyStore`] gets its keys.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// OIDC discovery from this issuer URL.
    Discovery(String),
    /// A JWKS URL.
    Url(String),
    /// A JWKS file.
    File(String),
    /// Fixed keys (HMAC secret, dev issuer): never refetched.
    Static,
}

impl KeySource {
    /// The source for a configured issuer.
    pub fn from_spec(spec: &KeySourceSpec, issuer: &str) -> Self {
        if let Some(url) = &spec.jwks_url {
            Self::Url(url.clone())
        } else if let Some(path) = &spec.jwks_file {
            Self::File(path.clone())
        } else if spec.discovery {
            Self::Discovery(issuer.to_string())
        } else {
            Self::Static
        }
    }
}

/// The cached keys of one issuer, swapped atomically when refreshed.
pub struct KeyStore {
    source: KeySource,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    /// Milliseconds since `epoch` of the last fetch attempt (0 = never).
    last_fetch_ms: AtomicU64,
    epoch: Instant,
    refetch_min_interval: Duration,
    http: reqwest::Client,
    /// `palisade_jwks_refreshes_total{issuer,result}` children (`success`, `failure`), once the
    /// metrics are registered.
    refreshes: std::sync::OnceLock<(prometheus::IntCounter, prometheus::IntCounter)>,
}

impl KeyStore {
    /// A store that fetches from `source`.
    pub fn new(source: KeySource, refetch_min_interval: Duration, http: reqwest::Client) -> Self {
        Self {
            source,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            last_fetch_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            refetch_min_interval,
            http,
            refreshes: std::sync::OnceLock::new(),
        }
    }

    /// Counts every fetch from now on in `success` / `failure` (fixed keys are never fetched).
    pub fn count_refreshes(
        &self,
        success: prometheus::IntCounter,
        failure: prometheus::IntCounter,
    ) {
        let _ = self.refreshes.set((success, failure));
    }

    /// A store with fixed keys.
    pub fn fixed(keys: KeySet, http: reqwest::Client) -> Self {
        let store = Self::new(KeySource::Static, Duration::MAX, http);
        store.keys.store(Arc::new(keys));
        store.loaded.store(true, Ordering::SeqCst);
        store
    }

    /// Whether keys loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// The current keys.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Fetches now; on failure the previous keys keep serving.
    pub async fn refresh(&self) -> Result<usize, String> {
        let result = self.fetch().await;
        if let (Some((success, failure)), false) = (
            self.refreshes.get(),
            matches!(self.source, KeySource::Static),
        ) {
            match &result {
                Ok(_) => success.inc(),
                Err(_) => failure.inc(),
            }
        }
        result
    }

    async fn fetch(&self) -> Result<usize, String> {
        self.last_fetch_ms.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::SeqCst,
        );
        let set = match &self.source {
            KeySource::Static => return Ok(self.current().len()),
            KeySource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("reading {path}: {e}"))?;
                KeySet::from_jwks(&bytes)?
            }
            KeySource::Url(url) => KeySet::from_jwks(&self.get(url).await?)?,
            KeySource::Discovery(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc: serde_json::Value = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|e| format!("discovery document is not JSON: {e}"))?;
                let jwks_uri = doc["jwks_uri"]
                    .as_str()
                    .ok_or("discovery document has no jwks_uri")?;
                KeySet::from_jwks(&self.get(jwks_uri).await?)?
            }
        };
        if set.is_empty() {
            return Err("the key set has no usable signing key".into());
        }
        let n = set.len();
        self.keys.store(Arc::new(set));
        self.loaded.store(true, Ordering::SeqCst);
        Ok(n)
    }

    /// Refetches for an unknown `kid`, unless a fetch happened within the minimum interval.
    /// Returns whether a fetch ran.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        if matches!(self.source, KeySource::Static) {
            return false;
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_fetch_ms.load(Ordering::SeqCst);
        let min = self.refetch_min_interval.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < min {
            return false;
        }
        // Only one caller wins the slot; the others use whatever keys are there.
        if self
            .last_fetch_ms
            .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "key refetch for unknown kid failed");
        }
        true
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("fetching {url}: HTTP {}", resp.status()));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?;
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_keeps_signing_keys_and_skips_the_rest() {
        let json = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec1","alg":"ES256","use":"sig",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"enc1","use":"enc",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let set = KeySet::from_jwks(json).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.get(Some("ec1")).unwrap().alg, Some(Algorithm::ES256));
        assert!(set.get(Some("enc1")).is_none());
        assert!(
            set.get(None).is_some(),
            "a single key serves tokens without kid"
        );
        assert!(KeySet::from_jwks(b"{}").is_err());
    }

    #[tokio::test]
    async fn fetches_are_counted_by_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let signer = crate::authn::signer::Signer::generate().unwrap();
        std::fs::write(&path, serde_json::to_vec(&signer.jwks()).unwrap()).unwrap();
        let store = KeyStore::new(
            KeySource::File(path.to_string_lossy().into_owned()),
            Duration::ZERO,
            crate::outbound::Trust::default()
                .client_builder()
                .build()
                .unwrap(),
        );
        let (ok, failed) = (
            prometheus::IntCounter::new("ok", "ok").unwrap(),
            prometheus::IntCounter::new("failed", "failed").unwrap(),
        );
        store.count_refreshes(ok.clone(), failed.clone());
        assert_eq!(store.refresh().await, Ok(1));
        std::fs::remove_file(&path).unwrap();
        assert!(store.refresh().await.is_err());
        assert_eq!((ok.get(), failed.get()), (1, 1));
        // The old keys keep serving after the failed fetch.
        assert_eq!(store.current().len(), 1);
    }
}
