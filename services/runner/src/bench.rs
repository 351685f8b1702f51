//! `steward bench runner`: events per second matched against many loaded playbooks (the
//! engine: trigger patterns, CEL conditions, runs started), and the time from an event's
//! append to the request it causes being in the log, through the whole service (embedded log,
//! SQLite store).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_config::MapEnv;
use steward_events::{derive_key, Envelope, RiskOracleStale, RiskPositionLiquidatable, Severity};

use crate::engine::Engine;
use crate::playbook::{self, CheckContext, Playbook};

/// Playbook `i` of a benchmark set: every tenth reacts to liquidatable positions of its own
/// pool, the others to other event types, each with a condition; the notification shows a
/// field of the event (one its types have: the checks refuse any other).
pub fn playbook_text(i: usize) -> String {
    let (pattern, cond, shown) = match i % 10 {
        0 => (
            "risk.position.liquidatable",
            format!("event.data.active && event.data.pool == '0x{:040x}'", i + 1),
            "user",
        ),
        1 => (
            "risk.oracle.*",
            format!("event.data.active && event.data.asset == 'asset{i}'"),
            "asset",
        ),
        2 => (
            "risk.position.*",
            format!("event.data.active && event.data.user == '0x{:040x}'", i + 7),
            "user",
        ),
        3 => (
            "chain.state.observed",
            format!("event.data.function == 'state(uint256)' && event.data.value['0'] == '{i}'"),
            "address",
        ),
        4 => ("risk.safe.drift", "event.data.active".to_owned(), "safe"),
        5 => (
            "risk.operator_set.assessed",
            format!("size(event.data.breaches) > {i}"),
            "operator_set",
        ),
        6 => (
            "chain.log.observed",
            format!("event.data.event == 'Event{i}'"),
            "address",
        ),
        7 => (
            "risk.oracle.deviation",
            format!("event.data.deviation_bps > {}", 10_000 + i),
            "asset",
        ),
        8 => (
            "safe.tx.executed",
            format!("event.data.nonce == {}", 1_000_000 + i),
            "safe",
        ),
        _ => (
            "risk.operator.slashed",
            format!("event.data.operator == 'op{i}'"),
            "operator",
        ),
    };
    format!(
        "name: bench-{i}\non:\n  - event: {pattern}\n    where: \"{cond}\"\ndedup: \"{{{{event.key}}}}\"\nsteps:\n  - id: tell\n    notify:\n      channels: [ops]\n      severity: high\n      context:\n        {shown}: \"{{{{event.data.{shown}}}}}\"\n"
    )
}

