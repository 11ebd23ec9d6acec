//! Sessions: the threads and runs the orchestrator has served, kept after the run ends.
//!
//! One trait, [`SessionStore`], with two backends: an embedded SQLite file (the default,
//! [`sqlite::SqliteStore`]) and PostgreSQL for production ([`postgres::PostgresStore`]). The
//! runtime calls [`SessionStore::start_run`] when a run starts (this also creates or touches its
//! thread) and [`SessionStore::finish_run`] when it ends, with the whole [`RunRecord`] (tool calls,
//! final message, the AG-UI events it streamed). `GET /runs/{id}` and `GET /threads/{id}` read
//! them back; an idempotent repeat replays [`RunRecord::events`].
//!
//! Both backends carry a schema version and apply the numbered migrations embedded from
//! `orchestrator/migrations/<backend>/` in one transaction when they open ([`migrate`]); a
//! database from a newer binary is refused. [`retention`] deletes old runs (by age and by count)
//! at start and then periodically, and caps the events stored per run
//! ([`RunRecord::push_event`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), palisade_orchestrator::store::StoreError> {
//! use palisade_orchestrator::store::{self, RunRecord, StoreConfig};
//!
//! let trust = palisade_orchestrator::tls::Trust::default();
//! let sessions = store::open(&StoreConfig::default(), &trust).await?;
//! let mut run = RunRecord::started("run-1", "thread-1", Some("alice".into()));
//! sessions.start_run(&run).await?;
//! run.finish_with_message("hello");
//! sessions.finish_run(&run).await?;
//! assert!(sessions.run("run-1").await?.is_some());
//! # Ok(()) }
//! ```

pub mod migrate;
pub mod postgres;
pub mod retention;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

pub use retention::{spawn_sweeper, RetentionConfig, Swept};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not yet ended.
    Running,
    /// Ended with `RUN_FINISHED`.
    Finished,
    /// Ended with `RUN_ERROR`.
    Error,
    /// The client went away before the run ended.
    Cancelled,
}

impl RunStatus {
    /// The name stored in the database and shown in JSON (`running`, `finished`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "running" => Self::Running,
            "finished" => Self::Finished,
            "error" => Self::Error,
            "cancelled" => Self::Cancelled,
            other => return Err(StoreError::Corrupt(format!("unknown run status {other:?}"))),
        })
    }

    /// Whether the run has ended (anything but [`Running`](Self::Running)).
    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

/// One tool call made during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The `toolCallId` of the AG-UI events.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them (a JSON text).
    pub arguments: String,
    /// What the tool returned, if it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the tool failed, if it did (this also went back to the model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run: what `GET /runs/{id}` shows, plus the events an idempotent repeat replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id (`runId` of `RunAgentInput`).
    pub run_id: String,
    /// The thread it belongs to (`threadId`).
    pub thread_id: String,
    /// The principal the proxy vouched for, if any.
    pub principal: Option<String>,
    /// Where the run is.
    pub status: RunStatus,
    /// When it started (RFC 3339 in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended (RFC 3339 in JSON); `None` while running.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The tool calls, in the order they were made.
    pub tool_calls: Vec<ToolCallRecord>,
    /// The assistant's last text message.
    pub final_message: Option<String>,
    /// The `RUN_ERROR` message, if the run failed.
    pub error: Option<String>,
    /// The AG-UI events streamed, each as its JSON text, in order (for idempotent replay); at
    /// most `store.retention.max_events_per_run` of them.
    #[serde(skip_serializing)]
    #[serde(default)]
    pub events: Vec<String>,
    /// Whether the run streamed more events than `store.retention.max_events_per_run`: only
    /// the first that many are in [`events`](Self::events), and a replay ends with `RUN_ERROR`
    /// code `EVENTS_TRUNCATED`.
    #[serde(default)]
    pub events_truncated: bool,
}

impl RunRecord {
    /// A run that starts now, with nothing recorded yet.
    pub fn started(run_id: &str, thread_id: &str, principal: Option<String>) -> Self {
        Self {
            run_id: run_id.to_owned(),
            thread_id: thread_id.to_owned(),
            principal,
            status: RunStatus::Running,
            started_at: now(),
            finished_at: None,
            tool_calls: Vec::new(),
            final_message: None,
            error: None,
            events: Vec::new(),
            events_truncated: false,
        }
    }

    /// Records one streamed event (its JSON text), unless `max_events` are recorded already:
    /// then the event is dropped and the run marked [`events_truncated`](Self::events_truncated).
    pub fn push_event(&mut self, event: String, max_events: usize) {
        if self.events.len() < max_events {
            self.events.push(event);
        } else if !self.events_truncated {
            self.events_truncated = true;
            tracing::warn!(
                run.id = %self.run_id,
                max_events,
                "run streamed more events than store.retention.max_events_per_run: the rest are not stored"
            );
        }
    }

