-- Encryption at rest: the data keys the prediction log and labels are sealed under, each
-- wrapped by the operator's master key (which is never stored).

CREATE TABLE data_keys (
    id            TEXT   NOT NULL PRIMARY KEY,
    master_key_id TEXT   NOT NULL,
    wrapped       TEXT   NOT NULL,
    created_ms    BIGINT NOT NULL
);
