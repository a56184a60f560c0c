-- Ground truth for logged predictions, joined by the request id every response carries. A
-- label arrives late (days, weeks): a later one for the same request replaces the earlier.
CREATE TABLE deployment_labels (
    deployment TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    -- JSON: one value for a single-row request, or one per row.
    label      TEXT   NOT NULL,
    time_ms    BIGINT NOT NULL,
    PRIMARY KEY (deployment, request_id)
);

-- The join from a logged prediction to its label, and labels matched on upload.
CREATE INDEX prediction_log_by_request ON prediction_log (deployment, request_id);
