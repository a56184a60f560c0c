-- Drift monitoring: each model version's reference, and the closed windows of every
-- deployment's live traffic compared with it. Profiles and reports are the monitoring engine's
-- JSON; the columns are what is looked up.

-- One reference per model version; a new one replaces it (audited).
CREATE TABLE monitor_references (
    model_name   TEXT   NOT NULL,
    version      BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    created_by   TEXT   NOT NULL,
    row_count    BIGINT NOT NULL,
    label_column TEXT,
    schema_json  TEXT   NOT NULL,
    summary_json TEXT   NOT NULL,
    performance  TEXT,
    PRIMARY KEY (model_name, version)
);

-- Measurements, not decisions: no audit entries; the newest windows per deployment are kept.
CREATE TABLE monitor_windows (
    id         INTEGER NOT NULL PRIMARY KEY,
    deployment TEXT   NOT NULL,
    model_name TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    start_ms   BIGINT NOT NULL,
    end_ms     BIGINT NOT NULL,
    row_count  BIGINT NOT NULL,
    report     TEXT   NOT NULL
);
CREATE INDEX monitor_windows_by_deployment ON monitor_windows (deployment, id);
