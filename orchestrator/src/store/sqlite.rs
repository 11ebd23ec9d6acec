//! The embedded session store: one SQLite file (WAL mode), opened by the orchestrator itself.
//!
//! SQLite calls block, so each one runs on tokio's blocking pool while holding the one
//! connection; runs are written twice (start and end), so contention stays low. The schema is
//! migrated at open ([`super::migrate`], files in `orchestrator/migrations/sqlite/`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;

use super::migrate::{self, sqlite::MIGRATIONS};
use super::retention::BATCH;
use super::{
    from_json, from_micros, to_json, to_micros, RetentionConfig, RunRecord, RunStatus, RunSummary,
    SessionStore, StoreError, Swept, ThreadRecord,
};

/// Sessions in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    max_events: usize,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and migrates it to this binary's
    /// schema; a run keeps at most `max_events` events. `":memory:"` is an in-memory database
    /// private to this store.
    pub async fn open(path: &Path, max_events: usize) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let conn = Connection::open(&path)?;
            // WAL lets readers (GET /runs) proceed while a run is written; a busy timeout rides
            // out another process holding the write lock briefly.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let mut conn = conn;
            migrate_schema(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            max_events,
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
        let run = run.capped(self.max_events).into_owned();
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
                                   tool_calls, final_message, error, events, events_truncated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(run_id) DO UPDATE SET
                   thread_id = excluded.thread_id, principal = excluded.principal,
                   status = excluded.status, started_at = excluded.started_at,
                   finished_at = excluded.finished_at, tool_calls = excluded.tool_calls,
                   final_message = excluded.final_message, error = excluded.error,
                   events = excluded.events, events_truncated = excluded.events_truncated",
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
                    run.events_truncated,
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
    bool,
);

fn decode_run(row: RunRow) -> Result<RunRecord, StoreError> {
    let (
        run_id,
        thread_id,
        principal,
        status,
        started,
        finished,
        tools,
        message,
        error,
        events,
        events_truncated,
    ) = row;
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
        events_truncated,
    })
}

/// Brings the schema to [`MIGRATIONS`]' latest version in one immediate transaction (another
/// process opening the same file waits for it).
fn migrate_schema(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    for m in migrate::pending(current, MIGRATIONS)? {
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, to_micros(super::now())],
        )?;
        if current == 0 {
            tracing::debug!(
                version = m.version,
                name = m.name,
                "session store: sqlite schema created"
            );
        } else {
            tracing::info!(
                from = current,
                version = m.version,
                name = m.name,
                "session store: sqlite schema migrated"
            );
        }
    }
    tx.commit()?;
    Ok(())
}

/// Deletes runs matching `filter` (parameter `?1`) `BATCH` at a time; the count deleted.
fn delete_runs(
    conn: &Connection,
    filter: &str,
    bound: impl rusqlite::Params + Copy,
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs WHERE {filter} LIMIT {BATCH})"
    );
    let mut total = 0;
    loop {
        let n = conn.execute(&sql, bound)?;
        total += n as u64;
        if (n as i64) < BATCH {
            return Ok(total);
        }
    }
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
                                tool_calls, final_message, error, events,
                                events_truncated
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
                                r.get(10)?,
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

    async fn sweep(
        &self,
        retention: &RetentionConfig,
        now: OffsetDateTime,
    ) -> Result<Swept, StoreError> {
        let cutoff = retention.age_cutoff(now);
        let keep = retention.keep();
        self.with_conn(move |conn| {
            let mut runs = delete_runs(conn, "started_at < ?1", [cutoff])?;
            // The newest run beyond `max_runs`: it and every older run go.
            let boundary: Option<(i64, String)> = conn
                .query_row(
                    "SELECT started_at, run_id FROM runs
                     ORDER BY started_at DESC, run_id DESC LIMIT 1 OFFSET ?1",
                    params![keep],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((started, run_id)) = &boundary {
                runs += delete_runs(conn, "(started_at, run_id) <= (?1, ?2)", (started, run_id))?;
            }
            let threads = conn.execute(
                "DELETE FROM threads WHERE NOT EXISTS
                   (SELECT 1 FROM runs WHERE runs.thread_id = threads.thread_id)",
                [],
            )?;
            Ok(Swept {
                runs,
                threads: threads as u64,
            })
        })
        .await
    }

    fn max_events_per_run(&self) -> usize {
        self.max_events
    }
}

#[cfg(test)]
mod tests;
