-- The store's own tables (PostgreSQL). Keep in step with ../sqlite/0001_store.sql: same
-- tables, same columns, same meaning, so service SQL is written once.
--
-- Portable column types only: the sqlx Any driver decodes TEXT, BIGINT, INTEGER, BOOLEAN,
-- DOUBLE and BYTEA, not UUID, JSONB or TIMESTAMPTZ. Ids are hyphenated lowercase UUID text,
-- times are milliseconds since the Unix epoch (UTC), the envelope is its JSON text.

-- Every event, once, for audit queries and the API. Written by the `Archiver` projection.
CREATE TABLE event_archive (
    event_key       TEXT    PRIMARY KEY,
    sequence        BIGINT  NOT NULL,
    id              TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    time_ms         BIGINT  NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    chain_id        BIGINT,
    envelope        TEXT    NOT NULL,
    archived_at_ms  BIGINT  NOT NULL
);
CREATE INDEX event_archive_sequence ON event_archive (sequence);
CREATE INDEX event_archive_correlation ON event_archive (correlation_id, sequence);
-- text_pattern_ops lets `event_type LIKE 'prefix.%'` use the index whatever the collation.
CREATE INDEX event_archive_type_time ON event_archive (event_type text_pattern_ops, time_ms);
CREATE INDEX event_archive_time ON event_archive (time_ms);

-- One row per (projection, event key) applied: the exactly-once marker, written in the same
-- transaction as the projection's read-model change.
CREATE TABLE projection_applied (
    projection      TEXT    NOT NULL,
    event_key       TEXT    NOT NULL,
    sequence        BIGINT  NOT NULL,
    applied_at_ms   BIGINT  NOT NULL,
    PRIMARY KEY (projection, event_key)
);

-- Highest log sequence each projection has applied, and when it last advanced.
CREATE TABLE projection_positions (
    projection      TEXT    PRIMARY KEY,
    sequence        BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL
);
