//! The `audit` section of `palisade.yaml`, as written.
//!
//! Plain `serde` + `schemars` types with no logic; [`super::settings`] validates them into the
//! runtime [`super::Settings`].

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Top-level `audit`: where every request's [`super::AuditRecord`] goes and how it gets there.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// The hash-chained JSONL file (the embedded default writes one under the OS temp dir).
    /// Default: absent (no file).
    #[serde(default)]
    pub file: Option<FileSinkSpec>,
    /// Also write every record as one JSON line on stdout (logs go to stderr). Default: `false`.
    #[serde(default)]
    pub stdout: bool,
    /// Ship records to a Redis Stream with `XADD … MAXLEN ~ n` (many replicas, one stream).
    /// Default: absent.
    #[serde(default)]
    pub redis: Option<RedisSinkSpec>,
    /// Records waiting for the writer; requests never wait on a sink, only on this queue.
    /// Default: `8192`.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// When the queue is full: `block` (the request's last phase waits for room; nothing is
    /// lost) or `drop` (the record is counted in `palisade_audit_dropped_total`). Default:
    /// `block`.
    #[serde(default)]
    pub on_full: OnFull,
    /// When a sink fails to write: `fail_closed` (new requests get 503 `AUDIT_UNAVAILABLE` until
    /// a write succeeds again, so nothing is served unaudited) or `fail_open` (serve on; the
    /// failure is counted in `palisade_audit_sink_errors_total`). With a file sink only the
    /// file's failures count (stdout and Redis ship copies); without one, any sink's do.
    /// Default: `fail_closed`.
    #[serde(default)]
    pub on_sink_failure: OnSinkFailure,
    /// Largest number of records the writer takes from the queue in one batch. Default: `512`.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Signed checkpoints in the chain, so that a rewritten trail is detected by `palisade
    /// audit verify --public-key` (docs/operations.md, "Reading `audit verify`"). Default:
    /// absent (the chain is unsigned: a full rewrite of a file still verifies).
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
}

impl Default for AuditSpec {
    fn default() -> Self {
        Self {
            file: None,
            stdout: false,
            redis: None,
            queue_capacity: default_queue_capacity(),
            on_full: OnFull::default(),
            on_sink_failure: OnSinkFailure::default(),
            batch_max: default_batch_max(),
            checkpoint: None,
        }
    }
}

/// The JSONL file sink.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSpec {
    /// The active file. A leading `{tmp}` is the OS temp dir (e.g.
    /// `{tmp}/palisade-dev/audit.jsonl`); a relative path is relative to the working directory.
    /// Missing directories are created. On start an existing file is appended to, continuing
    /// its chain. Required.
    pub path: String,
    /// Rotate when the active file reaches this many bytes. Default: `104857600` (100 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotate when the active file is older than this (e.g. `24h`). Default: `24h`.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_age: Duration,
    /// When to fsync: `batch` (after every batch the writer takes, before taking the next) or a
    /// duration such as `100ms` (at most that long after a write). Default: `batch`.
    #[serde(default = "default_fsync")]
    pub fsync: String,
}

/// Signed checkpoints: an Ed25519 signature over the chain head, written into the chain.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// The signing key: an Ed25519 private key, PKCS#8 PEM (`palisade audit keygen FILE` or
    /// `openssl genpkey -algorithm ed25519 -out FILE`). A leading `{tmp}` is the OS temp dir.
    /// Verify with its public key (`FILE.pub`, or `palisade audit public-key FILE`). Required.
    pub key_file: String,
    /// Create the key (mode 0600) and `<key_file>.pub` at start when the file is missing — for
    /// development; in production provision the key and keep its public half apart. Default:
    /// `false`.
    #[serde(default)]
    pub generate: bool,
    /// Write a checkpoint once this many records are not covered by one. Default: `1000`.
    #[serde(default = "default_checkpoint_records")]
    pub every_records: u64,
    /// …and at most this long after the first record not covered by one (e.g. `30s`).
    /// Checkpoints are also written before every rotation and at every flush (graceful
    /// shutdown). Default: `60s`.
    #[serde(default = "default_checkpoint_every", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub every: Duration,
}

/// The Redis Stream sink.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkSpec {
    /// `redis://host:port[/db]` (or `rediss://`). Required.
    #[serde(serialize_with = "crate::redact::url")]
    pub url: String,
    /// The stream key. Default: `palisade:audit`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Keep about this many entries (`MAXLEN ~`); `0` keeps everything. Default: `1000000`.
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
    /// Deadline of one `XADD` pipeline. Default: `2s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// What a request does when the audit queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Wait for room (asynchronously); nothing is lost.
    #[default]
    Block,
    /// Drop the record and count it.
    Drop,
}

/// What the proxy does while a sink fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSinkFailure {
    /// Refuse new requests with 503 `AUDIT_UNAVAILABLE` until a write succeeds.
    #[default]
    FailClosed,
    /// Serve on and count the failures.
    FailOpen,
}

fn default_queue_capacity() -> usize {
    8192
}
fn default_batch_max() -> usize {
    512
}
fn default_checkpoint_records() -> u64 {
    1000
}
fn default_checkpoint_every() -> Duration {
    Duration::from_secs(60)
}
fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_fsync() -> String {
    "batch".into()
}
fn default_stream() -> String {
    "palisade:audit".into()
}
fn default_maxlen() -> u64 {
    1_000_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
