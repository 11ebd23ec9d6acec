//! [`RedisApprovals`]: approvals in Redis, standalone or Cluster — shared by every replica and
//! surviving restarts. One Lua script (`redis.lua`) runs each step of [`super::store`]
//! atomically; every key starts with the hash tag `{<key_prefix>}`, so a Cluster keeps them in
//! one slot. Every call has a deadline; a failure is [`StoreDown`] and the held request is
//! refused (`APPROVAL_UNAVAILABLE`): an approval is never assumed.

use std::time::Duration;

use redis::Script;

use super::record::Approval;
use super::spec::RedisSettings;
use super::store::{Decided, Opened, Taken, RETAIN_MS};
use crate::ratelimit::redis::Conn;

const SCRIPT: &str = include_str!("redis.lua");

/// Redis did not answer in time, or answered something unusable.
#[derive(Debug, thiserror::Error)]
pub enum StoreDown {
    /// The call did not finish within `approvals.redis.timeout`.
    #[error("approval store timed out")]
    Timeout,
    /// Redis answered with an error.
    #[error("approval store: {0}")]
    Redis(#[from] redis::RedisError),
    /// The answer was not what the script returns.
    #[error("approval store: unexpected reply")]
    Reply,
}

/// The Redis approval store.
pub struct RedisApprovals {
    conn: Conn,
    script: Script,
    base: String,
    timeout: Duration,
}

impl RedisApprovals {
    /// Prepares the client; it connects on first use (the proxy starts while Redis is down).
    pub fn new(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        let conn = Conn::lazy(&settings.target, settings.timeout)?;
        Ok(Self {
            conn,
            script: Script::new(SCRIPT),
            base: format!("{{{}}}", settings.key_prefix),
            timeout: settings.timeout,
        })
    }

    /// Runs the script in `mode` with `args` after the common ones.
    async fn run(&self, mode: &str, now: u64, args: &[String]) -> Result<Vec<String>, StoreDown> {
        let mut call = self.script.prepare_invoke();
        call.key(format!("{}:pending", self.base))
            .arg(mode)
            .arg(&self.base)
            .arg(now)
            .arg(RETAIN_MS);
        for a in args {
            call.arg(a);
        }
        let invoke = async {
            match &self.conn {
                Conn::Standalone(m) => call.invoke_async(&mut m.clone()).await,
                Conn::Cluster(c) => call.invoke_async(&mut c.clone()).await,
            }
        };
        Ok(tokio::time::timeout(self.timeout, invoke)
            .await
            .map_err(|_| StoreDown::Timeout)??)
    }

    /// One reply `[tag, approval JSON]`.
    async fn pair(
        &self,
        mode: &str,
        now: u64,
        args: &[String],
    ) -> Result<(String, Option<Approval>), StoreDown> {
        let mut reply = self.run(mode, now, args).await?.into_iter();
        let tag = reply.next().ok_or(StoreDown::Reply)?;
        let body = reply.next().unwrap_or_default();
        let approval = if body.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&body).map_err(|_| StoreDown::Reply)?)
        };
        Ok((tag, approval))
    }

    /// [`super::store::Table::open`].
    pub async fn open(
        &self,
        fresh: &Approval,
        max: usize,
        per_principal: usize,
        now: u64,
    ) -> Result<Opened, StoreDown> {
        let json = serde_json::to_string(fresh).map_err(|_| StoreDown::Reply)?;
        let mut reply = self
            .run(
                "open",
                now,
                &[json, max.to_string(), per_principal.to_string()],
            )
            .await?
            .into_iter();
        let tag = reply.next().ok_or(StoreDown::Reply)?;
        let body = reply.next().ok_or(StoreDown::Reply)?;
        let parse = |s: &str| serde_json::from_str(s).map_err(|_| StoreDown::Reply);
        Ok(match tag.as_str() {
            "created" => Opened::Created(parse(&body)?),
            "existing" => Opened::Existing(parse(&body)?),
            "full" => Opened::Full {
                total: body == "total",
            },
            _ => return Err(StoreDown::Reply),
        })
    }

    /// [`super::store::Table::decide`].
    pub async fn decide(
        &self,
        id: &str,
        status: &str,
        approver: &str,
        reason: Option<&str>,
        hold_ms: u64,
        now: u64,
    ) -> Result<Decided, StoreDown> {
        let args = [
            id.to_string(),
            status.to_string(),
            approver.to_string(),
            reason.unwrap_or_default().to_string(),
            hold_ms.to_string(),
        ];
        Ok(match self.pair("decide", now, &args).await? {
            (t, Some(a)) if t == "done" => Decided::Done(a),
            (t, Some(a)) if t == "settled" => Decided::Settled(a),
            (t, None) if t == "missing" => Decided::Missing,
            _ => return Err(StoreDown::Reply),
        })
    }

    /// [`super::store::Table::take`].
    pub async fn take(&self, id: &str, now: u64) -> Result<Taken, StoreDown> {
        Ok(match self.pair("take", now, &[id.to_string()]).await? {
            (t, Some(a)) if t == "pending" => Taken::Pending(a),
            (t, Some(a)) if t == "outcome" => Taken::Outcome(a),
            (t, None) if t == "gone" => Taken::Gone,
            _ => return Err(StoreDown::Reply),
        })
    }

    /// [`super::store::Table::get`].
    pub async fn get(&self, id: &str, now: u64) -> Result<Option<Approval>, StoreDown> {
        Ok(self.pair("get", now, &[id.to_string()]).await?.1)
    }

    /// [`super::store::Table::list`].
    pub async fn list(&self, now: u64) -> Result<Vec<Approval>, StoreDown> {
        let mut out: Vec<Approval> = self
            .run("list", now, &[])
            .await?
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }
}
