//! The Redis backend: every counter of a request checked and consumed in one atomic Lua call.
//!
//! Keys are `<prefix>:{<scope value>}:<limit id>`. The `{hash tag}` is the scope value, so in a
//! Redis Cluster all counters keyed on one caller (every `principal`-scoped limit, route limits
//! per principal, the caller's daily quota) live in one slot and are checked in one atomic
//! script. Counters of different scope values (the caller's and a `global` or `route` counter)
//! hash to different slots; a single script cannot touch them together in a Cluster, so there
//! the request runs one script per slot concurrently and, if any slot refuses, refunds the
//! slots that consumed (`refund` mode of the same script). On a standalone server everything
//! is one script, whatever the tags. `docs/rate-limits.md` explains the trade-off.
//!
//! Connections: standalone uses redis-rs's `ConnectionManager` (reconnects by itself);
//! Cluster connects lazily in the background and is rebuilt after an I/O failure. Every call
//! has a deadline (`redis.timeout`); a late or failed call is a backend error for the caller
//! to handle per `on_failure`.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::Script;

use super::algorithm::Rule;
use super::policy::{RedisSettings, RedisTarget};
use super::spec::LimitKind;

/// The script: `take` checks all counters and consumes from all only if all pass.
const SCRIPT: &str = include_str!("redis.lua");

/// One counter of a request, as Redis sees it.
#[derive(Debug, Clone)]
pub struct RedisCheck {
    /// The scope value (the hash tag).
    pub tag: String,
    /// The limit id.
    pub id: String,
    /// Parameters for this caller.
    pub rule: Rule,
}

/// Per-counter result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisVerdict {
    /// Whether this counter let the request pass.
    pub passed: bool,
    /// Requests left.
    pub remaining: u64,
    /// Until full / window end.
    pub reset: Duration,
}

/// The outcome of one request's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOutcome {
    /// Whether every counter passed (and was consumed).
    pub allowed: bool,
    /// When the refused request could pass.
    pub retry_after: Duration,
    /// Per counter, in the order given.
    pub verdicts: Vec<RedisVerdict>,
}

/// Why Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisDown {
    /// No connection yet (still connecting, or the last attempt failed).
    #[error("not connected")]
    NotConnected,
    /// The call did not finish within `redis.timeout`.
    #[error("timed out")]
    Timeout,
    /// Redis answered with an error or the connection failed.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The reply was not the script's shape.
    #[error("unexpected reply")]
    Reply,
}

/// Both clients connect lazily and reconnect on their own (redis-rs's connection manager, and
/// its cluster client's slot refresh and per-node reconnection), so the proxy starts while Redis
/// is down and recovers when it returns without a state machine of its own.
pub(crate) enum Conn {
    /// One Redis server, through redis-rs's connection manager.
    Standalone(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// The client for `target`, connecting lazily (never here) with `timeout` per reply and at
    /// least 250 ms to connect; also used by the approvals store (`crate::approvals`).
    pub(crate) fn lazy(target: &RedisTarget, timeout: Duration) -> Result<Self, redis::RedisError> {
        let connect_timeout = timeout.max(Duration::from_millis(250));
        Ok(match target {
            RedisTarget::Standalone(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(200));
                Self::Standalone(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            RedisTarget::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .retries(1)
                    .build()?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(timeout);
                Self::Cluster(client.get_pending_async_connection_with_config(config))
            }
        })
    }
}

/// A shared Redis store.
pub struct RedisStore {
    conn: Conn,
    script: Script,
    prefix: String,
    timeout: Duration,
}

impl RedisStore {
    /// Prepares the client; connecting happens on first use (and again after failures), so the
    /// proxy starts even while Redis is down.
    pub fn new(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        let conn = Conn::lazy(&settings.target, settings.timeout)?;
        Ok(Self {
            conn,
            script: Script::new(SCRIPT),
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
        })
    }

    /// The Redis key of a counter.
    pub fn key(&self, tag: &str, id: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, escape_tag(tag), id)
    }

