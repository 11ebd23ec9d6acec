//! Where sessions live: in this process (one replica) or in Redis (every replica sees a
//! sign-in, a refresh and a logout at once). A session is keyed by a hash of its id, so the
//! store never holds what the cookie carries.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::shared::RedisLink;
use super::config::SessionStoreSpec;

/// One signed-in browser: the provider's tokens and the session's clock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    /// The current access token.
    pub access_token: String,
    /// When it was obtained (unix seconds).
    pub access_issued: u64,
    /// When it expires (unix seconds).
    pub access_expires: u64,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<String>,
    /// The ID token of the sign-in (the `id_token_hint` of logout).
    pub id_token: Option<String>,
    /// When the user signed in (unix seconds): the absolute lifetime counts from here.
    pub created: u64,
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The store key of session id `sid`.
fn key_of(sid: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(sid))
}

/// An in-process session.
pub struct Local {
    record: Arc<SessionRecord>,
    /// Last use (unix seconds): the idle lifetime counts from here.
    last_seen: std::sync::atomic::AtomicU64,
}

/// The session store.
pub enum SessionStore {
    /// In this process.
    Memory(dashmap::DashMap<String, Arc<Local>>),
    /// In Redis, under `prefix` + key, expiring after the idle lifetime (slid on each use).
    Redis {
        /// The connection.
        link: RedisLink,
        /// Key prefix.
        prefix: String,
    },
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(String);

impl SessionStore {
    /// The store `spec` names.
    pub fn new(spec: &SessionStoreSpec) -> Self {
        match RedisLink::new(spec.redis_url.as_deref(), &spec.redis_cluster) {
            Some(link) => Self::Redis {
                link,
                prefix: spec.key_prefix.clone(),
            },
            None => Self::Memory(dashmap::DashMap::new()),
        }
    }

    /// The live session `sid`, its idle clock reset; `None` when unknown or idle longer than
    /// `idle`.
    pub async fn get(
        &self,
        sid: &[u8],
        idle: Duration,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let key = key_of(sid);
        let now = unix_now();
        match self {
            Self::Memory(map) => {
                let Some(local) = map.get(&key).map(|e| e.value().clone()) else {
                    return Ok(None);
                };
                let last = local.last_seen.load(std::sync::atomic::Ordering::Relaxed);
                if now.saturating_sub(last) > idle.as_secs() {
                    map.remove(&key);
                    return Ok(None);
                }
                local
                    .last_seen
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                Ok(Some(local.record.clone()))
            }
            Self::Redis { link, prefix } => {
                // GETEX slides the idle lifetime in the same round trip.
                let mut cmd = redis::cmd("GETEX");
                cmd.arg(format!("{prefix}{key}"))
                    .arg("EX")
                    .arg(idle.as_secs().max(1));
                let json: Option<String> = link
                    .query(&cmd)
                    .await
                    .map_err(|e| StoreError(e.to_string()))?;
                Ok(json
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .map(Arc::new))
            }
        }
    }

