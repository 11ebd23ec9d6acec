-- The sessions layout from before versioned migrations. IF NOT EXISTS: a database created by
-- that version already has these tables, and adopting it records version 1 without changes.
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
