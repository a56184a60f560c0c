-- Promotion policies, requests and decisions, and the history of every alias.

-- A registered model's policy (by name, kept in step on rename): which aliases and stages only
-- an approved promotion may set, how many approvals that takes, and the filter the source run
-- must pass (the search grammar, e.g. "metrics.auc >= 0.9 and tags.validation = 'passed'").
CREATE TABLE promotion_policies (
    model_name         TEXT   NOT NULL PRIMARY KEY,
    protected_aliases  TEXT   NOT NULL, -- JSON array of alias names
    protected_stages   TEXT   NOT NULL, -- JSON array of stage names
    required_approvals BIGINT NOT NULL,
    checks             TEXT,
    updated_at         BIGINT NOT NULL,
    updated_by         TEXT   NOT NULL
);

CREATE TABLE promotion_requests (
    id          INTEGER NOT NULL PRIMARY KEY,
    model_name  TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    target_kind TEXT   NOT NULL, -- 'alias' or 'stage'
    target      TEXT   NOT NULL, -- the alias or the stage name
    requester   TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    state       TEXT   NOT NULL, -- pending, approved, rejected
    created_at  BIGINT NOT NULL,
    decided_at  BIGINT
);
CREATE INDEX promotion_requests_by_model ON promotion_requests (model_name, state);

CREATE TABLE promotion_decisions (
    request_id BIGINT NOT NULL,
    approver   TEXT   NOT NULL,
    decision   TEXT   NOT NULL, -- 'approve' or 'reject'
    reason     TEXT   NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- Every move of every alias, so that an alias can be rolled back and lineage can say which
-- aliases a version held and when. version NULL: the alias was deleted.
CREATE TABLE alias_history (
    id               INTEGER NOT NULL PRIMARY KEY,
    model_name       TEXT   NOT NULL,
    alias            TEXT   NOT NULL,
    version          BIGINT,
    previous_version BIGINT,
    changed_at       BIGINT NOT NULL,
    via              TEXT   NOT NULL -- 'set_alias', 'delete_alias', 'promotion:<id>', 'rollback'
);
CREATE INDEX alias_history_by_alias ON alias_history (model_name, alias, id);
