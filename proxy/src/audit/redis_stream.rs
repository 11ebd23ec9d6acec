//! The Redis Stream sink: every sealed record `XADD`ed as field `record`, `MAXLEN ~ n`.
//!
//! Many replicas may ship into one stream; each record keeps its replica's chain fields, so a
//! consumer can verify each replica's chain (group by the file it came from) and count records.
//! One pipelined round trip per batch, with a deadline; a failed batch is a sink error (counted,
//! and under `fail_closed` it refuses new requests until a batch succeeds). Failed batches are
//! not retried here: the file sink keeps the authoritative copy.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::batch::Batch;

/// The Redis Stream sink.
pub struct RedisSink {
    conn: ConnectionManager,
    stream: String,
    maxlen: u64,
    timeout: Duration,
}

impl RedisSink {
    /// Connects lazily (the first batch connects); must be called inside a tokio runtime.
    pub fn new(
        url: &str,
        stream: String,
        maxlen: u64,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(Self {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            stream,
            maxlen,
            timeout,
        })
    }

    /// Appends `lines` to the stream in one pipeline.
    pub async fn write(&mut self, lines: &Batch) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for line in lines.lines() {
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if self.maxlen > 0 {
                cmd.arg("MAXLEN").arg("~").arg(self.maxlen);
            }
            cmd.arg("*").arg("record").arg(line).ignore();
        }
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut self.conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// Whether `url` is a usable Redis URL (nothing is connected).
pub fn url_ok(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
