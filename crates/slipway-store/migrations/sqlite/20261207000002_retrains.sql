-- Retraining: the triggers as applied from a triggers file (one document, with its revision),
-- and every firing of a trigger with what became of it (the causal chain: cause, pipeline run,
-- version, gate, rollout, decision).

CREATE TABLE trigger_config (
    id         BIGINT NOT NULL PRIMARY KEY,
    body       TEXT   NOT NULL,
    revision   BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);

CREATE TABLE retrains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_name    TEXT   NOT NULL,
    model_name      TEXT   NOT NULL,
    deployment      TEXT,
    state           TEXT   NOT NULL,
    cause           TEXT   NOT NULL,
    reason          TEXT,
    requested_by    TEXT   NOT NULL,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    claimed_by      TEXT,
    lease_until_ms  BIGINT,
    pipeline_run_id TEXT,
    version         BIGINT,
    gate_id         BIGINT,
    rollout_id      BIGINT
);
CREATE INDEX retrains_by_model ON retrains (model_name, id);
CREATE INDEX retrains_by_trigger ON retrains (trigger_name, id);
CREATE INDEX retrains_by_state ON retrains (state, id);
-- One retrain at a time per model, even when two firings race: the second insert fails.
CREATE UNIQUE INDEX retrains_one_active ON retrains (model_name)
    WHERE state IN ('queued', 'running', 'rolling_out', 'awaiting_approval');
