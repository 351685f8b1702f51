-- A queued transaction can be reopened (postgres). Keep in step with the other dialect's
-- 0008_safe_reopen.sql. `reopened` counts how often an execution that concluded it was
-- retracted by a reorg; events about the transaction after a reopening carry it in their keys.
ALTER TABLE safe_txs ADD COLUMN reopened BIGINT NOT NULL DEFAULT 0;
