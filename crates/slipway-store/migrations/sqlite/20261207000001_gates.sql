-- Release gates the server ran: one row per gate, newest last. A promotion policy that
-- requires a gate reads these, never the version's tags (which only mirror the newest).
CREATE TABLE gate_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name       TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    champion_version BIGINT,
    passed           BIGINT NOT NULL,
    data_uri         TEXT   NOT NULL,
    data_sha256      TEXT   NOT NULL,
    rules_json       TEXT   NOT NULL,
    rules_source     TEXT   NOT NULL,
    run_id           TEXT,
    metrics_json     TEXT   NOT NULL,
    report_json      TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    created_by       TEXT   NOT NULL
);
CREATE INDEX gate_results_by_version ON gate_results (model_name, version, id);

-- A policy may require a passed gate, judged by its rules on its pinned holdout.
ALTER TABLE promotion_policies ADD COLUMN require_gate BIGINT NOT NULL DEFAULT 0;
ALTER TABLE promotion_policies ADD COLUMN gate_rules TEXT;
ALTER TABLE promotion_policies ADD COLUMN gate_data TEXT;
ALTER TABLE promotion_policies ADD COLUMN gate_data_sha256 TEXT;
