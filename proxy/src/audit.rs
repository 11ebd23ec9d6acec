//! The audit trail: every request — allowed, denied, limited, blocked, failed — leaves exactly
//! one [`AuditRecord`].
//!
//! The pipeline's `logging` phase (which every request passes exactly once, error responses
//! included) builds the record and hands it to [`Auditor::submit`]: a bounded queue, never a
//! sink, so no request waits on a disk or on Redis — only, under `on_full: block`, on room in
//! the queue. A writer thread ([`writer`]) takes batches, seals each record into a SHA-256 hash
//! chain ([`chain`]) and writes the sinks: a JSONL file rotated by size and age ([`file`]),
//! stdout, a Redis Stream ([`redis_stream`]). Graceful shutdown calls [`Auditor::flush`] after the
//! drain, so every response a client received has its record on disk before the process exits.
//!
//! With `audit.checkpoint` set, the writer also seals signed checkpoints into the chain
//! ([`checkpoint`]), so that `palisade audit verify FILE… --public-key KEY` detects a rewritten
//! file, not only an edited line.
//!
//! `palisade audit verify FILE…` checks a chain; `palisade audit tail` follows decisions.

pub mod batch;
pub mod chain;
pub mod checkpoint;
pub mod file;
mod line;
pub mod record;
pub mod redis_stream;
pub mod spec;
pub mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::FieldError;
use crate::telemetry::audit::AuditMetrics;
pub use record::{AuditRecord, RecordFacts, StreamFacts};
pub use spec::{AuditSpec, CheckpointSpec, OnFull, OnSinkFailure};
use writer::{Msg, Writer};

/// When the file sink fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch.
    Batch,
    /// At most this long after a write.
    Every(Duration),
}

/// Validated file sink settings.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The active file (`{tmp}` resolved).
    pub path: PathBuf,
    /// Rotate at this size.
    pub max_bytes: u64,
    /// Rotate at this age.
    pub max_age: Duration,
    /// fsync policy.
    pub fsync: FsyncPolicy,
}

/// Validated checkpoint settings.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// The signing key file (`{tmp}` resolved).
    pub key_file: PathBuf,
    /// Create the key when missing.
    pub generate: bool,
    /// Records per checkpoint.
    pub every_records: u64,
    /// Longest time a record stays uncovered while the writer runs.
    pub every: Duration,
}

/// Validated audit settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The JSONL file sink.
    pub file: Option<FileSettings>,
    /// The stdout sink.
    pub stdout: bool,
    /// The Redis Stream sink.
    pub redis: Option<spec::RedisSinkSpec>,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Full-queue policy.
    pub on_full: OnFull,
    /// Sink-failure policy.
    pub on_sink_failure: OnSinkFailure,
    /// Largest batch.
    pub batch_max: usize,
    /// Signed checkpoints, when configured.
    pub checkpoint: Option<CheckpointSettings>,
}

impl Settings {
    /// Whether any sink is configured (otherwise auditing is off).
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.stdout || self.redis.is_some()
    }
}

/// Resolves a leading `{tmp}` in a file sink path to the OS temp dir.
pub fn resolve_path(path: &str) -> PathBuf {
    match path.strip_prefix("{tmp}") {
        Some(rest) => std::env::temp_dir().join(rest.trim_start_matches(['/', '\\'])),
        None => PathBuf::from(path),
    }
}

