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

-- What the relayer accounts must send, in order per relayer: execTransaction of a ready
-- Safe transaction, or the steps of a liquidation (an ERC-20 approval, liquidationCall).
CREATE TABLE relay_jobs (
    job_key         TEXT    NOT NULL PRIMARY KEY,
    relayer         TEXT    NOT NULL,
    chain_id        INTEGER  NOT NULL,
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    safe_tx_hash    TEXT,
    liquidation_key TEXT,
    status          TEXT    NOT NULL,
    detail          TEXT,
    created_at_ms   INTEGER  NOT NULL,
    seq             INTEGER  NOT NULL
);
CREATE INDEX relay_jobs_open ON relay_jobs (relayer, status, seq);

-- Every transaction the relayer signed and sent (several per job when fees were bumped).
CREATE TABLE relay_attempts (
    tx_hash         TEXT    NOT NULL PRIMARY KEY,
    job_key         TEXT    NOT NULL,
    nonce           INTEGER  NOT NULL,
    max_fee         TEXT    NOT NULL,
    priority_fee    TEXT    NOT NULL,
    gas_limit       INTEGER  NOT NULL,
    sent_at_ms      INTEGER  NOT NULL
);
CREATE INDEX relay_attempts_job ON relay_attempts (job_key, sent_at_ms);

-- Liquidations requested: the request, how it goes (a Safe transaction or relayer jobs), and
-- its outcome event once there is one (announced again, identically, on redelivery).
CREATE TABLE safe_liquidations (
    liquidation_key TEXT    NOT NULL PRIMARY KEY,
    request         TEXT    NOT NULL,
    safe_tx_hash    TEXT,
    outcome         TEXT,
    created_at_ms   INTEGER  NOT NULL
);
