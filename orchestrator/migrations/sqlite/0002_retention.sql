-- Retention: sweeps find old runs by start time; a run past max_events_per_run is flagged.
ALTER TABLE runs ADD COLUMN events_truncated INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_start ON runs(started_at, run_id);
