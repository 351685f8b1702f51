-- Relayed work follows reorgs (postgres). Keep in step with the other dialect's
-- 0009_relay_reorg.sql. `mined_block`: the block a job's transaction was mined in (set when
-- its receipt is seen), so a reorg below it can find the jobs whose transactions it retracted.
-- `reopened`: how often a liquidation's outcome was retracted by a reorg; the next outcome
-- event carries it in its key.
ALTER TABLE relay_jobs ADD COLUMN mined_block BIGINT;
ALTER TABLE safe_liquidations ADD COLUMN reopened BIGINT NOT NULL DEFAULT 0;
