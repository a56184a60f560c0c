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
-- Runs take most of the entries (every log-batch) at random places of a resource index, and each
-- such insert dirties its own page in every commit: on SQLite's single writer that cost a fifth
-- of single-metric throughput. Runs' entries are therefore left out of the index (a query for
-- one run scans), and there is no index by actor (forensics by actor scan too).
CREATE INDEX audit_log_by_resource ON audit_log (resource, seq)
    WHERE substr(resource, 1, 4) <> 'run:';

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

-- INSERT OR REPLACE deletes the old row without firing delete triggers; entries only ever go
-- after the last one.
CREATE TRIGGER audit_log_append_at_end BEFORE INSERT ON audit_log
WHEN NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_log)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
