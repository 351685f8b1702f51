-- The notifier's own tables (postgres). Keep in step with ../sqlite/0003_notifier.sql.
--
-- The outbox holds every message the notifier owes, rendered, with its delivery state and retry
-- schedule, so a restart resumes where the last run stopped and nothing is sent twice. The
-- other tables are read models for the bot's /status and /queue, kept from events, and the
-- bot's position in Telegram's update stream.

-- One row per message per destination (a Telegram chat, or an e-mail channel's recipients).
-- id = derive_key(request key, "notify/<channel>/<destination>"): a request delivered twice
-- finds its rows and adds none.
CREATE TABLE notifier_outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    request_key     TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    transport       TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    recipients      TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    template        TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    body_html       TEXT    NOT NULL,
    buttons         TEXT    NOT NULL,
    -- pending | held (flood control, waiting for a digest) | sending | sent | failed |
    -- digested (went out inside a digest) | unconfirmed (the process stopped mid-send)
    status          TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_ms BIGINT  NOT NULL,
    last_error      TEXT,
    digest_id       TEXT,
    message_id      TEXT,
    -- 1 once notify.delivered / notify.failed for this row is in the log.
    reported        BIGINT  NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL
);
CREATE INDEX notifier_outbox_due ON notifier_outbox (status, next_attempt_ms);
CREATE INDEX notifier_outbox_destination ON notifier_outbox (transport, destination, created_at_ms);
CREATE INDEX notifier_outbox_unreported ON notifier_outbox (reported, status);

-- Telegram chats subscribed through the bot (from notify.subscription.* events).
CREATE TABLE notifier_subscriptions (
    chat_id         BIGINT  NOT NULL,
    subscription    TEXT    NOT NULL,
    user_id         BIGINT,
    created_at_ms   BIGINT  NOT NULL,
    PRIMARY KEY (chat_id, subscription)
);

-- Open risks (risk.* events whose condition has not cleared), for /status.
CREATE TABLE notifier_risks (
    risk_key        TEXT    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    chain_id        BIGINT,
    updated_at_ms   BIGINT  NOT NULL
);

-- Safe transactions proposed and not yet executed, failed or superseded, for /queue.
CREATE TABLE notifier_safe_txs (
    safe_tx_hash    TEXT    NOT NULL PRIMARY KEY,
    safe            TEXT    NOT NULL,
    chain_id        BIGINT,
    nonce           BIGINT  NOT NULL,
    reason          TEXT    NOT NULL,
    confirmations   BIGINT  NOT NULL,
    threshold       BIGINT  NOT NULL,
    ready           BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL
);

-- Messages that finally failed (notify.failed), for /status.
CREATE TABLE notifier_failures (
    failure_key     TEXT    NOT NULL PRIMARY KEY,
    request_key     TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    error           TEXT    NOT NULL,
    failed_at_ms    BIGINT  NOT NULL
);

-- The bot's next getUpdates offset: updates below it were handled.
CREATE TABLE notifier_telegram (
    bot             TEXT    NOT NULL PRIMARY KEY,
    update_offset   BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL
);
