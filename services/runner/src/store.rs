//! The runner's tables (migration `0006_runner.sql`): runs as their events, the playbook
//! versions runs hold, dedup keys, schedules, and how far into the log the tables reach.
//!
//! Order of writes, per batch: the events go to the log first, then one transaction here, then
//! the triggering deliveries are acked. A crash after the log and before the transaction is
//! repaired at start: the runner reads its own events after the stored position back from the
//! log and folds them ([`replay_tail`]).

use std::sync::Arc;

use chrono::DateTime;
use steward_events::Envelope;
use steward_log::EventLog;
use steward_store::sqlx::{self, Row};
use steward_store::Store;

use crate::engine::Engine;
use crate::playbook::Playbook;

/// Compiles a stored version (its file's text and name) again.
pub type Recompile<'a> = &'a (dyn Fn(&str, &str) -> Result<Playbook, String> + Send + Sync);

fn ms(t: DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// Writes what changed in `engine` and the log position its events reach.
pub async fn save(store: &Store, engine: &mut Engine, position: Option<u64>) -> anyhow::Result<()> {
    let dirty = engine.take_dirty();
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = store.begin().await?;
    for v in &dirty.versions {
        let Some(pb) = engine.version(v) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO runner_versions (version, playbook, file, source, loaded_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(&pb.version)
        .bind(&pb.name)
        .bind(&pb.file)
        .bind(pb.source.as_ref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for key in &dirty.runs {
        let Some(run) = engine.any_run(key) else {
            continue;
        };
        let status = run.outcome.clone().unwrap_or_else(|| "running".to_owned());
        sqlx::query(
            "INSERT INTO runner_runs (run_key, playbook, version, status, events, started_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (run_key) DO UPDATE SET status = excluded.status, events = excluded.events, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&run.key)
        .bind(&run.playbook)
        .bind(&run.version)
        .bind(status)
        .bind(serde_json::to_string(&run.events)?)
        .bind(ms(run.started.time))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for k in &dirty.keys {
        let Some((last, active)) = engine.key_state(k) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO runner_keys (playbook, dedup_key, last_started_ms, active_run) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (playbook, dedup_key) DO UPDATE SET last_started_ms = excluded.last_started_ms, active_run = excluded.active_run",
        )
        .bind(&k.0)
        .bind(&k.1)
        .bind(ms(last))
        .bind(active.cloned())
        .execute(&mut *tx)
        .await?;
    }
    for s in &dirty.schedules {
        let Some(last) = engine.schedule_state(s) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO runner_schedules (playbook, trigger_index, last_fire_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (playbook, trigger_index) DO UPDATE SET last_fire_ms = excluded.last_fire_ms",
        )
        .bind(&s.0)
        .bind(s.1 as i64)
        .bind(ms(last))
        .execute(&mut *tx)
        .await?;
    }
    if let Some(p) = position {
        let p = i64::try_from(p).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO runner_position (id, sequence) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET sequence = CASE WHEN excluded.sequence > runner_position.sequence \
             THEN excluded.sequence ELSE runner_position.sequence END",
        )
        .bind(p)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn load_version(
    store: &Store,
    engine: &mut Engine,
    version: &str,
    recompile: Recompile<'_>,
) -> anyhow::Result<()> {
    if engine.has_version(version) {
        return Ok(());
    }
    let row = sqlx::query("SELECT source, file FROM runner_versions WHERE version = $1")
        .bind(version)
        .fetch_optional(store.pool())
        .await?;
    let Some(row) = row else {
        tracing::error!(
            version,
            "a run holds a playbook version the store does not have"
        );
        return Ok(());
    };
    let source: String = row.try_get(0)?;
    let file: String = row.try_get(1)?;
    match recompile(&source, &file) {
        Ok(pb) if pb.version == version => engine.add_version(pb),
        Ok(pb) => {
            tracing::error!(version, got = %pb.version, file, "a stored playbook version compiles to another version")
        }
        Err(e) => {
            tracing::error!(version, file, error = %e, "a stored playbook version no longer compiles; its runs cannot go on")
        }
    }
    Ok(())
}

/// Loads the stored state into `engine`; returns the log position it reaches.
pub async fn load(
    store: &Store,
    engine: &mut Engine,
    recompile: Recompile<'_>,
) -> anyhow::Result<u64> {
    let pool = store.pool();
    let versions = sqlx::query("SELECT DISTINCT version FROM runner_runs WHERE status = 'running'")
        .fetch_all(pool)
        .await?;
    for v in versions {
        let v: String = v.try_get(0)?;
        load_version(store, engine, &v, recompile).await?;
    }
    for r in sqlx::query("SELECT run_key FROM runner_runs WHERE status <> 'running'")
        .fetch_all(pool)
        .await?
    {
        engine.mark_finished(r.try_get(0)?);
    }
    for r in sqlx::query(
        "SELECT events FROM runner_runs WHERE status = 'running' ORDER BY started_at_ms",
    )
    .fetch_all(pool)
    .await?
    {
        let events: String = r.try_get(0)?;
        let events: Vec<Envelope> = serde_json::from_str(&events)?;
        for e in &events {
            engine.apply(e);
        }
    }
    for r in sqlx::query("SELECT playbook, dedup_key, last_started_ms, active_run FROM runner_keys")
        .fetch_all(pool)
        .await?
    {
        engine.restore_key(
            r.try_get(0)?,
            r.try_get(1)?,
            from_ms(r.try_get(2)?),
            r.try_get(3)?,
        );
    }
    for r in sqlx::query("SELECT playbook, trigger_index, last_fire_ms FROM runner_schedules")
        .fetch_all(pool)
        .await?
    {
        let i: i64 = r.try_get(1)?;
        engine.restore_schedule(r.try_get(0)?, i as usize, from_ms(r.try_get(2)?));
    }
    let position = sqlx::query("SELECT sequence FROM runner_position WHERE id = 1")
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(position).unwrap_or(0))
}

/// Folds the runner's own events after `from` (what a crash kept out of the tables) into
/// `engine`; returns the last sequence read.
pub async fn replay_tail(
    log: &Arc<dyn EventLog>,
    store: &Store,
    engine: &mut Engine,
    from: u64,
    recompile: Recompile<'_>,
) -> anyhow::Result<(u64, usize)> {
    let filters = vec!["playbook.>".to_owned()];
    let mut next = from + 1;
    let mut last = from;
    let mut folded = 0;
    loop {
        let batch = log.read(next, &filters, 1000).await?;
        if batch.is_empty() {
            break;
        }
        for s in &batch {
            if let Ok(p) = s.event.payload::<steward_events::PlaybookRunStarted>() {
                load_version(store, engine, &p.version, recompile).await?;
            }
            engine.apply(&s.event);
            folded += 1;
            last = last.max(s.sequence);
            next = s.sequence + 1;
        }
    }
    Ok((last, folded))
}
