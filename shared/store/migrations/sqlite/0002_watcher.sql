-- The watcher's own tables (sqlite). Keep in step with ../postgres/0002_watcher.sql.
--
-- Per chain (by chain id): the last block fully ingested, the recent blocks kept to detect and
-- undo reorgs, the last value reported per state poll, values the watcher learned (borrowers
-- seen in Borrow events, proposals seen in ProposalCreated, aggregators behind proxies), and
-- the progress of backfills. Hashes are 0x hex text; JSON is text.

-- Where the live watcher resumes: every block up to and including this one is in the log.
CREATE TABLE watcher_cursors (
    chain_id        INTEGER NOT NULL PRIMARY KEY,
    block_number    INTEGER NOT NULL,
    block_hash      TEXT    NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

-- Recent blocks (the reorg window) and the events emitted from each, so a reorg can name what
-- it retracted. Blocks ingested in bulk (far below the head) keep only the last of each range.
CREATE TABLE watcher_blocks (
    chain_id        INTEGER NOT NULL,
    block_number    INTEGER NOT NULL,
    block_hash      TEXT    NOT NULL,
    parent_hash     TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);

-- Last value reported per state poll (for `emit: on_change`).
CREATE TABLE watcher_values (
    chain_id        INTEGER NOT NULL,
    call_id         TEXT    NOT NULL,
    block_number    INTEGER NOT NULL,
    value           TEXT    NOT NULL,
    PRIMARY KEY (chain_id, call_id)
);

-- Values of pack parameters the watcher discovered in events (e.g. Aave borrowers).
CREATE TABLE watcher_params (
    chain_id        INTEGER NOT NULL,
    watch           TEXT    NOT NULL,
    param           TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    block_number    INTEGER NOT NULL,
    PRIMARY KEY (chain_id, watch, param, value)
);

-- Backfills (`steward watch backfill`): the next block to ingest, so a restart resumes there.
CREATE TABLE watcher_backfills (
    chain_id        INTEGER NOT NULL,
    from_block      INTEGER NOT NULL,
    to_block        INTEGER NOT NULL,
    next_block      INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (chain_id, from_block, to_block)
);