    /// This record as stored: at most `max_events` events (the rest dropped, the run marked
    /// truncated). The backends write through it, so the cap holds whoever builds the record.
    pub(crate) fn capped(&self, max_events: usize) -> std::borrow::Cow<'_, Self> {
        if self.events.len() <= max_events {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut run = self.clone();
        run.events.truncate(max_events);
        run.events_truncated = true;
        std::borrow::Cow::Owned(run)
    }

    /// Marks the run finished now with `message` as its final message.
    pub fn finish_with_message(&mut self, message: &str) {
        self.final_message = Some(message.to_owned());
        self.end(RunStatus::Finished);
    }

    /// Marks the run ended now with `status` (keeps what was recorded so far).
    pub fn end(&mut self, status: RunStatus) {
        self.status = status;
        self.finished_at = Some(now());
    }
}

/// A run as listed in its thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// The principal it ran for, if any.
    pub principal: Option<String>,
    /// Where it is.
    pub status: RunStatus,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// A thread: what `GET /threads/{id}` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRecord {
    /// The thread's id.
    pub thread_id: String,
    /// When its first run started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its latest run started or ended.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Its runs, oldest first.
    pub runs: Vec<RunSummary>,
}

/// A store operation that failed (the HTTP layer answers `500`, never `404`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused, failed or is unreachable.
    #[error("postgres: {}", postgres_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A stored row could not be read back (bad JSON, unknown status, bad timestamp).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The blocking task running a SQLite call panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
    /// No PostgreSQL connection could be had from the pool in time (all busy, or connecting
    /// timed out).
    #[error("postgres: {0}")]
    Unavailable(String),
    /// The TLS handshake with PostgreSQL failed (certificate not trusted, wrong name, no TLS on
    /// the server): a configuration problem, refused at start.
    #[error("postgres TLS: {0}")]
    Tls(String),
    /// The connection URL is malformed or asks for something not supported.
    #[error("postgres url: {0}")]
    Url(String),
    /// The database was migrated by a newer binary: this one does not know its schema.
    #[error(
        "the session database has schema version {found}, newer than this binary knows \
         ({known}): run a palisade-orchestrator at least as new as the one that migrated it, \
         or point store at another database"
    )]
    SchemaTooNew {
        /// The version recorded in the database.
        found: i64,
        /// The newest version this binary has a migration for.
        known: i64,
    },
}

/// Threads and runs, persisted. Implementations are shared by every request.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Records a run that just started, creating its thread or touching its `updated_at`.
    /// Starting a run id that exists replaces it.
    async fn start_run(&self, run: &RunRecord) -> Result<(), StoreError>;
    /// Records the run's end state (status, end time, tool calls, final message, error, events).
    async fn finish_run(&self, run: &RunRecord) -> Result<(), StoreError>;
    /// The run, or `None` when no run has that id.
    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// The thread with its runs, or `None` when no thread has that id.
    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError>;
    /// Deletes the runs that started before `now - retention.max_age`, then all but the newest
    /// `retention.max_runs`, then the threads left without runs.
    async fn sweep(
        &self,
        retention: &RetentionConfig,
        now: OffsetDateTime,
    ) -> Result<Swept, StoreError>;
    /// Most events stored per run (`store.retention.max_events_per_run`): the runtime stops
    /// recording a run's events there ([`RunRecord::push_event`]).
    fn max_events_per_run(&self) -> usize;
}

/// Where sessions are kept: `{backend: sqlite, path: …}` (the default) or
/// `{backend: postgres, url: …}`, each with its `retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// An embedded SQLite database file, created if missing. The default. `":memory:"` keeps
    /// sessions in memory only.
    Sqlite {
        /// The database file (relative to the working directory). Default
        /// `palisade-orchestrator.db`.
        #[serde(default = "default_sqlite_path")]
        path: PathBuf,
        /// How long runs are kept and how many events each keeps. Default: 30 days, 100000
        /// runs, 10000 events per run.
        #[serde(default)]
        retention: RetentionConfig,
    },
    /// A PostgreSQL database shared by replicas; its schema is migrated on first connect.
    Postgres {
        /// A libpq-style URL or key=value string, e.g.
        /// `postgres://palisade@db.internal:5432/palisade?sslmode=verify-full`. Required.
        /// `sslmode`: `disable`, `prefer` (the default: TLS when the server offers it, its
        /// certificate not checked), `require` (TLS, certificate not checked), `verify-ca`
        /// (TLS, certificate issued by a trusted CA) or `verify-full` (and naming the host).
        /// Trusted CAs: the web roots, `tls.ca_file` and `SSL_CERT_FILE`.
        url: String,
        /// Most connections open to the database at once. Default `10`.
        #[serde(default = "default_pool_size")]
        pool_size: usize,
        /// How long runs are kept and how many events each keeps. Default: 30 days, 100000
        /// runs, 10000 events per run.
        #[serde(default)]
        retention: RetentionConfig,
    },
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("palisade-orchestrator.db")
}

