-- The sessions layout from before versioned migrations. IF NOT EXISTS: a database created by
-- that version already has these tables, and adopting it records version 1 without changes.
-- Timestamps are Unix microseconds, as in SQLite.
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
