-- Every data plane's requests per deployment and minute, summed by the leader: what SLOs
-- (availability, latency) and their burn rates are measured on, kept a little longer than the
-- longest SLO window.

CREATE TABLE serving_minutes (
    deployment    TEXT   NOT NULL,
    minute_ms     BIGINT NOT NULL,
    requests      BIGINT NOT NULL,
    server_errors BIGINT NOT NULL,
    -- JSON: the latency histogram's counts (slipway_core::deployment::LatencyHistogram).
    latency       TEXT   NOT NULL,
    PRIMARY KEY (deployment, minute_ms)
);
CREATE INDEX serving_minutes_by_time ON serving_minutes (minute_ms);
