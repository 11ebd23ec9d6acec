//! The production session store: PostgreSQL, shared by every orchestrator replica.
//!
//! One `tokio-postgres` connection (queries from concurrent requests are pipelined on it). When
//! the database is down at start, or the connection drops later (database restart, network cut),
//! the next call connects again; a call that cannot reach the database returns
//! [`StoreError::Postgres`] and the HTTP layer answers `500` (runs go on; their records are
//! lost while the database is away). Tables are created on every connect under an advisory lock,
//! so replicas starting together do not race.

use std::sync::Arc;

use tokio::sync::RwLock;
use tokio_postgres::{Client, NoTls, Row};

use super::{
    from_json, from_micros, to_json, to_micros, RunRecord, RunStatus, RunSummary, SessionStore,
    StoreError, ThreadRecord,
};

/// Tables and indexes, created when missing (timestamps are Unix microseconds, as in SQLite).
const SCHEMA: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(7412001);
CREATE TABLE IF NOT EXISTS palisade_threads (
    thread_id   TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS palisade_runs (
    run_id        TEXT PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES palisade_threads(thread_id),
    principal     TEXT,
    status        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    tool_calls    TEXT NOT NULL,
    final_message TEXT,
    error         TEXT,
    events        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS palisade_runs_by_thread ON palisade_runs(thread_id, started_at);
COMMIT;
";

/// Sessions in PostgreSQL.
pub struct PostgresStore {
    url: String,
    client: RwLock<Option<Arc<Client>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store for `url` (libpq URL or key=value string, no TLS): a malformed `url` is an error;
    /// an unreachable database is not (it is logged, and calls connect when it is back).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        url.parse::<tokio_postgres::Config>()?;
        let store = Self {
            url: url.to_owned(),
            client: RwLock::new(None),
        };
        if let Err(err) = store.client().await {
            tracing::warn!(error = %err, "postgres session store unreachable at start; will retry");
        }
        Ok(store)
    }

    /// The live connection; connects (and creates the tables) when there is none or it closed.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(client) = self.client.read().await.as_ref() {
            if !client.is_closed() {
                return Ok(Arc::clone(client));
            }
        }
        let mut current = self.client.write().await;
        if let Some(client) = current.as_ref() {
            if !client.is_closed() {
                return Ok(Arc::clone(client));
            }
            tracing::warn!("postgres session store: connection closed, reconnecting");
        }
        let client = dial(&self.url).await?;
        client.batch_execute(SCHEMA).await?;
        let client = Arc::new(client);
        *current = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn upsert(&self, run: &RunRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        let touched = to_micros(run.finished_at.unwrap_or(run.started_at));
        let started = to_micros(run.started_at);
        let finished = run.finished_at.map(to_micros);
        let tool_calls = to_json(&run.tool_calls);
        let events = to_json(&run.events);
        // One statement (a data-modifying CTE), so the thread and run land together without
        // holding a transaction on the shared connection.
        client
            .execute(
                "WITH t AS (
                   INSERT INTO palisade_threads (thread_id, created_at, updated_at)
                   VALUES ($2, $5, $11)
                   ON CONFLICT (thread_id) DO UPDATE SET
                     created_at = LEAST(palisade_threads.created_at, EXCLUDED.created_at),
                     updated_at = GREATEST(palisade_threads.updated_at, EXCLUDED.updated_at)
                   RETURNING thread_id)
                 INSERT INTO palisade_runs (run_id, thread_id, principal, status, started_at,
                                            finished_at, tool_calls, final_message, error, events)
                 SELECT $1, t.thread_id, $3, $4, $5, $6, $7, $8, $9, $10 FROM t
                 ON CONFLICT (run_id) DO UPDATE SET
                   thread_id = EXCLUDED.thread_id, principal = EXCLUDED.principal,
                   status = EXCLUDED.status, started_at = EXCLUDED.started_at,
                   finished_at = EXCLUDED.finished_at, tool_calls = EXCLUDED.tool_calls,
                   final_message = EXCLUDED.final_message, error = EXCLUDED.error,
                   events = EXCLUDED.events",
                &[
                    &run.run_id,
                    &run.thread_id,
                    &run.principal,
                    &run.status.as_str(),
                    &started,
                    &finished,
                    &tool_calls,
                    &run.final_message,
                    &run.error,
                    &events,
                    &touched,
                ],
            )
            .await?;
        Ok(())
    }
}

/// Opens one connection and drives it on a background task.
async fn dial(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "postgres session store: connection ended");
        }
    });
    Ok(client)
}

fn decode_run(row: &Row) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        run_id: row.try_get(0)?,
        thread_id: row.try_get(1)?,
        principal: row.try_get(2)?,
        status: RunStatus::parse(row.try_get(3)?)?,
        started_at: from_micros(row.try_get(4)?)?,
        finished_at: row
            .try_get::<_, Option<i64>>(5)?
            .map(from_micros)
            .transpose()?,
        tool_calls: from_json(row.try_get(6)?)?,
        final_message: row.try_get(7)?,
        error: row.try_get(8)?,
        events: from_json(row.try_get(9)?)?,
    })
}

#[async_trait::async_trait]
impl SessionStore for PostgresStore {
    async fn start_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.upsert(run).await
    }

    async fn finish_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.upsert(run).await
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT run_id, thread_id, principal, status, started_at, finished_at,
                        tool_calls, final_message, error, events
                 FROM palisade_runs WHERE run_id = $1",
                &[&run_id],
            )
            .await?;
        row.as_ref().map(decode_run).transpose()
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError> {
        let client = self.client().await?;
        let Some(thread) = client
            .query_opt(
                "SELECT created_at, updated_at FROM palisade_threads WHERE thread_id = $1",
                &[&thread_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let rows = client
            .query(
                "SELECT run_id, principal, status, started_at, finished_at FROM palisade_runs
                 WHERE thread_id = $1 ORDER BY started_at, run_id",
                &[&thread_id],
            )
            .await?;
        let runs = rows
            .iter()
            .map(|r| {
                Ok(RunSummary {
                    run_id: r.try_get(0)?,
                    principal: r.try_get(1)?,
                    status: RunStatus::parse(r.try_get(2)?)?,
                    started_at: from_micros(r.try_get(3)?)?,
                    finished_at: r
                        .try_get::<_, Option<i64>>(4)?
                        .map(from_micros)
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(ThreadRecord {
            thread_id: thread_id.to_owned(),
            created_at: from_micros(thread.try_get(0)?)?,
            updated_at: from_micros(thread.try_get(1)?)?,
            runs,
        }))
    }
}
