-- The audit trail: one row per mutation or denied request, appended in the transaction of the
-- change, hash-chained (slipway-core/src/audit.rs). The triggers refuse UPDATE and DELETE; the
-- chain catches whoever drops them.

CREATE TABLE audit_log (
    seq        INTEGER NOT NULL PRIMARY KEY,
    time_ms    BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    request_id TEXT,
    outcome    TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX audit_log_by_resource ON audit_log (resource, seq);
CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);

-- The chain's end, so that entries cut off the end are noticed too. One row.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY,
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
