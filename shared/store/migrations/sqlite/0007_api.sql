-- The api service's read model (sqlite). Keep in step with the other dialect's 0007_api.sql.
-- Built only from safe.* events (its own consumer), so an api pod needs nothing but the log
-- and this store. Rows are upserted: under redelivery an event may arrive after a later one.

-- Safe transactions as the Safe Transaction Service shows them. `proposed` (the
-- safe.tx.proposed payload, JSON) is NULL until that event is applied; such rows are not shown.
CREATE TABLE api_safe_txs (
    safe_tx_hash      TEXT    NOT NULL PRIMARY KEY,
    safe              TEXT,
    nonce             INTEGER,
    proposed          TEXT,
    proposer          TEXT,
    origin            TEXT,
    client_origin     TEXT,
    threshold         INTEGER,
    status            TEXT    NOT NULL,
    submitted_at_ms   INTEGER,
    modified_at_ms    INTEGER NOT NULL,
    executed_at_ms    INTEGER,
    transaction_hash  TEXT,
    block_number      INTEGER,
    executor          TEXT,
    gas_used          INTEGER,
    eth_gas_price     TEXT,
    failure           TEXT,
    superseded_by     TEXT
);
CREATE INDEX api_safe_txs_safe_nonce ON api_safe_txs (safe, nonce);

-- Accepted signatures (confirmations), one per owner and transaction.
CREATE TABLE api_confirmations (
    safe_tx_hash      TEXT    NOT NULL,
    owner             TEXT    NOT NULL,
    signature         TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    submitted_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (safe_tx_hash, owner)
);

-- The safe service's verdict on each submission (safe.signature.accepted or .rejected), by the
-- submission's event id (the verdict's causation id): what a waiting HTTP request answers with.
CREATE TABLE api_outcomes (
    causation_id      TEXT    NOT NULL PRIMARY KEY,
    event_type        TEXT    NOT NULL,
    safe_tx_hash      TEXT    NOT NULL,
    owner             TEXT,
    reason            TEXT,
    detail            TEXT,
    at_ms             INTEGER NOT NULL
);
