-- Identity: users, API tokens and per-resource permissions. Passwords and token secrets are
-- stored only as argon2 hashes (PHC strings).

CREATE TABLE users (
    name          TEXT   NOT NULL PRIMARY KEY,
    role          TEXT   NOT NULL,
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_id    TEXT   NOT NULL PRIMARY KEY,
    user_name   TEXT   NOT NULL,
    secret_hash TEXT   NOT NULL,
    description TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);

-- MLflow's per-experiment and per-registered-model permissions; resource_id is the experiment
-- id or the registered model's name (kept in step on rename).
CREATE TABLE resource_permissions (
    user_name     TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    permission    TEXT NOT NULL,
    PRIMARY KEY (user_name, resource_type, resource_id)
);
CREATE INDEX resource_permissions_by_resource ON resource_permissions (resource_type, resource_id);

-- Bumped by every change to the tables above, so that every server sharing the database drops
-- the credentials it has cached.
CREATE TABLE identity_state (
    id         INTEGER NOT NULL PRIMARY KEY,
    generation BIGINT  NOT NULL
);
INSERT INTO identity_state (id, generation) VALUES (1, 0);
