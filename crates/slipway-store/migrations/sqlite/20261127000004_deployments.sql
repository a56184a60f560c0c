-- Managed deployments, their history of decisions, and the prediction log.

-- One row per deployment. The body is the whole deployment as JSON (the rollout state machine
-- evolves faster than a column layout should); name, model and revision are columns because
-- they are looked up and compared. Every update is compare-and-set on revision.
CREATE TABLE deployments (
    name       TEXT   NOT NULL PRIMARY KEY,
    model_name TEXT   NOT NULL,
    revision   BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX deployments_by_model ON deployments (model_name);

-- What happened to a deployment: creation, rollouts, every analysis with its measurements,
-- stage changes, promotions and rollbacks. Kept after the deployment is deleted.
CREATE TABLE deployment_events (
    seq        INTEGER NOT NULL PRIMARY KEY,
    deployment TEXT   NOT NULL,
    time_ms    BIGINT NOT NULL,
    rollout_id BIGINT,
    kind       TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    detail     TEXT   NOT NULL
);
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment, seq);

-- Sampled requests and answers of every deployment: the input of drift monitoring.
CREATE TABLE prediction_log (
    id            INTEGER NOT NULL PRIMARY KEY,
    deployment    TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    time_ms       BIGINT NOT NULL,
    variant       TEXT   NOT NULL,
    model_version TEXT   NOT NULL,
    inputs        TEXT   NOT NULL,
    outputs       TEXT   NOT NULL,
    latency_us    BIGINT NOT NULL
);
CREATE INDEX prediction_log_by_deployment ON prediction_log (deployment, id);
