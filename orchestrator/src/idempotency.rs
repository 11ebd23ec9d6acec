//! `Idempotency-Key` on `POST /agent`: the first request with a key claims it for its run; a
//! repeat within the TTL learns that run's id instead of starting another.
//!
//! Two backends behind [`IdempotencyStore`]: [`InProcess`] (the embedded default; one replica)
//! and [`RedisIdempotency`] (`SET key run_id NX PX ttl` in a standalone Redis or a Redis
//! Cluster, shared by all replicas). Keys are
//! scoped to the caller with [`scoped_key`], so two principals using the same key never see each
//! other's runs.
//!
//! What a repeat gets (decided here, applied by the HTTP layer): when the claimed run has ended
//! (`finished` or `error`), its stored AG-UI events are replayed as the SSE answer (header
//! `Idempotent-Replayed: true`); while it is still running, or when it is not yet recorded,
//! `409 RUN_IN_PROGRESS` with its `runId`, so the client polls `GET /runs/{id}` or retries later;
//! when it was cancelled (its client went away mid-stream — the usual reason to retry), the key
//! passes to the new request, which runs. A repeat whose request differs from the first one's
//! (its [`fingerprint`]: everything but `runId`) is refused `422 IDEMPOTENCY_KEY_REUSED`, as the
//! IETF Idempotency-Key draft asks, instead of silently getting the first run's answer. The value
//! a key holds is a [`Holder`]: the run id with that fingerprint.
//!
//! ```
//! # async fn example() {
//! use std::time::Duration;
//! use palisade_orchestrator::idempotency::{Claim, IdempotencyStore, InProcess};
//!
//! let keys = InProcess::default();
//! let ttl = Duration::from_secs(60);
//! assert_eq!(keys.claim("alice|k1", "run-1", ttl).await.unwrap(), Claim::New);
//! assert_eq!(
//!     keys.claim("alice|k1", "run-2", ttl).await.unwrap(),
//!     Claim::Existing { run_id: "run-1".into() }
//! );
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free: it now belongs to the given run, which should start.
    New,
    /// The key already belongs to another run (within its TTL): do not start another run.
    Existing {
        /// The value the first claim stored: a run id, or a [`Holder`] in its stored form
        /// (decode it with [`Holder::decode`]).
        run_id: String,
    },
}

/// An idempotency backend that could not answer (the HTTP layer answers `503`).
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// Redis refused, failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Both `redis_url` and `redis_cluster` are set.
    #[error("idempotency: set at most one of `redis_url` and `redis_cluster`")]
    Config,
}

/// Idempotency keys with a TTL.
#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for `run_id` for `ttl`, atomically: of concurrent claims exactly one gets
    /// [`Claim::New`]. `run_id` is stored as given; the HTTP layer passes a [`Holder`]'s
    /// stored form (run id and request fingerprint).
    async fn claim(
        &self,
        key: &str,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Claim, IdempotencyError>;
    /// Frees `key` if it still holds exactly `run_id` (the value its claim stored; for a run
    /// that could not start, so a retry may run). Freeing a key held by another run does
    /// nothing.
    async fn release(&self, key: &str, run_id: &str) -> Result<(), IdempotencyError>;
}

/// Idempotency settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long a key stays claimed. Default `24h`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
    /// A standalone Redis (`redis://host:port[/db]`) shared by all replicas. Default none: keys
    /// are kept in this process (unless `redis_cluster` is set).
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each) shared by all replicas, instead
    /// of `redis_url`. Default none.
    pub redis_cluster: Vec<String>,
    /// Prefix of the Redis keys. Default `palisade:idem:`.
    pub key_prefix: String,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(86_400),
            redis_url: None,
            redis_cluster: Vec::new(),
            key_prefix: "palisade:idem:".to_owned(),
        }
    }
}

