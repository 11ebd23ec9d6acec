//! State shared between replicas through Redis (standalone or Cluster): revoked token ids and
//! API keys.
//!
//! The request path never talks to Redis: each replica keeps in-process copies and pulls the
//! shared data every `sync_interval`, so a change reaches every replica within about one
//! interval. Revocations are a sorted set (`jti` → expiry, unix seconds); API keys a hash
//! (`id` → the JSON key record, hash only, never the secret).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;

use super::config::RevocationSpec;
use super::revocation::RevocationList;

enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A lazily (re)connecting link to a standalone Redis or a Cluster.
pub struct RedisLink {
    url: Option<String>,
    cluster: Vec<String>,
    conn: ArcSwapOption<tokio::sync::Mutex<Conn>>,
}

/// The Redis side of the revocation list.
pub struct SharedRevocations {
    spec: RevocationSpec,
    link: RedisLink,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl RedisLink {
    /// A link to `url` (standalone) or `cluster` (seed nodes); `None` when neither is set.
    pub fn new(url: Option<&str>, cluster: &[String]) -> Option<Self> {
        (url.is_some() || !cluster.is_empty()).then(|| Self {
            url: url.map(str::to_string),
            cluster: cluster.to_vec(),
            conn: ArcSwapOption::empty(),
        })
    }

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        match &self.url {
            Some(url) => {
                let client = redis::Client::open(url.as_str())?;
                Ok(Conn::Standalone(ConnectionManager::new(client).await?))
            }
            None => {
                let client = redis::cluster::ClusterClient::new(self.cluster.clone())?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Runs `cmd`, connecting (again) first when needed.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, redis::RedisError> {
        let conn = match self.conn.load_full() {
            Some(conn) => conn,
            None => {
                let fresh = std::sync::Arc::new(tokio::sync::Mutex::new(self.connect().await?));
                self.conn.store(Some(fresh.clone()));
                fresh
            }
        };
        let mut guard = conn.lock().await;
        let result = match &mut *guard {
            Conn::Standalone(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        };
        if result
            .as_ref()
            .is_err_and(|e| e.is_io_error() || e.is_connection_dropped())
        {
            // Reconnect on the next call.
            self.conn.store(None);
        }
        result
    }
}

impl SharedRevocations {
    /// Shared revocations per `spec`, or `None` when no Redis is configured.
    pub fn new(spec: &RevocationSpec) -> Option<Self> {
        Some(Self {
            spec: spec.clone(),
            link: RedisLink::new(spec.redis_url.as_deref(), &spec.redis_cluster)?,
        })
    }

    /// Records a revocation in Redis.
    pub async fn publish(&self, jti: &str, until: SystemTime) -> Result<(), redis::RedisError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&self.spec.key).arg(unix(until)).arg(jti);
        self.link.query::<i64>(&cmd).await.map(|_| ())
    }

    /// Pulls the shared list into `local` (and drops expired entries from Redis).
    pub async fn pull(&self, local: &RevocationList) -> Result<usize, redis::RedisError> {
        let now = unix(SystemTime::now());
        let mut trim = redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(&self.spec.key).arg("-inf").arg(now);
        self.link.query::<i64>(&trim).await?;
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range
            .arg(&self.spec.key)
            .arg(now)
            .arg("+inf")
            .arg("WITHSCORES");
        let entries: Vec<(String, u64)> = self.link.query(&range).await?;
        let n = entries.len();
        for (jti, until) in entries {
            if !local.is_revoked(&jti) {
                local.revoke(&jti, Some(super::unix_time(until)));
            }
        }
        Ok(n)
    }

    /// How often to pull.
    pub fn interval(&self) -> Duration {
        self.spec.sync_interval
    }
}
