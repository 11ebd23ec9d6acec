//! The embedded session store: one SQLite file (WAL mode), opened by the orchestrator itself.
//!
//! SQLite calls block, so each one runs on tokio's blocking pool while holding the one
//! connection; runs are written twice (start and end), so contention stays low.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    from_json, from_micros, to_json, to_micros, RunRecord, RunStatus, RunSummary, SessionStore,
    StoreError, ThreadRecord,
};

/// Tables and indexes, created when missing.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS threads (
    thread_id   TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES threads(thread_id),
    principal     TEXT,
    status        TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    tool_calls    TEXT NOT NULL,
    final_message TEXT,
    error         TEXT,
    events        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_thread ON runs(thread_id, started_at);
";

/// Sessions in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and its tables. `":memory:"` is an
    /// in-memory database private to this store.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let conn = Connection::open(&path)?;
            // WAL lets readers (GET /runs) proceed while a run is written; a busy timeout rides
            // out another process holding the write lock briefly.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves the connection usable (each call is its own
            // statement or transaction), so a poisoned lock is taken over.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Writes the whole run and creates or touches its thread, in one transaction.
    async fn upsert(&self, run: &RunRecord) -> Result<(), StoreError> {
        let run = run.clone();
        self.with_conn(move |conn| {
            let touched = to_micros(run.finished_at.unwrap_or(run.started_at));
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO threads (thread_id, created_at, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(thread_id) DO UPDATE SET
                   created_at = min(created_at, excluded.created_at),
                   updated_at = max(updated_at, excluded.updated_at)",
                params![run.thread_id, to_micros(run.started_at), touched],
            )?;
            tx.execute(
                "INSERT INTO runs (run_id, thread_id, principal, status, started_at, finished_at,
                                   tool_calls, final_message, error, events)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(run_id) DO UPDATE SET
                   thread_id = excluded.thread_id, principal = excluded.principal,
                   status = excluded.status, started_at = excluded.started_at,
                   finished_at = excluded.finished_at, tool_calls = excluded.tool_calls,
                   final_message = excluded.final_message, error = excluded.error,
                   events = excluded.events",
                params![
                    run.run_id,
                    run.thread_id,
                    run.principal,
                    run.status.as_str(),
                    to_micros(run.started_at),
                    run.finished_at.map(to_micros),
                    to_json(&run.tool_calls),
                    run.final_message,
                    run.error,
                    to_json(&run.events),
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

/// A `runs` row as read, before its columns are decoded.
type RunRow = (
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    String,
);

fn decode_run(row: RunRow) -> Result<RunRecord, StoreError> {
    let (run_id, thread_id, principal, status, started, finished, tools, message, error, events) =
        row;
    Ok(RunRecord {
        run_id,
        thread_id,
        principal,
        status: RunStatus::parse(&status)?,
        started_at: from_micros(started)?,
        finished_at: finished.map(from_micros).transpose()?,
        tool_calls: from_json(&tools)?,
        final_message: message,
        error,
        events: from_json(&events)?,
    })
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn start_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.upsert(run).await
    }

    async fn finish_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.upsert(run).await
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run_id = run_id.to_owned();
        let row = self
            .with_conn(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT run_id, thread_id, principal, status, started_at, finished_at,
                                tool_calls, final_message, error, events
                         FROM runs WHERE run_id = ?1",
                        params![run_id],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                                r.get(8)?,
                                r.get(9)?,
                            ))
                        },
                    )
                    .optional()?)
            })
            .await?;
        row.map(decode_run).transpose()
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError> {
        let thread_id = thread_id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let Some((created, updated)) = tx
                .query_row(
                    "SELECT created_at, updated_at FROM threads WHERE thread_id = ?1",
                    params![thread_id],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = tx.prepare(
                "SELECT run_id, principal, status, started_at, finished_at FROM runs
                 WHERE thread_id = ?1 ORDER BY started_at, run_id",
            )?;
            let rows = stmt
                .query_map(params![thread_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let runs = rows
                .into_iter()
                .map(|(run_id, principal, status, started, finished)| {
                    Ok(RunSummary {
                        run_id,
                        principal,
                        status: RunStatus::parse(&status)?,
                        started_at: from_micros(started)?,
                        finished_at: finished.map(from_micros).transpose()?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some(ThreadRecord {
                thread_id,
                created_at: from_micros(created)?,
                updated_at: from_micros(updated)?,
                runs,
            }))
        })
        .await
    }
}
