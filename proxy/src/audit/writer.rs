//! The writer: one thread that takes records from the bounded queue in batches, seals them into
//! the hash chain, and writes every configured sink.
//!
//! It runs on its own thread with a small current-thread runtime, so blocking file writes and
//! fsyncs never stall a data-plane or admin worker. Per batch: seal, write the file, fsync
//! (policy `batch`) or schedule one (policy `every N ms`), write stdout, `XADD` to Redis. A
//! [`Msg::Flush`] is answered once everything queued before it is written and synced — graceful
//! shutdown waits for that before the process exits.
//!
//! With `audit.checkpoint` set it also seals signed checkpoints ([`super::checkpoint`]) into the
//! chain: after a batch that brings the uncovered records to `every_records`, when `every` has
//! passed since the first uncovered record, into the batch that makes the file rotate (so a
//! closed file ends with one), at every flush and when the writer stops. They go to every sink,
//! like records — the Redis Stream copy keeps the signed heads too.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

use super::batch::Batch;
use super::chain::ChainHead;
use super::checkpoint::{CheckpointKey, Reason};
use super::file::FileSink;
use super::redis_stream::RedisSink;
use super::{AuditRecord, FsyncPolicy, Settings};
use crate::telemetry::audit::AuditMetrics;

/// What travels on the queue.
pub enum Msg {
    /// A record to write.
    Record(Box<AuditRecord>),
    /// Answer when everything before this message is written and synced.
    Flush(oneshot::Sender<()>),
}

/// The writer's sinks and chain state.
pub struct Writer {
    file: Option<FileSink>,
    stdout: bool,
    redis: Option<RedisSink>,
    head: ChainHead,
    fsync: FsyncPolicy,
    batch_max: usize,
    healthy: Arc<AtomicBool>,
    metrics: AuditMetrics,
    /// `palisade_audit_records_total` of each sink, looked up once.
    written: Written,
    /// Lines the file sink failed to take, retried first on the next batch.
    pending: Batch,
    pending_max: usize,
    /// The batch being sealed, its buffers kept from one batch to the next.
    lines: Batch,
    unsynced_since: Option<Instant>,
    checkpoints: Option<Checkpoints>,
}

/// The records-written counters of the sinks.
struct Written {
    file: IntCounter,
    stdout: IntCounter,
    redis: IntCounter,
}

/// The checkpoint state: the key, the policy, and what is not covered yet.
struct Checkpoints {
    key: CheckpointKey,
    every_records: u64,
    every: std::time::Duration,
    /// Records sealed since the last checkpoint.
    uncovered: u64,
    /// When the first of them was sealed.
    uncovered_since: Option<Instant>,
}

impl Writer {
    /// Opens the sinks of `settings`; returns the writer (not running yet).
    pub fn open(
        settings: &Settings,
        healthy: Arc<AtomicBool>,
        metrics: AuditMetrics,
    ) -> std::io::Result<Self> {
        let (file, head) = match &settings.file {
            Some(f) => {
                let (sink, head) = FileSink::open(&f.path, f.max_bytes, f.max_age)?;
                (Some(sink), head)
            }
            None => (None, ChainHead::default()),
        };
        let checkpoints = match &settings.checkpoint {
            Some(c) => Some(Checkpoints {
                key: CheckpointKey::load_or_generate(&c.key_file, c.generate)?,
                every_records: c.every_records,
                every: c.every,
                // A continued chain may end in records no checkpoint covers (the last run
                // crashed): the first checkpoint of this run covers them too.
                uncovered: u64::from(head.seq > 0),
                uncovered_since: (head.seq > 0).then(Instant::now),
            }),
            None => None,
        };
        let written = Written {
            file: metrics.audit_records.with_label_values(&["file"]),
            stdout: metrics.audit_records.with_label_values(&["stdout"]),
            redis: metrics.audit_records.with_label_values(&["redis"]),
        };
        Ok(Self {
            file,
            stdout: settings.stdout,
            redis: None,
            head,
            fsync: settings
                .file
                .as_ref()
                .map_or(FsyncPolicy::Batch, |f| f.fsync),
            batch_max: settings.batch_max,
            healthy,
            metrics,
            written,
            pending: Batch::default(),
            pending_max: settings.queue_capacity,
            lines: Batch::default(),
            unsynced_since: None,
            checkpoints,
        })
    }