    /// Checks and (if all pass) consumes every counter in `checks`.
    pub async fn check(&self, checks: &[RedisCheck]) -> Result<RedisOutcome, RedisDown> {
        match &self.conn {
            Conn::Standalone(manager) => {
                let mut conn = manager.clone();
                self.run(&mut conn, "take", checks).await
            }
            Conn::Cluster(conn) => self.check_cluster(conn, checks).await,
        }
    }

    async fn check_cluster(
        &self,
        conn: &ClusterConnection,
        checks: &[RedisCheck],
    ) -> Result<RedisOutcome, RedisDown> {
        // Group by hash tag: same tag, same slot, one atomic script.
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, c) in checks.iter().enumerate() {
            groups.entry(c.tag.as_str()).or_default().push(i);
        }
        if groups.len() == 1 {
            return self.run(&mut conn.clone(), "take", checks).await;
        }
        let parts: Vec<(Vec<usize>, Vec<RedisCheck>)> = groups
            .into_values()
            .map(|idx| {
                let part = idx.iter().map(|&i| checks[i].clone()).collect();
                (idx, part)
            })
            .collect();
        let results = futures::future::join_all(parts.iter().map(|(_, part)| {
            let mut c = conn.clone();
            async move { self.run(&mut c, "take", part).await }
        }))
        .await;
        let mut outcome = RedisOutcome {
            allowed: true,
            retry_after: Duration::ZERO,
            verdicts: vec![
                RedisVerdict {
                    passed: false,
                    remaining: 0,
                    reset: Duration::ZERO
                };
                checks.len()
            ],
        };
        let mut first_error = None;
        for ((idx, _), r) in parts.iter().zip(&results) {
            match r {
                Ok(o) => {
                    outcome.allowed &= o.allowed;
                    outcome.retry_after = outcome.retry_after.max(o.retry_after);
                    for (&i, v) in idx.iter().zip(&o.verdicts) {
                        outcome.verdicts[i] = *v;
                    }
                }
                Err(_) => outcome.allowed = false,
            }
        }
        if !outcome.allowed {
            // Undo what the slots that passed consumed: a refused request spends nothing.
            let refunds = parts
                .iter()
                .zip(&results)
                .filter(|(_, r)| matches!(r, Ok(o) if o.allowed))
                .map(|((_, part), _)| {
                    let mut c = conn.clone();
                    async move { self.run(&mut c, "refund", part).await }
                });
            for r in futures::future::join_all(refunds).await {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "rate limit refund failed");
                }
            }
        }
        for r in results {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }

    async fn run<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
        mode: &str,
        checks: &[RedisCheck],
    ) -> Result<RedisOutcome, RedisDown> {
        let mut call = self.script.prepare_invoke();
        call.arg(mode);
        for c in checks {
            call.key(self.key(&c.tag, &c.id));
            let kind = match c.rule.kind {
                LimitKind::Rate => "r",
                LimitKind::Quota => "q",
            };
            call.arg(kind)
                .arg(c.rule.interval_ns.div_ceil(1000).max(1))
                .arg(c.rule.capacity);
        }
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, call.invoke_async(conn))
            .await
            .map_err(|_| RedisDown::Timeout)??;
        if reply.len() != 2 + 2 * checks.len() {
            return Err(RedisDown::Reply);
        }
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(RedisOutcome {
            allowed: reply[0] == 1,
            retry_after: us(reply[1]),
            verdicts: reply[2..]
                .chunks_exact(2)
                .map(|p| RedisVerdict {
                    passed: p[0] >= 0,
                    remaining: u64::try_from(p[0]).unwrap_or(0),
                    reset: us(p[1]),
                })
                .collect(),
        })
    }
}

/// Escapes what would end or nest a hash tag (`{`, `}`) and the escape itself, so distinct
/// scope values never share a key.
fn escape_tag(tag: &str) -> std::borrow::Cow<'_, str> {
    if !tag.contains(['{', '}', '%']) {
        return tag.into();
    }
    tag.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .into()
}
