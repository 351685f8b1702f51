-- The safe service's tables (sqlite). Keep in step with the other dialect's 0005_safe.sql.

-- What the chain says of each configured Safe (refreshed from RPC and the watcher's polls).
CREATE TABLE safe_accounts (
    safe            TEXT    NOT NULL PRIMARY KEY,
    chain_id        INTEGER NOT NULL,
    owners          TEXT    NOT NULL,
    threshold       INTEGER NOT NULL,
    nonce           INTEGER NOT NULL,
    version         TEXT    NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

-- The queue: every transaction proposed or submitted, with the event that announced it (to
-- announce it again, identically, when the request that caused it is redelivered).
CREATE TABLE safe_txs (
    safe_tx_hash    TEXT    NOT NULL PRIMARY KEY,
    safe            TEXT    NOT NULL,
    chain_id        INTEGER NOT NULL,
    nonce           INTEGER NOT NULL,
    origin_key      TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL,
    proposed        TEXT    NOT NULL,
    executed_tx     TEXT,
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX safe_txs_nonce ON safe_txs (safe, nonce);

-- Accepted signatures, one per owner and transaction.
CREATE TABLE safe_signatures (
    safe_tx_hash    TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    signature       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    submission_key  TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (safe_tx_hash, owner)
);

-- Transactions the relayer sent (several per Safe transaction when fees were bumped).
CREATE TABLE safe_relays (
    tx_hash         TEXT    NOT NULL PRIMARY KEY,
    safe_tx_hash    TEXT    NOT NULL,
    relayer         TEXT    NOT NULL,
    nonce           INTEGER NOT NULL,
    max_fee         TEXT    NOT NULL,
    priority_fee    TEXT    NOT NULL,
    sent_at_ms      INTEGER NOT NULL,
    status          TEXT    NOT NULL
);
CREATE INDEX safe_relays_safe_tx ON safe_relays (safe_tx_hash);