    /// Stores (or replaces) session `sid`.
    pub async fn put(
        &self,
        sid: &[u8],
        record: SessionRecord,
        idle: Duration,
    ) -> Result<(), StoreError> {
        let key = key_of(sid);
        match self {
            Self::Memory(map) => {
                map.insert(
                    key,
                    Arc::new(Local {
                        record: Arc::new(record),
                        last_seen: unix_now().into(),
                    }),
                );
                Ok(())
            }
            Self::Redis { link, prefix } => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("{prefix}{key}"))
                    .arg(serde_json::to_string(&record).unwrap_or_default())
                    .arg("EX")
                    .arg(idle.as_secs().max(1));
                link.query::<()>(&cmd)
                    .await
                    .map_err(|e| StoreError(e.to_string()))
            }
        }
    }

    /// Replaces session `sid` only while it still exists: a refresh that finishes after a
    /// logout (here or on another replica) must not bring the session back. `Ok(false)` when
    /// the session was gone.
    pub async fn replace(
        &self,
        sid: &[u8],
        record: SessionRecord,
        idle: Duration,
    ) -> Result<bool, StoreError> {
        let key = key_of(sid);
        match self {
            Self::Memory(map) => match map.get_mut(&key) {
                Some(mut entry) => {
                    *entry = Arc::new(Local {
                        record: Arc::new(record),
                        last_seen: unix_now().into(),
                    });
                    Ok(true)
                }
                None => Ok(false),
            },
            Self::Redis { link, prefix } => {
                // `XX`: set only when the key exists (a deleted session stays deleted).
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("{prefix}{key}"))
                    .arg(serde_json::to_string(&record).unwrap_or_default())
                    .arg("EX")
                    .arg(idle.as_secs().max(1))
                    .arg("XX");
                let set: Option<String> = link
                    .query(&cmd)
                    .await
                    .map_err(|e| StoreError(e.to_string()))?;
                Ok(set.is_some())
            }
        }
    }

    /// Deletes session `sid` (everywhere, for Redis).
    pub async fn delete(&self, sid: &[u8]) -> Result<(), StoreError> {
        let key = key_of(sid);
        match self {
            Self::Memory(map) => {
                map.remove(&key);
                Ok(())
            }
            Self::Redis { link, prefix } => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(format!("{prefix}{key}"));
                link.query::<i64>(&cmd)
                    .await
                    .map(|_| ())
                    .map_err(|e| StoreError(e.to_string()))
            }
        }
    }

    /// Takes the refresh lock of session `sid` for at most `ttl`, so one replica refreshes it
    /// (Redis: `SET … NX PX` with a random owner token); in-process the per-session mutex
    /// suffices and this always succeeds. `None` when another holds it; else the token that
    /// releases it ([`Self::unlock_refresh`]).
    pub async fn lock_refresh(
        &self,
        sid: &[u8],
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Self::Memory(_) => Ok(Some(String::new())),
            Self::Redis { link, prefix } => {
                let owner = uuid::Uuid::new_v4().to_string();
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("{prefix}{}:refresh", key_of(sid)))
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64);
                let set: Option<String> = link
                    .query(&cmd)
                    .await
                    .map_err(|e| StoreError(e.to_string()))?;
                Ok(set.map(|_| owner))
            }
        }
    }

    /// Releases the refresh lock of `sid` if `owner` still holds it (it also expires by
    /// itself): a refresh slower than the lock's lifetime must not release the lock another
    /// replica took since, or two refreshes would run and a provider that detects refresh-token
    /// reuse would end the session.
    pub async fn unlock_refresh(&self, sid: &[u8], owner: &str) {
        if let Self::Redis { link, prefix } = self {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) else return 0 end",
            )
            .arg(1)
            .arg(format!("{prefix}{}:refresh", key_of(sid)))
            .arg(owner);
            if let Err(e) = link.query::<i64>(&cmd).await {
                tracing::debug!(error = %e, "refresh lock not released (it expires)");
            }
        }
    }

    /// Drops sessions idle longer than `idle` or older than `absolute` (in-process store; Redis
    /// expires its keys itself).
    pub fn purge(&self, idle: Duration, absolute: Duration) {
        if let Self::Memory(map) = self {
            let now = unix_now();
            map.retain(|_, local| {
                let last = local.last_seen.load(std::sync::atomic::Ordering::Relaxed);
                now.saturating_sub(last) <= idle.as_secs()
                    && now.saturating_sub(local.record.created) <= absolute.as_secs()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            access_token: "at".into(),
            access_issued: unix_now(),
            access_expires: unix_now() + 60,
            refresh_token: Some("rt".into()),
            id_token: None,
            created: unix_now(),
        }
    }

    #[tokio::test]
    async fn the_memory_store_keeps_deletes_and_expires_idle_sessions() {
        let store = SessionStore::new(&SessionStoreSpec::default());
        let idle = Duration::from_secs(60);
        store.put(b"sid", record(), idle).await.unwrap();
        assert_eq!(*store.get(b"sid", idle).await.unwrap().unwrap(), record());
        assert!(store.get(b"other", idle).await.unwrap().is_none());
        store.delete(b"sid").await.unwrap();
        assert!(store.get(b"sid", idle).await.unwrap().is_none());
        // An absolute lifetime of zero purges a session signed in a second ago.
        let mut old = record();
        old.created -= 2;
        store.put(b"old", old, idle).await.unwrap();
        store.purge(idle, Duration::from_secs(1));
        assert!(store.get(b"old", idle).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_refresh_never_brings_back_a_deleted_session() {
        let store = SessionStore::new(&SessionStoreSpec::default());
        let idle = Duration::from_secs(60);
        store.put(b"sid", record(), idle).await.unwrap();
        let mut refreshed = record();
        refreshed.access_token = "at2".into();
        assert!(store
            .replace(b"sid", refreshed.clone(), idle)
            .await
            .unwrap());
        assert_eq!(
            store.get(b"sid", idle).await.unwrap().unwrap().access_token,
            "at2"
        );
        // Logged out while the provider was answering: the late write is refused.
        store.delete(b"sid").await.unwrap();
        assert!(!store.replace(b"sid", refreshed, idle).await.unwrap());
        assert!(store.get(b"sid", idle).await.unwrap().is_none());
    }
}
