//! [`KeyStore`]: one issuer's keys, fetched from a [`KeySource`] and swapped atomically.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::KeySet;

/// Where a [`KeyStore`] gets its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OIDC discovery from this issuer URL (`/.well-known/openid-configuration`, then its
    /// `jwks_uri`).
    Discovery(String),
    /// A JWKS URL.
    Url(String),
    /// A JWKS file.
    File(String),
    /// Fixed keys (HMAC secret, dev issuer, keys handed over in-process): never refetched.
    Static,
}

/// Called after every fetch with whether it succeeded.
type RefreshHook = Box<dyn Fn(bool) + Send + Sync>;

/// The cached keys of one issuer, swapped atomically when refreshed.
///
/// Reads ([`KeyStore::current`]) are lock-free. Fetches are single-flight: callers that need one
/// while another runs wait for it and use its keys.
pub struct KeyStore {
    source: KeySource,
    keys: ArcSwap<KeySet>,
    http: Option<reqwest::Client>,
    refetch_min_interval: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 of the last successful load (0 = never).
    loaded_ms: AtomicU64,
    /// Milliseconds since `epoch` + 1 of the last fetch attempt (0 = never).
    last_fetch_ms: AtomicU64,
    /// Fetch attempts so far: tells a waiting caller another one fetched meanwhile.
    fetches: AtomicU64,
    in_flight: tokio::sync::Mutex<()>,
    on_refresh: OnceLock<RefreshHook>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .field("keys", &self.keys.load().len())
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl KeyStore {
    /// A store that fetches from `source` over `http` (a client from
    /// [`crate::outbound::Trust::client_builder`]); it holds no keys until the first fetch.
    pub fn new(source: KeySource, refetch_min_interval: Duration, http: reqwest::Client) -> Self {
        Self {
            source,
            keys: ArcSwap::from_pointee(KeySet::default()),
            http: Some(http),
            refetch_min_interval,
            epoch: Instant::now(),
            loaded_ms: AtomicU64::new(0),
            last_fetch_ms: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            in_flight: tokio::sync::Mutex::new(()),
            on_refresh: OnceLock::new(),
        }
    }

    /// A store with fixed keys, loaded from the start and never refetched.
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            source: KeySource::Static,
            keys: ArcSwap::from_pointee(keys),
            http: None,
            refetch_min_interval: Duration::MAX,
            epoch: Instant::now(),
            // Loaded at `epoch`.
            loaded_ms: AtomicU64::new(1),
            last_fetch_ms: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            in_flight: tokio::sync::Mutex::new(()),
            on_refresh: OnceLock::new(),
        }
    }

    /// Calls `hook` after every fetch from now on with whether it succeeded (fixed keys are never
    /// fetched). Only the first hook set is kept.
    pub fn on_refresh(&self, hook: impl Fn(bool) + Send + Sync + 'static) {
        let _ = self.on_refresh.set(Box::new(hook));
    }

    /// Where the keys come from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Whether keys loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded_ms.load(Ordering::SeqCst) != 0
    }

    /// Time since the keys last loaded, `None` before the first load.
    pub fn age(&self) -> Option<Duration> {
        match self.loaded_ms.load(Ordering::SeqCst) {
            0 => None,
            at => Some(Duration::from_millis(self.now_ms().saturating_sub(at))),
        }
    }

    /// The current keys.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Fetches now (after any fetch already running); on failure the previous keys keep serving.
    /// Returns the number of keys.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _flight = self.in_flight.lock().await;
        self.fetch_counted().await
    }

    /// Makes sure keys are at hand and younger than `max_age`, fetching them when not. One caller
    /// fetches; concurrent callers wait for its keys. When the fetch fails the last keys keep
    /// serving (`Ok`), and a failed refresh is retried at most once per `refetch_min_interval`;
    /// `Err` only while no keys ever loaded.
    pub async fn ensure_fresh(&self, max_age: Duration) -> Result<(), String> {
        if self.is_fresh(max_age) {
            return Ok(());
        }
        let _flight = self.in_flight.lock().await;
        // Another caller may have fetched while this one waited.
        if self.is_fresh(max_age) {
            return Ok(());
        }
        // A failed fetch is retried at most once per interval, before the first load too: while
        // the IdP is down, callers get the last keys (or an error) at once instead of each
        // waiting for a fetch of its own.
        if !self.may_refetch(self.last_fetch_ms.load(Ordering::SeqCst)) {
            return if self.is_loaded() {
                Ok(())
            } else {
                Err("no keys yet: the last fetch failed, retried after refetch_min_interval".into())
            };
        }
        match self.fetch_counted().await {
            Ok(_) => Ok(()),
            Err(e) if self.is_loaded() => {
                tracing::warn!(error = %e, "key refresh failed; keeping the last keys");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Refetches for an unknown `kid`, unless a fetch happened within the minimum interval.
    /// Returns whether the keys may have changed since the call (a fetch ran, this caller's or
    /// one it waited for), i.e. whether looking the `kid` up again is worth it.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        if self.source == KeySource::Static
            || !self.may_refetch(self.last_fetch_ms.load(Ordering::SeqCst))
        {
            return false;
        }
        let seen = self.fetches.load(Ordering::SeqCst);
        let _flight = self.in_flight.lock().await;
        // Only one caller fetches; the others use the keys it got.
        if self.fetches.load(Ordering::SeqCst) != seen {
            return true;
        }
        // A fetch may have finished between the check above and the lock.
        if !self.may_refetch(self.last_fetch_ms.load(Ordering::SeqCst)) {
            return false;
        }
        if let Err(e) = self.fetch_counted().await {
            tracing::warn!(error = %e, "key refetch for unknown kid failed");
        }
        true
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn is_fresh(&self, max_age: Duration) -> bool {
        self.source == KeySource::Static || self.age().is_some_and(|age| age < max_age)
    }

    /// Whether `refetch_min_interval` has passed since the fetch at `last` (0 = never).
    fn may_refetch(&self, last: u64) -> bool {
        let min = u64::try_from(self.refetch_min_interval.as_millis()).unwrap_or(u64::MAX);
        last == 0 || self.now_ms().saturating_sub(last) >= min
    }

    /// Fetches (the caller holds `in_flight`) and reports the outcome to the hook.
    async fn fetch_counted(&self) -> Result<usize, String> {
        if self.source == KeySource::Static {
            return Ok(self.current().len());
        }
        let result = self.fetch().await;
        if let Some(hook) = self.on_refresh.get() {
            hook(result.is_ok());
        }
        result
    }

    async fn fetch(&self) -> Result<usize, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.last_fetch_ms.store(self.now_ms(), Ordering::SeqCst);
        let set = match &self.source {
            KeySource::Static => return Ok(self.current().len()),
            KeySource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("reading {path}: {e}"))?;
                key_set(&bytes)?
            }
            KeySource::Url(url) => key_set(&self.get(url).await?)?,
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
                key_set(&self.get(jwks_uri).await?)?
            }
        };
        let n = set.len();
        self.keys.store(Arc::new(set));
        self.loaded_ms.store(self.now_ms(), Ordering::SeqCst);
        Ok(n)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let http = self.http.as_ref().ok_or("fixed keys are never fetched")?;
        let resp = http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("fetching {url}: HTTP {}", resp.status()));
        }
        // A key set or discovery document is a few KiB: a larger answer is refused, not buffered.
        let too_large = || format!("reading {url}: more than {MAX_DOCUMENT_BYTES} bytes");
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The most bytes read of a JWKS or discovery document.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The usable keys of a JWKS document. A document that lists no key at all is the IdP's word
/// (e.g. every key revoked at once) and replaces the keys; one whose keys are all unusable here
/// (unsupported types) is an error, and the last keys keep serving.
fn key_set(json: &[u8]) -> Result<KeySet, String> {
    let set = KeySet::from_jwks(json)?;
    if set.is_empty() {
        let listed: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        if listed["keys"]
            .as_array()
            .is_some_and(|keys| !keys.is_empty())
        {
            return Err("the key set has no usable signing key".into());
        }
    }
    Ok(set)
}
