-- The risk service's and the rebalancer's own tables (postgres). Keep in step with the other
-- dialect's 0004_risk.sql.

-- What the risk rules remember, one row per entity (`position|<chain>/<pool>/<user>`,
-- `feed|…`, `set|<name>`, `safe|…`): the state a restart loads back.
CREATE TABLE risk_entities (
    entity          TEXT    NOT NULL PRIMARY KEY,
    state           TEXT    NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);

-- The rebalancer's input: the latest assessment of each operator set (risk.operator_set.assessed).
CREATE TABLE rebalancer_sets (
    name            TEXT    NOT NULL PRIMARY KEY,
    sequence        BIGINT NOT NULL,
    assessment      TEXT    NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