/// The configured backend: Redis when `redis_url` or `redis_cluster` is set (connecting lazily,
/// so the orchestrator starts while Redis is down), in-process otherwise.
pub fn open(cfg: &IdempotencyConfig) -> Result<Arc<dyn IdempotencyStore>, IdempotencyError> {
    Ok(match (&cfg.redis_url, cfg.redis_cluster.is_empty()) {
        (Some(_), false) => return Err(IdempotencyError::Config),
        (Some(url), true) => Arc::new(RedisIdempotency::new(url, &cfg.key_prefix)?),
        (None, false) => Arc::new(RedisIdempotency::cluster(
            &cfg.redis_cluster,
            &cfg.key_prefix,
        )?),
        (None, true) => Arc::new(InProcess::default()),
    })
}

/// What a claimed key holds: the run that claimed it and the fingerprint of that run's request,
/// stored as `{fingerprint}:{run_id}`. A value written before fingerprints were kept is a bare
/// run id and decodes with no fingerprint (it matches any request, as it did then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The run that claimed the key.
    pub run_id: String,
    /// [`fingerprint`] of that run's request, when it was recorded.
    pub fingerprint: Option<String>,
}

impl Holder {
    /// The holder for run `run_id` of a request with `fingerprint`.
    pub fn new(run_id: &str, fingerprint: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            fingerprint: Some(fingerprint.to_owned()),
        }
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        match &self.fingerprint {
            Some(fp) => format!("{fp}:{}", self.run_id),
            None => self.run_id.clone(),
        }
    }

    /// A stored value back (see the type's docs for values without a fingerprint).
    pub fn decode(value: &str) -> Self {
        match value.split_once(':') {
            Some((fp, run_id)) if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Self {
                    run_id: run_id.to_owned(),
                    fingerprint: Some(fp.to_owned()),
                }
            }
            _ => Self {
                run_id: value.to_owned(),
                fingerprint: None,
            },
        }
    }

    /// Whether a request with `fingerprint` repeats the holder's request (an unknown
    /// fingerprint counts as the same).
    pub fn same_request(&self, fingerprint: &str) -> bool {
        self.fingerprint
            .as_deref()
            .is_none_or(|fp| fp == fingerprint)
    }
}

/// A run request's fingerprint: SHA-256 (hex) of the parsed input serialized again without its
/// `runId` — a retry carries a new run id but the same thread, messages, tools, context, state
/// and forwarded properties. Serializing the parse makes key order and whitespace irrelevant.
pub fn fingerprint(input: &palisade_wire::agui::RunAgentInput) -> String {
    use sha2::{Digest, Sha256};
    let mut value = serde_json::to_value(input).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("runId");
    }
    let digest = Sha256::digest(serde_json::to_vec(&value).unwrap_or_default());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a claim uses: the caller's `Idempotency-Key` within its principal (`-` when
/// anonymous).
pub fn scoped_key(principal: Option<&str>, key: &str) -> String {
    // The principal is length-prefixed, so no choice of key can collide with another principal's.
    let principal = principal.unwrap_or("-");
    format!("{}:{principal}|{key}", principal.len())
}

/// The clock [`InProcess`] reads (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Keys held in this process's memory; expired keys are swept every 256 claims.
pub struct InProcess {
    keys: Mutex<HashMap<String, (String, Instant)>>,
    claims: AtomicU64,
    clock: Clock,
}

