-- slipway schema v1 (SQLite). Times are epoch milliseconds, ids TEXT or INTEGER, JSON as TEXT.
-- Kept in step with ../postgres/ by hand: the contract suite runs the same assertions on both.

CREATE TABLE experiments (
    experiment_id     INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    artifact_location TEXT    NOT NULL,
    lifecycle_stage   TEXT    NOT NULL,
    creation_time     BIGINT  NOT NULL,
    last_update_time  BIGINT  NOT NULL
);

CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL,
    key           TEXT   NOT NULL,
    value         TEXT   NOT NULL,
    PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;

CREATE TABLE runs (
    run_id          TEXT   PRIMARY KEY,
    experiment_id   BIGINT NOT NULL,
    name            TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    start_time      BIGINT NOT NULL,
    end_time        BIGINT,
    lifecycle_stage TEXT   NOT NULL,
    artifact_uri    TEXT   NOT NULL,
    deleted_time    BIGINT
);
-- The default listing: newest first within an experiment.
CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time DESC, run_id);

CREATE TABLE params (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE INDEX params_by_key_value ON params (key, value);

CREATE TABLE tags (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE INDEX tags_by_key_value ON tags (key, value);

-- Metric history in chunks: one row per metric key per log-batch, the points packed in a
-- blob of little-endian (timestamp i64, step i64, value f64) triples (NaN and infinities kept
-- bit-exact). A 1000-point batch is a handful of rows, and a 100k-step history ~100 of them.
-- Identical points from a retried request are collapsed when read.
CREATE TABLE metric_chunks (
    chunk_id       INTEGER PRIMARY KEY,
    run_id         TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    model_id       TEXT,
    dataset_name   TEXT,
    dataset_digest TEXT,
    min_timestamp  BIGINT NOT NULL,
    max_timestamp  BIGINT NOT NULL,
    point_count    BIGINT NOT NULL,
    points         BLOB   NOT NULL
);
CREATE INDEX metric_chunks_by_run_key ON metric_chunks (run_id, key, min_timestamp);

-- The latest point of each metric (greatest step, timestamp, value): what get-run shows and
-- what search filters and sorts on, without touching the history. The run's experiment is
-- copied here (runs never move) so "best runs of an experiment by a metric" is one index range
-- scan in value order that stops at the page's end.
CREATE TABLE latest_metrics (
    run_id        TEXT   NOT NULL,
    key           TEXT   NOT NULL,
    experiment_id BIGINT NOT NULL,
    value         REAL   NOT NULL,
    timestamp     BIGINT NOT NULL,
    step          BIGINT NOT NULL,
    is_nan        BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE INDEX latest_metrics_by_key_value ON latest_metrics (key, value);
CREATE INDEX latest_metrics_by_experiment_key_value ON latest_metrics (experiment_id, key, value);

CREATE TABLE datasets (
    dataset_id    TEXT   PRIMARY KEY,
    experiment_id BIGINT NOT NULL,
    name          TEXT   NOT NULL,
    digest        TEXT   NOT NULL,
    source_type   TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    schema        TEXT,
    profile       TEXT,
    UNIQUE (experiment_id, name, digest)
);

CREATE TABLE run_inputs (
    run_id     TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    -- The input's tags as a JSON array of {"key","value"}; context is copied out for search.
    tags_json  TEXT NOT NULL,
    context    TEXT,
    position   BIGINT NOT NULL,
    PRIMARY KEY (run_id, dataset_id)
) WITHOUT ROWID;
CREATE INDEX run_inputs_by_dataset ON run_inputs (dataset_id);

CREATE TABLE run_model_inputs (
    run_id   TEXT NOT NULL,
    model_id TEXT NOT NULL,
    PRIMARY KEY (run_id, model_id)
) WITHOUT ROWID;

CREATE TABLE run_model_outputs (
    run_id   TEXT   NOT NULL,
    model_id TEXT   NOT NULL,
    step     BIGINT NOT NULL,
    PRIMARY KEY (run_id, model_id)
) WITHOUT ROWID;

CREATE TABLE logged_models (
    model_id          TEXT   PRIMARY KEY,
    experiment_id     BIGINT NOT NULL,
    name              TEXT   NOT NULL,
    artifact_uri      TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    model_type        TEXT,
    source_run_id     TEXT,
    status_message    TEXT,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    lifecycle_stage   TEXT   NOT NULL
);
CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, creation_time DESC);

CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID;

CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID;

CREATE TABLE logged_model_metrics (
    model_id       TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    timestamp      BIGINT NOT NULL,
    step           BIGINT NOT NULL,
    value          REAL   NOT NULL,
    is_nan         BIGINT NOT NULL,
    run_id         TEXT,
    dataset_name   TEXT,
    dataset_digest TEXT,
    PRIMARY KEY (model_id, key, timestamp, step, value, is_nan)
) WITHOUT ROWID;

-- Registered models have a surrogate id so a rename is one UPDATE, not a cascade.
CREATE TABLE registered_models (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    creation_time     BIGINT  NOT NULL,
    last_updated_time BIGINT  NOT NULL,
    description       TEXT,
    user_id           TEXT,
    -- Versions are never reused after deletion, so the counter lives here.
    next_version      BIGINT  NOT NULL
);

CREATE TABLE registered_model_tags (
    model_id BIGINT NOT NULL,
    key      TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID;

CREATE TABLE registered_model_aliases (
    model_id BIGINT NOT NULL,
    alias    TEXT   NOT NULL,
    version  BIGINT NOT NULL,
    PRIMARY KEY (model_id, alias)
) WITHOUT ROWID;

CREATE TABLE model_versions (
    model_id          BIGINT NOT NULL,
    version           BIGINT NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description       TEXT,
    user_id           TEXT,
    current_stage     TEXT   NOT NULL,
    source            TEXT   NOT NULL,
    run_id            TEXT,
    run_link          TEXT,
    status            TEXT   NOT NULL,
    status_message    TEXT,
    logged_model_id   TEXT,
    PRIMARY KEY (model_id, version)
) WITHOUT ROWID;
CREATE INDEX model_versions_by_run ON model_versions (run_id);

CREATE TABLE model_version_tags (
    model_id BIGINT NOT NULL,
    version  BIGINT NOT NULL,
    key      TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (model_id, version, key)
) WITHOUT ROWID;
