-- Several servers on one store: the lease that elects the one doing work that must happen once,
-- the measurements other servers queue for it, and counters that tell servers a cache is stale.

CREATE TABLE leases (
    name        TEXT   NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    epoch       BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    renewed_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

CREATE TABLE queued_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms BIGINT NOT NULL,
    deployment TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    body       TEXT   NOT NULL
);

CREATE TABLE cache_generations (
    topic      TEXT   NOT NULL PRIMARY KEY,
    generation BIGINT NOT NULL
);
