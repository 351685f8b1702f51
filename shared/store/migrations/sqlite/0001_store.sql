-- The store's own tables (SQLite). Keep in step with ../postgres/0001_store.sql: same
-- tables, same columns, same meaning, so service SQL is written once.
--
-- Portable column types only (INTEGER, TEXT): ids are hyphenated lowercase UUID text, times
-- are milliseconds since the Unix epoch (UTC), the envelope is its JSON text.

-- Every event, once, for audit queries and the API. Written by the `Archiver` projection.
CREATE TABLE event_archive (
    event_key       TEXT    NOT NULL PRIMARY KEY,
    sequence        INTEGER NOT NULL,
    id              TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    time_ms         INTEGER NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    chain_id        INTEGER,
    envelope        TEXT    NOT NULL,
    archived_at_ms  INTEGER NOT NULL
);
CREATE INDEX event_archive_sequence ON event_archive (sequence);
CREATE INDEX event_archive_correlation ON event_archive (correlation_id, sequence);
CREATE INDEX event_archive_type_time ON event_archive (event_type, time_ms);
CREATE INDEX event_archive_time ON event_archive (time_ms);

-- One row per (projection, event key) applied: the exactly-once marker, written in the same
-- transaction as the projection's read-model change.
CREATE TABLE projection_applied (
    projection      TEXT    NOT NULL,
    event_key       TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    applied_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (projection, event_key)
) WITHOUT ROWID;

-- Highest log sequence each projection has applied, and when it last advanced.
CREATE TABLE projection_positions (
    projection      TEXT    NOT NULL PRIMARY KEY,
    sequence        INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
