-- The runner's own tables (sqlite). Keep in step with the other dialect's 0006_runner.sql.

-- Runs: every event of a run in order (JSON array of envelopes). A run's state is the fold of
-- these events; after a restart the runner folds them again, then the log's tail.
CREATE TABLE runner_runs (
    run_key         TEXT    NOT NULL PRIMARY KEY,
    playbook        TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    -- `running`, or the outcome: `succeeded`, `failed`.
    status          TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX runner_runs_status ON runner_runs (status);

-- Every playbook version the runner has loaded, so a run keeps its version across restarts
-- and reloads.
CREATE TABLE runner_versions (
    version         TEXT    NOT NULL PRIMARY KEY,
    playbook        TEXT    NOT NULL,
    file            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    loaded_at_ms    INTEGER NOT NULL
);

-- Dedup keys: when each key's last run started (cooldown) and the run holding it, if any.
CREATE TABLE runner_keys (
    playbook        TEXT    NOT NULL,
    dedup_key       TEXT    NOT NULL,
    last_started_ms INTEGER NOT NULL,
    active_run      TEXT,
    PRIMARY KEY (playbook, dedup_key)
);

-- Schedules: the last fire time handled per playbook trigger.
CREATE TABLE runner_schedules (
    playbook        TEXT    NOT NULL,
    trigger_index   INTEGER NOT NULL,
    last_fire_ms    INTEGER NOT NULL,
    PRIMARY KEY (playbook, trigger_index)
);

-- The highest log sequence of the runner's own events reflected in the tables above: after a
-- crash, the events after it are read back from the log and folded.
CREATE TABLE runner_position (
    id              INTEGER NOT NULL PRIMARY KEY,
    sequence        INTEGER NOT NULL
);