fn default_pool_size() -> usize {
    10
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::sqlite(default_sqlite_path())
    }
}

impl StoreConfig {
    /// A SQLite file (or `":memory:"`) with the default retention.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self::Sqlite {
            path: path.into(),
            retention: RetentionConfig::default(),
        }
    }

    /// A PostgreSQL database with the default pool size and retention.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self::Postgres {
            url: url.into(),
            pool_size: default_pool_size(),
            retention: RetentionConfig::default(),
        }
    }

    /// The retention settings, whichever the backend.
    pub fn retention(&self) -> &RetentionConfig {
        match self {
            Self::Sqlite { retention, .. } | Self::Postgres { retention, .. } => retention,
        }
    }

    /// The same store with `retention`.
    pub fn with_retention(mut self, new: RetentionConfig) -> Self {
        match &mut self {
            Self::Sqlite { retention, .. } | Self::Postgres { retention, .. } => *retention = new,
        }
        self
    }
}

/// Opens the configured store, migrating its schema to this binary's version. PostgreSQL's
/// server is verified against `trust` (see [`postgres::PostgresStore::connect`]). Start the
/// retention sweeps with [`spawn_sweeper`].
pub async fn open(
    cfg: &StoreConfig,
    trust: &crate::tls::Trust,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match cfg {
        StoreConfig::Sqlite { path, retention } => {
            Arc::new(sqlite::SqliteStore::open(path, retention.max_events_per_run).await?)
        }
        StoreConfig::Postgres {
            url,
            pool_size,
            retention,
        } => Arc::new(
            postgres::PostgresStore::connect(url, *pool_size, trust, retention.max_events_per_run)
                .await?,
        ),
    })
}

/// A PostgreSQL error with the server's own message (`db error: ERROR: …`), which
/// `tokio-postgres` keeps out of its `Display`.
fn postgres_text(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{err}: {db}"),
        None => err.to_string(),
    }
}

/// The current time, truncated to microseconds (what both databases keep, so a record read back
/// equals the one written).
pub(crate) fn now() -> OffsetDateTime {
    from_micros(to_micros(OffsetDateTime::now_utc())).unwrap_or_else(|_| OffsetDateTime::now_utc())
}

/// A timestamp as stored: microseconds since the Unix epoch.
pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A stored timestamp read back (UTC).
pub(crate) fn from_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {micros}: {e}")))
}

/// Serializes a record's JSON columns (tool calls, events).
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

/// Reads a JSON column back.
pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("json column: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{RetentionConfig, RunRecord, StoreConfig};

    fn parse(yaml: &str) -> Result<StoreConfig, yaml_serde::Error> {
        yaml_serde::from_str(yaml)
    }

    #[test]
    fn store_config_reads_both_backends() {
        assert_eq!(parse("backend: sqlite").unwrap(), StoreConfig::default());
        assert_eq!(
            parse("{backend: sqlite, path: \":memory:\"}").unwrap(),
            StoreConfig::sqlite(":memory:")
        );
        assert_eq!(
            parse("{backend: postgres, url: \"host=db user=p\"}").unwrap(),
            StoreConfig::postgres("host=db user=p")
        );
        let cfg = parse(
            "{backend: postgres, url: u, pool_size: 3, retention: {max_age: 7d, max_runs: 50, \
             max_events_per_run: 20, sweep_interval: 5m}}",
        )
        .unwrap();
        let StoreConfig::Postgres { pool_size, .. } = &cfg else {
            panic!("{cfg:?}")
        };
        assert_eq!(*pool_size, 3);
        assert_eq!(
            cfg.retention(),
            &RetentionConfig {
                max_age: Duration::from_secs(7 * 86_400),
                max_runs: 50,
                max_events_per_run: 20,
                sweep_interval: Duration::from_secs(300),
            }
        );
        for bad in [
            "{backend: postgres}",
            "{backend: mysql}",
            "{backend: sqlite, url: x}",
            "{backend: sqlite, pool_size: 3}",
            "{backend: sqlite, retention: {max_age: 30}}",
            "{backend: sqlite, retention: {keep: 3}}",
            "{path: x.db}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_past_the_cap_are_dropped_and_flagged() {
        let mut run = RunRecord::started("r", "t", None);
        for i in 0..5 {
            run.push_event(format!("{{\"n\":{i}}}"), 3);
        }
        assert_eq!(run.events.len(), 3);
        assert!(run.events_truncated);
        assert_eq!(run.events[2], "{\"n\":2}");

        let mut long = RunRecord::started("r", "t", None);
        long.events = vec!["{}".into(); 4];
        assert!(!long.capped(4).events_truncated);
        let capped = long.capped(2);
        assert_eq!(capped.events.len(), 2);
        assert!(capped.events_truncated);
    }
}