pub fn playbooks(n: usize) -> anyhow::Result<Vec<Playbook>> {
    (0..n)
        .map(|i| {
            playbook::parse(
                &playbook_text(i),
                &format!("bench-{i}.yaml"),
                &MapEnv::new(),
                &CheckContext::default(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
        })
        .collect()
}

/// A liquidatable position of pool `pool` (the bench playbook `pool - 1` reacts to it when
/// `pool % 10 == 1`).
pub fn liquidatable(n: usize, pool: usize) -> Envelope {
    Envelope::new(
        "risk",
        format!("bench:{n}"),
        &RiskPositionLiquidatable {
            protocol: "aave-v3".into(),
            pool: format!("0x{pool:040x}"),
            user: format!("0x{:040x}", n + 1_000_000),
            health_factor: "950000000000000000".into(),
            total_collateral_base: "1000000000000".into(),
            total_debt_base: "990000000000".into(),
            close_factor_bps: 10_000,
            max_debt_to_cover_base: "990000000000".into(),
            severity: Severity::High,
            block_number: 1,
            active: true,
            expected_collateral_base: None,
            liquidation_bonus_bps: None,
        },
    )
}

/// Events matched per second by the engine with `n` playbooks loaded; one event in ten starts a
/// run (and its notification).
pub fn throughput(n: usize, events: usize) -> anyhow::Result<(f64, usize)> {
    let mut engine = Engine::new(HashMap::new());
    for pb in playbooks(n)? {
        engine.load(pb);
    }
    let input: Vec<Envelope> = (0..events)
        .map(|k| {
            if k % 10 == 0 {
                liquidatable(k, 1)
            } else if k % 2 == 0 {
                liquidatable(k, 999_999)
            } else {
                Envelope::new(
                    "risk",
                    format!("bench:{k}"),
                    &RiskOracleStale {
                        asset: format!("asset{}", k % 1000 + 2000),
                        feed: "0x0000000000000000000000000000000000000001".into(),
                        age_secs: 4000,
                        heartbeat_secs: 3600,
                        last_answer: "1".into(),
                        severity: Severity::High,
                        active: true,
                    },
                )
            }
        })
        .collect();
    let now = chrono::Utc::now();
    let started = Instant::now();
    let mut emitted = 0;
    for e in &input {
        engine.on_event(e, now);
        emitted += engine.take_out().len();
        engine.take_finished_runs();
        engine.take_dirty();
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(emitted > 0, "no playbook matched");
    Ok((rate, emitted))
}

/// Latencies (append → request in the log) through the service with `n` playbooks, `samples`
/// triggering events paced at `rate` per second.
pub async fn latency(n: usize, samples: usize, rate: f64) -> anyhow::Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("playbooks");
    std::fs::create_dir_all(&folder)?;
    for i in 0..n {
        std::fs::write(folder.join(format!("bench-{i}.yaml")), playbook_text(i))?;
    }
    let cfg = crate::harness::config(
        "playbooks: {folder: playbooks}\nnotify:\n  telegram: {bot_token: \"0:bench\"}\n  channels:\n    - {name: ops, telegram: {chats: [1]}}\n",
        dir.path(),
    )?;
    let mut h =
        crate::harness::Harness::start(dir.path(), cfg, Arc::new(crate::SystemClock)).await?;
    let log = h.log.clone();
    // The request a trigger causes: derived from the run (derived from the event) by the step.
    let expected = |e: &Envelope| derive_key(&derive_key(&e.key, "playbook/bench-0"), "step/tell");
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let start_seq = log.last_sequence().await? + 1;
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(String, Instant)> = Vec::new();
            let mut next = start_seq;
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen.len() < samples && Instant::now() < deadline {
                let batch = log
                    .read(next, &["notify.requested".to_owned()], 1000)
                    .await?;
                let at = Instant::now();
                for s in &batch {
                    next = s.sequence + 1;
                    seen.push((s.event.key.clone(), at));
                }
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }
            anyhow::Ok(seen)
        })
    };
    let gap = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now();
    for k in 0..samples {
        let due = t0 + gap * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let e = liquidatable(k, 1);
        sent.insert(expected(&e), Instant::now());
        log.append(std::slice::from_ref(&e)).await?;
    }
    let seen = reader.await??;
    h.stop().await?;
    let mut lat: Vec<Duration> = seen
        .into_iter()
        .filter_map(|(k, at)| sent.get(&k).map(|s| at.duration_since(*s)))
        .collect();
    anyhow::ensure!(
        lat.len() == samples,
        "{} of {samples} requests arrived",
        lat.len()
    );
    lat.sort();
    Ok(lat)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmark_playbooks_load() {
        // `steward bench runner` loads 100 by default.
        assert_eq!(super::playbooks(100).unwrap().len(), 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_latency_run_sees_every_request() {
        let lat = super::latency(10, 5, 200.0).await.unwrap();
        assert_eq!(lat.len(), 5);
        assert!(lat.windows(2).all(|w| w[0] <= w[1]), "sorted");
    }

    #[test]
    fn one_event_in_ten_starts_a_run() {
        let (_, emitted) = super::throughput(10, 100).unwrap();
        // Ten runs: each writes run started, step completed, the request and run finished.
        assert_eq!(emitted, 40);
    }
}
