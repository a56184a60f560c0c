-- Alerting: the applied configuration (one document: receivers, route, rules), the alerts
-- that fired (kept after they resolve, as history), and silences.

-- One row: the configuration as applied from a rules file, with its revision. Receivers'
-- secrets are references (env:NAME, file:PATH); no secret value is ever stored.
CREATE TABLE alert_config (
    id         BIGINT NOT NULL PRIMARY KEY,
    body       TEXT   NOT NULL,
    revision   BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);

-- Every alert that fired: inserted when it fires, updated while it fires and when it
-- resolves. Pending alerts live in the evaluator's memory only. The newest 10,000 resolved
-- alerts are kept.
CREATE TABLE alerts (
    id              INTEGER NOT NULL PRIMARY KEY,
    fingerprint     TEXT   NOT NULL,
    alertname       TEXT   NOT NULL,
    deployment      TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    labels          TEXT   NOT NULL,
    annotations     TEXT   NOT NULL,
    value           REAL,
    active_since_ms BIGINT NOT NULL,
    fired_ms        BIGINT,
    resolved_ms     BIGINT,
    updated_ms      BIGINT NOT NULL
);
CREATE INDEX alerts_by_state ON alerts (state, id);
CREATE INDEX alerts_by_deployment ON alerts (deployment, id);
CREATE INDEX alerts_by_fingerprint ON alerts (fingerprint, id);

-- Silences hold back notifications; an expired one is kept (ends_ms moved to when it was
-- expired), so who silenced what and why stays readable.
CREATE TABLE alert_silences (
    id         INTEGER NOT NULL PRIMARY KEY,
    matchers   TEXT   NOT NULL,
    starts_ms  BIGINT NOT NULL,
    ends_ms    BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    comment    TEXT   NOT NULL
);
CREATE INDEX alert_silences_by_end ON alert_silences (ends_ms);