    /// Runs on a new thread until every sender is gone; returns the thread's handle.
    pub fn spawn(
        mut self,
        settings: &Settings,
        mut rx: mpsc::Receiver<Msg>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let redis = settings.redis.clone();
        std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "audit writer: no runtime; records are lost");
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Some(r) = redis {
                        match RedisSink::new(&r.url, r.stream, r.maxlen, r.timeout) {
                            Ok(sink) => self.redis = Some(sink),
                            Err(e) => {
                                tracing::error!(error = %e, "audit: redis sink unusable");
                                self.sink_failed("redis");
                            }
                        }
                    }
                    self.run(&mut rx).await;
                });
            })
    }

    async fn run(&mut self, rx: &mut mpsc::Receiver<Msg>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        loop {
            let deadline = match (self.sync_deadline(), self.checkpoint_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let received = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(
                        deadline.into(),
                        rx.recv_many(&mut batch, self.batch_max),
                    )
                    .await
                    {
                        Ok(n) => n,
                        Err(_) => {
                            if self
                                .checkpoint_deadline()
                                .is_some_and(|d| d <= Instant::now())
                            {
                                let mut lines = Batch::default();
                                self.checkpoint_into(&mut lines, Reason::Interval);
                                self.write(&mut lines).await;
                                if self.fsync == FsyncPolicy::Batch {
                                    self.sync();
                                }
                            }
                            if self.sync_deadline().is_some_and(|d| d <= Instant::now()) {
                                self.sync();
                            }
                            continue;
                        }
                    }
                }
                None => rx.recv_many(&mut batch, self.batch_max).await,
            };
            if received == 0 {
                // Every sender is gone: the proxy is stopping.
                let mut lines = Batch::default();
                self.checkpoint_into(&mut lines, Reason::Shutdown);
                self.write(&mut lines).await;
                self.sync();
                return;
            }
            self.metrics.audit_queue_depth.set(rx.len() as i64);
            let mut lines = std::mem::take(&mut self.lines);
            for msg in batch.drain(..) {
                match msg {
                    Msg::Record(mut record) => {
                        lines.seal(&mut record, &mut self.head);
                        if let Some(c) = self.checkpoints.as_mut() {
                            c.uncovered += 1;
                            c.uncovered_since.get_or_insert_with(Instant::now);
                        }
                    }
                    Msg::Flush(done) => {
                        self.checkpoint_into(&mut lines, Reason::Flush);
                        self.write(&mut lines).await;
                        lines.clear();
                        self.sync();
                        let _ = done.send(());
                    }
                }
            }
            if self
                .checkpoints
                .as_ref()
                .is_some_and(|c| c.uncovered >= c.every_records)
            {
                self.checkpoint_into(&mut lines, Reason::Count);
            } else if self
                .checkpoint_deadline()
                .is_some_and(|d| d <= Instant::now())
            {
                // Records kept arriving before the deadline fired.
                self.checkpoint_into(&mut lines, Reason::Interval);
            }
            self.write(&mut lines).await;
            lines.clear();
            self.lines = lines;
            if self.fsync == FsyncPolicy::Batch {
                self.sync();
            }
        }
    }

    /// Seals a checkpoint into `lines` when records are uncovered.
    fn checkpoint_into(&mut self, lines: &mut Batch, reason: Reason) {
        let Some(c) = self.checkpoints.as_mut() else {
            return;
        };
        if c.uncovered == 0 {
            return;
        }
        let now = crate::text::now_rfc3339();
        lines.push_line(&c.key.seal(&mut self.head, reason, &now));
        c.uncovered = 0;
        c.uncovered_since = None;
    }

    /// When the `every` policy owes a checkpoint.
    fn checkpoint_deadline(&self) -> Option<Instant> {
        let c = self.checkpoints.as_ref()?;
        c.uncovered_since.map(|since| since + c.every)
    }

    /// Writes `lines` to every sink (the file's pending lines first); a checkpoint may be
    /// sealed into them first when the file is about to rotate.
    async fn write(&mut self, lines: &mut Batch) {
        if lines.is_empty() {
            return;
        }
        // A file about to rotate is closed with a checkpoint, sealed after everything it holds.
        let incoming = (self.pending.bytes().len() + lines.bytes().len()) as u64;
        if self
            .file
            .as_ref()
            .is_some_and(|f| f.rotation_due_after(incoming))
        {
            self.checkpoint_into(lines, Reason::Rotation);
        }
        let mut ok = true;
        if let Some(file) = self.file.as_mut() {
            // Pending lines go first, in the same write; without any, the batch goes as it is.
            let all = if self.pending.is_empty() {
                &*lines
            } else {
                self.pending.extend(lines);
                &self.pending
            };
            match file.write(all.bytes(), self.head.seq) {
                Ok(()) => {
                    self.written.file.inc_by(all.len() as u64);
                    self.pending.clear();
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                Err(e) => {
                    tracing::error!(error = %e, records = all.len(), "audit: file write failed");
                    ok = false;
                    self.metrics
                        .audit_sink_errors
                        .with_label_values(&["file"])
                        .inc();
                    if self.pending.is_empty() {
                        self.pending.extend(lines);
                    }
                    // Keep them for the next batch, within bounds; beyond that they are lost.
                    let keep = self.pending.len().min(self.pending_max);
                    let lost = self.pending.len() - keep;
                    self.metrics.audit_dropped.inc_by(lost as u64);
                    self.pending.truncate(keep);
                }
            }
        }
        if self.stdout {
            let mut out = std::io::stdout().lock();
            match out.write_all(lines.bytes()).and_then(|()| out.flush()) {
                Ok(()) => self.written.stdout.inc_by(lines.len() as u64),
                Err(_) => {
                    ok = false;
                    self.metrics
                        .audit_sink_errors
                        .with_label_values(&["stdout"])
                        .inc();
                }
            }
        }
        if let Some(redis) = self.redis.as_mut() {
            match redis.write(lines).await {
                Ok(()) => self.written.redis.inc_by(lines.len() as u64),
                Err(e) => {
                    tracing::warn!(error = %e, records = lines.len(), "audit: redis XADD failed");
                    ok = false;
                    self.metrics
                        .audit_sink_errors
                        .with_label_values(&["redis"])
                        .inc();
                }
            }
        }
        // With a file sink, the file is the trail (the others ship copies): a record on disk is
        // audited, so only the file's failures make `fail_closed` refuse requests.
        let healthy = match self.file {
            Some(_) => self.pending.is_empty(),
            None => ok,
        };
        self.healthy.store(healthy, Ordering::Release);
    }

    fn sink_failed(&self, sink: &str) {
        self.metrics
            .audit_sink_errors
            .with_label_values(&[sink])
            .inc();
        if self.file.is_none() || sink == "file" {
            self.healthy.store(false, Ordering::Release);
        }
    }

    /// When the `every N ms` policy owes an fsync.
    fn sync_deadline(&self) -> Option<Instant> {
        match self.fsync {
            FsyncPolicy::Every(every) => self.unsynced_since.map(|since| since + every),
            FsyncPolicy::Batch => None,
        }
    }

    fn sync(&mut self) {
        if self.unsynced_since.take().is_none() {
            return;
        }
        if let Some(file) = self.file.as_mut() {
            if let Err(e) = file.sync() {
                tracing::error!(error = %e, "audit: fsync failed");
                self.sink_failed("file");
            }
        }
    }
}