/// Validates the `audit` section, pushing every problem with its field path.
///
/// A missing checkpoint key file is only a note when `secrets` are optional (`--no-env`).
pub fn validate(
    spec: &AuditSpec,
    secrets: &mut crate::secrets::Secrets,
    errors: &mut Vec<FieldError>,
) -> Settings {
    let mut push = |path: &str, message: &str| {
        errors.push(FieldError {
            path: format!("audit.{path}"),
            message: message.into(),
        })
    };
    if spec.queue_capacity == 0 {
        push("queue_capacity", "must be at least 1");
    }
    if spec.batch_max == 0 {
        push("batch_max", "must be at least 1");
    }
    let file = spec.file.as_ref().map(|f| {
        if f.path.trim().is_empty() {
            push("file.path", "must not be empty");
        }
        if f.max_bytes == 0 {
            push("file.max_bytes", "must be greater than 0");
        }
        if f.max_age.is_zero() {
            push("file.max_age", "must be greater than 0");
        }
        let fsync = match f.fsync.as_str() {
            "batch" => FsyncPolicy::Batch,
            other => match humantime::parse_duration(other) {
                Ok(d) if !d.is_zero() => FsyncPolicy::Every(d),
                _ => {
                    push(
                        "file.fsync",
                        "expected `batch` or a duration such as `100ms`",
                    );
                    FsyncPolicy::Batch
                }
            },
        };
        FileSettings {
            path: resolve_path(&f.path),
            max_bytes: f.max_bytes,
            max_age: f.max_age,
            fsync,
        }
    });
    if let Some(r) = &spec.redis {
        if redis_stream::url_ok(&r.url).is_err() {
            push("redis.url", "expected redis://host:port[/db] or rediss://…");
        }
        if r.stream.is_empty() {
            push("redis.stream", "must not be empty");
        }
        if r.timeout.is_zero() {
            push("redis.timeout", "must be greater than 0");
        }
    }
    let checkpoint = spec.checkpoint.as_ref().map(|c| {
        let key_file = resolve_path(&c.key_file);
        if c.key_file.trim().is_empty() {
            push("checkpoint.key_file", "must not be empty");
        } else {
            match checkpoint::read_key_file(&key_file) {
                Ok(text) => {
                    if let Err(e) = checkpoint::CheckpointKey::from_pem(&text) {
                        push("checkpoint.key_file", &e);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && c.generate => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && secrets.tolerate_missing("audit.checkpoint.key_file", &c.key_file) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => push(
                    "checkpoint.key_file",
                    "no such file: create one with `palisade audit keygen FILE` (or set \
                     `generate: true` for development)",
                ),
                Err(e) => push("checkpoint.key_file", &format!("cannot read: {e}")),
            }
        }
        if c.every_records == 0 {
            push("checkpoint.every_records", "must be at least 1");
        }
        if c.every.is_zero() {
            push("checkpoint.every", "must be greater than 0");
        }
        CheckpointSettings {
            key_file,
            generate: c.generate,
            every_records: c.every_records.max(1),
            every: c.every.max(Duration::from_millis(1)),
        }
    });
    Settings {
        file,
        stdout: spec.stdout,
        redis: spec.redis.clone(),
        queue_capacity: spec.queue_capacity.max(1),
        on_full: spec.on_full,
        on_sink_failure: spec.on_sink_failure,
        batch_max: spec.batch_max.max(1),
        checkpoint,
    }
}

/// The request path's handle on the audit trail. Cheap to share; off when no sink is set.
pub struct Auditor {
    tx: Option<mpsc::Sender<Msg>>,
    on_full: OnFull,
    fail_closed: bool,
    healthy: Arc<AtomicBool>,
    metrics: AuditMetrics,
}

impl Auditor {
    /// Opens the sinks and starts the writer thread; an auditor that records nothing when no
    /// sink is configured.
    pub fn start(settings: &Settings, metrics: AuditMetrics) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let mut auditor = Self {
            tx: None,
            on_full: settings.on_full,
            fail_closed: settings.on_sink_failure == OnSinkFailure::FailClosed,
            healthy: healthy.clone(),
            metrics: metrics.clone(),
        };
        if !settings.enabled() {
            return Ok(auditor);
        }
        let writer = Writer::open(settings, healthy, metrics)?;
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        writer.spawn(settings, rx)?;
        if let Some(f) = &settings.file {
            tracing::info!(
                file = %f.path.display(),
                signed = settings.checkpoint.is_some(),
                "audit: writing the hash-chained trail"
            );
        }
        auditor.tx = Some(tx);
        Ok(auditor)
    }

    /// Whether records are kept at all.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether new requests must be refused: `fail_closed` and a sink failing now.
    pub fn refuses(&self) -> bool {
        self.fail_closed && self.tx.is_some() && !self.healthy.load(Ordering::Acquire)
    }

    /// Counts a request refused because of [`Auditor::refuses`].
    pub fn count_refused(&self) {
        self.metrics.audit_refused.inc();
    }

    /// Queues `record`: waits for room under `block`, drops (and counts) it under `drop`.
    pub async fn submit(&self, record: AuditRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        let msg = Msg::Record(Box::new(record));
        let sent = match self.on_full {
            OnFull::Block => tx.send(msg).await.is_ok(),
            OnFull::Drop => tx.try_send(msg).is_ok(),
        };
        if !sent {
            self.metrics.audit_dropped.inc();
        }
        self.metrics
            .audit_queue_depth
            .set((tx.max_capacity() - tx.capacity()) as i64);
    }

    /// Returns once every record queued before this call is written and synced (or the writer
    /// is gone). Graceful shutdown calls it after the drain.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
