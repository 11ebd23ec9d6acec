//! The production session store: PostgreSQL, shared by every orchestrator replica.
//!
//! A `deadpool-postgres` pool of `pool_size` connections over `tokio-postgres`, TLS through
//! rustls ([`tls`]: `sslmode` from the URL, the server verified against the orchestrator's
//! [`Trust`]). Connections are made when needed: when the database is down at start, or a
//! connection drops later (database restart, network cut), the pool discards it and the next
//! call connects again; a call that cannot reach the database returns an error and the HTTP
//! layer answers `500` (runs go on; their records are lost while the database is away).
//!
//! The first connection migrates the schema ([`super::migrate`], files in
//! `orchestrator/migrations/postgres/`) in one transaction under an advisory lock, so replicas
//! starting together do not race. A database migrated by a newer binary, or a server whose
//! certificate is not trusted, stops the start ([`PostgresStore::connect`]).

pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use tokio_postgres::Row;

use super::migrate::{self, postgres::MIGRATIONS};
use super::retention::BATCH;
use super::{
    from_json, from_micros, to_json, to_micros, RetentionConfig, RunRecord, RunStatus, RunSummary,
    SessionStore, StoreError, Swept, ThreadRecord,
};
use crate::tls::Trust;

/// How long a call waits for a free connection, and for a new one to connect.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock migrations hold (any replica migrating makes the others wait).
const MIGRATION_LOCK: i64 = 7_412_001;

/// Sessions in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    mode: tls::SslMode,
    migrated: OnceCell<()>,
    max_events: usize,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("PostgresStore")
            .field("sslmode", &self.mode)
            .field("pool_size", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store for `url` (libpq URL or key=value string) with up to `pool_size` connections,
    /// verifying the server against `trust` as its `sslmode` says; a run keeps at most
    /// `max_events` events.
    ///
    /// Connects once to migrate the schema. Errors: a malformed `url`, a database whose schema
    /// is newer than this binary ([`StoreError::SchemaTooNew`]), a failed TLS handshake
    /// ([`StoreError::Tls`]). An unreachable database is not an error: it is logged, and calls
    /// connect (and migrate) when it is back.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        trust: &Trust,
        max_events: usize,
    ) -> Result<Self, StoreError> {
        let (config, mode) = tls::parse_url(url)?;
        let connector = tls::MakeRustls::new(mode, trust)?;
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Url(e.to_string()))?;
        let store = Self {
            pool,
            mode,
            migrated: OnceCell::new(),
            max_events,
        };
        match store.client().await {
            Ok(_) => {}
            Err(err @ (StoreError::SchemaTooNew { .. } | StoreError::Tls(_))) => return Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "postgres session store unreachable at start; will retry");
            }
        }
        Ok(store)
    }

    /// A pooled connection, the schema migrated (once per store, on the first connection).
    async fn client(&self) -> Result<Object, StoreError> {
        let mut client = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        self.migrated
            .get_or_try_init(|| migrate_schema(&mut client))
            .await?;
        Ok(client)
    }

    /// A pool failure as a [`StoreError`], a TLS handshake failure told apart.
    fn pool_error(&self, err: PoolError) -> StoreError {
        match err {
            PoolError::Backend(e) => match tls::handshake_failure(&e) {
                Some(cause) => StoreError::Tls(format!(
                    "sslmode={}: {cause}{}",
                    self.mode.as_str(),
                    self.mode.hint()
                )),
                None => StoreError::Postgres(e),
            },
            PoolError::Timeout(kind) => StoreError::Unavailable(format!(
                "no connection within {POOL_TIMEOUT:?} ({kind:?}; pool_size {})",
                self.pool.status().max_size
            )),
            other => StoreError::Unavailable(other.to_string()),
        }
    }

    async fn upsert(&self, run: &RunRecord) -> Result<(), StoreError> {
        let run = run.capped(self.max_events);
        let client = self.client().await?;
        let touched = to_micros(run.finished_at.unwrap_or(run.started_at));
        let started = to_micros(run.started_at);
        let finished = run.finished_at.map(to_micros);
        let tool_calls = to_json(&run.tool_calls);
        let events = to_json(&run.events);
        // One statement (a data-modifying CTE), so the thread and run land together.
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
                                            finished_at, tool_calls, final_message, error, events,
                                            events_truncated)
                 SELECT $1, t.thread_id, $3, $4, $5, $6, $7, $8, $9, $10, $12 FROM t
                 ON CONFLICT (run_id) DO UPDATE SET
                   thread_id = EXCLUDED.thread_id, principal = EXCLUDED.principal,
                   status = EXCLUDED.status, started_at = EXCLUDED.started_at,
                   finished_at = EXCLUDED.finished_at, tool_calls = EXCLUDED.tool_calls,
                   final_message = EXCLUDED.final_message, error = EXCLUDED.error,
                   events = EXCLUDED.events, events_truncated = EXCLUDED.events_truncated",
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
                    &run.events_truncated,
                ],
            )
            .await?;
        Ok(())
    }
}

/// Brings the schema to [`MIGRATIONS`]' latest version in one transaction, under an advisory
/// lock held until it commits.
async fn migrate_schema(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
         CREATE TABLE IF NOT EXISTS palisade_schema_version (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at BIGINT NOT NULL
         );"
    ))
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM palisade_schema_version",
            &[],
        )
        .await?
        .try_get(0)?;
    for m in migrate::pending(current, MIGRATIONS)? {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO palisade_schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &to_micros(super::now())],
        )
        .await?;
        if current == 0 {
            tracing::debug!(
                version = m.version,
                name = m.name,
                "session store: postgres schema created"
            );
        } else {
            tracing::info!(
                from = current,
                version = m.version,
                name = m.name,
                "session store: postgres schema migrated"
            );
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes runs matching `filter` `BATCH` at a time; the count deleted.
async fn delete_runs(
    client: &Object,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM palisade_runs WHERE run_id IN
           (SELECT run_id FROM palisade_runs WHERE {filter} LIMIT {BATCH})"
    );
    let mut total = 0;
    loop {
        let n = client.execute(&sql, params).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
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
        events_truncated: row.try_get(10)?,
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
                        tool_calls, final_message, error, events, events_truncated
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

    async fn sweep(
        &self,
        retention: &RetentionConfig,
        now: OffsetDateTime,
    ) -> Result<Swept, StoreError> {
        let client = self.client().await?;
        let cutoff = retention.age_cutoff(now);
        let mut runs = delete_runs(&client, "started_at < $1", &[&cutoff]).await?;
        // The newest run beyond `max_runs`: it and every older run go.
        let boundary = client
            .query_opt(
                "SELECT started_at, run_id FROM palisade_runs
                 ORDER BY started_at DESC, run_id DESC LIMIT 1 OFFSET $1",
                &[&retention.keep()],
            )
            .await?;
        if let Some(row) = boundary {
            let started: i64 = row.try_get(0)?;
            let run_id: String = row.try_get(1)?;
            runs += delete_runs(
                &client,
                "(started_at, run_id) <= ($1, $2)",
                &[&started, &run_id],
            )
            .await?;
        }
        let threads = client
            .execute(
                "DELETE FROM palisade_threads t WHERE NOT EXISTS
                   (SELECT 1 FROM palisade_runs r WHERE r.thread_id = t.thread_id)",
                &[],
            )
            .await?;
        Ok(Swept { runs, threads })
    }

    fn max_events_per_run(&self) -> usize {
        self.max_events
    }
}
