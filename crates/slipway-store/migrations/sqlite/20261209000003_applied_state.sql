-- The platform's state as code: the documents the latest `slipway apply` made the server
-- match (one row, with its revision). Objects named here are managed: a change made to them
-- another way shows as drift in `slipway diff`.
CREATE TABLE applied_state (
    id         BIGINT NOT NULL PRIMARY KEY,
    body       TEXT   NOT NULL,
    revision   BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);