impl Default for InProcess {
    fn default() -> Self {
        Self::with_clock(Arc::new(Instant::now))
    }
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

impl InProcess {
    /// Keys expiring by `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
            claims: AtomicU64::new(0),
            clock,
        }
    }

    /// Keys currently held (expired ones may count until swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        // Every critical section leaves the map consistent, so a poisoned lock is taken over.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl IdempotencyStore for InProcess {
    async fn claim(
        &self,
        key: &str,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Claim, IdempotencyError> {
        let now = (self.clock)();
        let mut keys = self.lock();
        if self.claims.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            keys.retain(|_, (_, expires)| *expires > now);
        }
        if let Some((holder, expires)) = keys.get(key) {
            if *expires > now {
                return Ok(Claim::Existing {
                    run_id: holder.clone(),
                });
            }
        }
        keys.insert(key.to_owned(), (run_id.to_owned(), now + ttl));
        Ok(Claim::New)
    }

    async fn release(&self, key: &str, run_id: &str) -> Result<(), IdempotencyError> {
        let mut keys = self.lock();
        if keys.get(key).is_some_and(|(holder, _)| holder == run_id) {
            keys.remove(key);
        }
        Ok(())
    }
}

/// Deletes the key only while it still holds the releasing run's id.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Keys in Redis: `SET prefix+key run_id NX PX ttl`, then `GET` when taken. Every command
/// touches one key, so a Redis Cluster serves them like a standalone server.
pub struct RedisIdempotency {
    conn: RedisConn,
    prefix: String,
}

/// A standalone connection (reconnects by itself) or a cluster connection made on first use.
enum RedisConn {
    Standalone(ConnectionManager),
    Cluster(Box<ClusterSlot>),
}

/// The cluster client and its connection, made once on first use.
struct ClusterSlot {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl std::fmt::Debug for RedisIdempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotency")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The time limit of connecting and of each command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisIdempotency {
    /// A client for the standalone Redis at `url`; it connects on first use and reconnects after
    /// failures.
    pub fn new(url: &str, prefix: &str) -> Result<Self, IdempotencyError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        Ok(Self::with(
            RedisConn::Standalone(ConnectionManager::new_lazy_with_config(client, config)?),
            prefix,
        ))
    }

    /// A client for the Redis Cluster seeded by `nodes`; it connects on first use.
    pub fn cluster(nodes: &[String], prefix: &str) -> Result<Self, IdempotencyError> {
        let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(REDIS_TIMEOUT)
            .response_timeout(REDIS_TIMEOUT)
            .retries(1)
            .build()?;
        Ok(Self::with(
            RedisConn::Cluster(Box::new(ClusterSlot {
                client,
                conn: tokio::sync::OnceCell::new(),
            })),
            prefix,
        ))
    }

    fn with(conn: RedisConn, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// Runs `cmd` on whichever connection this is.
    async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, IdempotencyError> {
        Ok(match &self.conn {
            RedisConn::Standalone(conn) => cmd.query_async(&mut conn.clone()).await?,
            RedisConn::Cluster(slot) => {
                let conn = slot
                    .conn
                    .get_or_try_init(|| slot.client.get_async_connection())
                    .await?;
                cmd.query_async(&mut conn.clone()).await?
            }
        })
    }
}

#[async_trait::async_trait]
impl IdempotencyStore for RedisIdempotency {
    async fn claim(
        &self,
        key: &str,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Claim, IdempotencyError> {
        let key = format!("{}{key}", self.prefix);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(run_id).arg("NX").arg("PX").arg(ttl_ms);
        let mut get = redis::cmd("GET");
        get.arg(&key);
        // The key can expire between a refused SET and the GET; then claim again (bounded).
        for _ in 0..3 {
            let taken: Option<String> = self.query(&set).await?;
            if taken.is_some() {
                return Ok(Claim::New);
            }
            let holder: Option<String> = self.query(&get).await?;
            if let Some(run_id) = holder {
                return Ok(Claim::Existing { run_id });
            }
        }
        Err(IdempotencyError::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "idempotency key flapped between SET NX and GET",
        ))))
    }

    async fn release(&self, key: &str, run_id: &str) -> Result<(), IdempotencyError> {
        // EVAL (not EVALSHA): one round trip, and no NOSCRIPT retry on a fresh node.
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE)
            .arg(1)
            .arg(format!("{}{key}", self.prefix))
            .arg(run_id);
        let _: i64 = self.query(&eval).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
