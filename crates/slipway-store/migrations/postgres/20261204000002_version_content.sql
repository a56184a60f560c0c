-- What a registered version's files were when it was created (issue: registered files are
-- immutable): the folder's path in the artifact store, its manifest (JSON: path, size, SHA-256
-- per file) and the manifest's digest. Uploads and deletes under storage_path are refused while
-- the version exists; every load is checked against the manifest.
CREATE TABLE model_version_content (
    model_id     BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    storage_path TEXT   NOT NULL,
    digest       TEXT   NOT NULL,
    manifest     TEXT   NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE INDEX model_version_content_by_path ON model_version_content (storage_path);
