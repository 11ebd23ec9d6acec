-- Retention: sweeps find old runs by start time; a run past max_events_per_run is flagged.
ALTER TABLE palisade_runs ADD COLUMN events_truncated BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX palisade_runs_by_start ON palisade_runs(started_at, run_id);
