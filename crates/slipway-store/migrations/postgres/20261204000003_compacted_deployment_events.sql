-- A run of identical inconclusive analyses is one event with a count: the controller re-reads
-- a growing window every interval, and one row per reading buried the stage changes.
-- `compact_key` says which events may merge; NULL never merges.
ALTER TABLE deployment_events ADD COLUMN compact_key TEXT;
ALTER TABLE deployment_events ADD COLUMN event_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE deployment_events ADD COLUMN last_time_ms BIGINT;
