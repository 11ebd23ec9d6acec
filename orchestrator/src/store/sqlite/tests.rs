//! SQLite's migrations: an old `CREATE IF NOT EXISTS` file upgrades with its data, a newer one is
//! refused, a failed one changes nothing; the retention task sweeps at start.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::SqliteStore;
use crate::store::{self, RetentionConfig, RunRecord, SessionStore, StoreConfig, StoreError};

/// The layout the store created before versioned migrations, with a thread and a run.
const OLD_LAYOUT: &str = "
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
INSERT INTO threads VALUES ('t-old', 1700000000000000, 1700000000500000);
INSERT INTO runs VALUES ('r-old', 't-old', 'alice', 'error', 1700000000000000, 1700000000500000,
  '[]', NULL, 'MAX_ITERATIONS', '[\"{}\"]');
";

fn versions(path: &std::path::Path) -> Vec<(i64, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, name FROM schema_version ORDER BY version")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

#[tokio::test]
async fn an_old_file_upgrades_with_its_data_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(OLD_LAYOUT)
        .unwrap();

    let store = SqliteStore::open(&path, 100).await.unwrap();
    let run = store.run("r-old").await.unwrap().expect("old run kept");
    assert_eq!(run.principal.as_deref(), Some("alice"));
    assert_eq!(run.error.as_deref(), Some("MAX_ITERATIONS"));
    assert_eq!(run.events, ["{}"]);
    assert!(!run.events_truncated);
    assert_eq!(
        versions(&path),
        [(1, "0001_sessions".into()), (2, "0002_retention".into())]
    );
    let mut next = RunRecord::started("r-new", "t-old", None);
    next.finish_with_message("hi");
    store.finish_run(&next).await.unwrap();
    drop(store);

    // Opening again applies nothing twice.
    let again = SqliteStore::open(&path, 100).await.unwrap();
    assert_eq!(again.thread("t-old").await.unwrap().unwrap().runs.len(), 2);
    assert_eq!(versions(&path).len(), 2);
    drop(again);

    // A newer binary's migration 3: refused, with both versions named, and nothing changed.
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_version VALUES (3, '0003_from_the_future', 0)",
            [],
        )
        .unwrap();
    let err = SqliteStore::open(&path, 100).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 3, known: 2 }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("newer than this binary knows (2)"),
        "{err}"
    );
    assert_eq!(versions(&path).len(), 3);
}

#[tokio::test]
async fn a_failed_migration_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.db");
    // A `runs` table that already has migration 2's column: applying 2 fails.
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "{OLD_LAYOUT} ALTER TABLE runs ADD COLUMN events_truncated INTEGER NOT NULL DEFAULT 0;"
        ))
        .unwrap();
    let err = SqliteStore::open(&path, 100).await.unwrap_err();
    assert!(err.to_string().contains("events_truncated"), "{err}");
    let conn = Connection::open(&path).unwrap();
    let version_tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version_tables, 0, "rolled back, version table included");
}

#[tokio::test]
async fn the_sweeper_runs_at_start_and_holds_the_store_weakly() {
    let retention = RetentionConfig {
        max_runs: 1,
        sweep_interval: Duration::from_secs(3600),
        ..RetentionConfig::default()
    };
    let cfg = StoreConfig::sqlite(":memory:").with_retention(retention.clone());
    let store = store::open(&cfg, &crate::tls::Trust::default())
        .await
        .unwrap();
    for i in 0..3 {
        let mut run = RunRecord::started(&format!("r{i}"), "t", None);
        run.started_at += Duration::from_secs(i);
        run.finish_with_message("ok");
        store.finish_run(&run).await.unwrap();
    }
    let task = store::spawn_sweeper(&store, retention);
    let mut left = usize::MAX;
    for _ in 0..200 {
        left = store.thread("t").await.unwrap().map_or(0, |t| t.runs.len());
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        left, 1,
        "the first sweep runs at start, keeping the newest run"
    );
    assert!(store.run("r2").await.unwrap().is_some());
    // The task holds the store weakly: dropping it frees the store at once.
    let weak = Arc::downgrade(&store);
    drop(store);
    assert!(
        weak.upgrade().is_none(),
        "the sweeper keeps no strong reference"
    );
    task.abort();
}
