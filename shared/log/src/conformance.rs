//! The conformance suite: the semantics of [`EventLog`](crate::EventLog) that every backend
//! must show, written once. `tests/conformance.rs` runs it against the embedded backend and
//! a real nats-server.
//!
//! Each check panics with a message naming the violated rule; they are public so a new
//! backend is held to the same suite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use steward_events::{
    ChainBlockObserved, Envelope, LogEventDeadLettered, NotifyRequested, Payload, Severity,
};

use crate::{ConsumerSpec, DeliverFrom, EventLog, HandlerError, LogMetrics, Subscription};

/// What the suite needs from a backend.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A fresh, empty log.
    async fn fresh(&self) -> Arc<dyn EventLog>;
    /// Simulate a crash of the process: drop every in-process handle on `log` and return a
    /// new handle on the same stored data.
    async fn crash(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog>;
    /// Shortest ack wait the backend honours reliably (redelivery tests wait for it).
    fn ack_wait(&self) -> Duration;
}

const WAIT: Duration = Duration::from_millis(1500);

/// A block event on `chain` with a unique key.
pub fn block(chain: u64, n: u64) -> Envelope {
    Envelope::new(
        "test",
        format!("{chain}:block:{n}"),
        &ChainBlockObserved {
            number: n,
            hash: format!("0x{n:x}"),
            parent_hash: format!("0x{:x}", n.saturating_sub(1)),
            timestamp: n,
        },
    )
    .with_chain(chain)
}

/// A notify event with a unique key.
pub fn notify(n: u64) -> Envelope {
    let mut p = NotifyRequested::example();
    p.template = format!("t{n}");
    Envelope::new("test", format!("notify:{n}"), &p)
}

fn spec(name: &str, h: &dyn Harness) -> ConsumerSpec {
    ConsumerSpec::new(name)
        .ack_wait(h.ack_wait())
        .backoff(vec![Duration::ZERO])
        .max_deliver(3)
}

async fn drain(sub: &Subscription, want: usize) -> Vec<crate::Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let batch = sub.fetch(want - got.len(), WAIT).await.expect("fetch");
        got.extend(batch);
    }
    got
}

pub async fn append_assigns_increasing_sequences(h: &dyn Harness) {
    let log = h.fresh().await;
    assert_eq!(
        log.last_sequence().await.unwrap(),
        0,
        "a fresh log is empty"
    );
    let events: Vec<_> = (0..100).map(|i| block(1, i)).collect();
    let out = log.append(&events).await.unwrap();
    assert_eq!(out.len(), 100, "one outcome per event");
    assert!(out.iter().all(|a| !a.duplicate));
    assert!(
        out.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
        "sequences are dense and in input order"
    );
    assert_eq!(log.last_sequence().await.unwrap(), out[99].sequence);
    let read = log.read(out[0].sequence, &[], 1000).await.unwrap();
    assert_eq!(read.len(), 100);
    for (i, s) in read.iter().enumerate() {
        assert_eq!(
            s.event, events[i],
            "stored event {i} equals what was appended"
        );
        assert_eq!(s.subject, events[i].subject(log.prefix()));
    }
}

pub async fn duplicate_keys_are_dropped(h: &dyn Harness) {
    let log = h.fresh().await;
    let a = block(1, 1);
    let first = log.append(std::slice::from_ref(&a)).await.unwrap()[0];
    // Same key again (a retry of the same step produces a new id but the same key).
    let mut retry = block(1, 1);
    retry.id = uuid::Uuid::now_v7();
    let again = log.append(&[retry, block(1, 2)]).await.unwrap();
    assert!(again[0].duplicate, "same key is a duplicate");
    assert_eq!(
        again[0].sequence, first.sequence,
        "a duplicate reports the earlier sequence"
    );
    assert!(!again[1].duplicate);
    // Duplicates inside one batch.
    let batch = log.append(&[block(1, 3), block(1, 3)]).await.unwrap();
    assert!(!batch[0].duplicate && batch[1].duplicate);
    assert_eq!(batch[0].sequence, batch[1].sequence);
    let all = log.read(1, &[], 100).await.unwrap();
    assert_eq!(all.len(), 3, "duplicates are not stored");
    assert_eq!(all[0].event.id, a.id, "the first copy wins");
}

pub async fn consumers_get_matching_events_in_order(h: &dyn Harness) {
    let log = h.fresh().await;
    let mut events = Vec::new();
    for i in 0..30 {
        events.push(if i % 3 == 0 {
            notify(i)
        } else {
            block(1 + i % 2, i)
        });
    }
    log.append(&events).await.unwrap();
    let m = LogMetrics::default();

    let chain = Subscription::open(
        log.clone(),
        spec("chain", h).filters(["chain.>"]),
        m.clone(),
    )
    .await
    .unwrap();
    let got = drain(&chain, 20).await;
    assert_eq!(got.len(), 20, "every chain event is delivered");
    assert!(
        got.iter()
            .all(|d| d.event.event_type == "chain.block.observed"),
        "filter holds"
    );
    assert!(
        got.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "first deliveries come in stream order"
    );
    assert!(got.iter().all(|d| d.attempt == 1));
    chain.ack(&got).await.unwrap();
    assert!(
        chain
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "nothing more for this filter"
    );

    // Several filters at once.
    let both = Subscription::open(
        log.clone(),
        spec("both", h).filters(["notify.*", "chain.block.observed"]),
        m.clone(),
    )
    .await
    .unwrap();
    let got = drain(&both, 30).await;
    assert_eq!(got.len(), 30);
    let got_ids: Vec<_> = got.iter().map(|d| d.event.id).collect();
    let want_ids: Vec<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        got_ids, want_ids,
        "several filters deliver the union, in order"
    );
    both.ack(&got).await.unwrap();

    // Read with a filter touches no consumer.
    let notifies = log
        .read(1, &["notify.requested".to_owned()], 100)
        .await
        .unwrap();
    assert_eq!(notifies.len(), 10);
}

pub async fn unacked_events_are_redelivered(h: &dyn Harness) {
    let log = h.fresh().await;
    log.append(&(0..5).map(|i| block(1, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    let sub = Subscription::open(log.clone(), spec("redeliver", h), LogMetrics::default())
        .await
        .unwrap();
    let first = drain(&sub, 5).await;
    assert_eq!(first.len(), 5);
    sub.ack(&first[..2]).await.unwrap();
    // The three unacked come back after ack_wait, as attempt 2, in order.
    let again = drain(&sub, 3).await;
    assert_eq!(
        again.len(),
        3,
        "unacked events are delivered again after ack_wait"
    );
    assert_eq!(
        again.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        first[2..].iter().map(|d| d.sequence).collect::<Vec<_>>()
    );
    assert!(
        again.iter().all(|d| d.attempt == 2),
        "redelivery carries attempt 2"
    );
    sub.ack(&again).await.unwrap();
    assert!(
        sub.fetch(10, h.ack_wait() + Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty(),
        "acked events never return"
    );
}

pub async fn nak_redelivers_after_its_delay(h: &dyn Harness) {
    let log = h.fresh().await;
    log.append(&[block(1, 1)]).await.unwrap();
    let s = spec("nak", h)
        .backoff(vec![Duration::from_millis(700)])
        .ack_wait(Duration::from_secs(30));
    let sub = Subscription::open(log.clone(), s, LogMetrics::default())
        .await
        .unwrap();
    let d = drain(&sub, 1).await.remove(0);
    let failed_at = std::time::Instant::now();
    sub.fail(&d, &HandlerError::Retry("rpc timeout".into()))
        .await
        .unwrap();
    let again = drain(&sub, 1).await;
    assert_eq!(again.len(), 1, "a retryable failure is delivered again");
    assert!(
        failed_at.elapsed() >= Duration::from_millis(600),
        "not before the backoff ({:?})",
        failed_at.elapsed()
    );
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].event.id, d.event.id);
    sub.ack(&again).await.unwrap();
}

async fn dead_letters(log: &Arc<dyn EventLog>) -> Vec<LogEventDeadLettered> {
    log.read(1, &[LogEventDeadLettered::TYPE.to_owned()], 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.event.payload::<LogEventDeadLettered>().unwrap())
        .collect()
}

pub async fn failing_events_are_dead_lettered_and_the_consumer_moves_on(h: &dyn Harness) {
    let log = h.fresh().await;
    let poison = block(1, 1);
    log.append(&[poison.clone(), block(1, 2)]).await.unwrap();
    let m = LogMetrics::default();
    let sub = Subscription::open(log.clone(), spec("dl", h).filters(["chain.>"]), m.clone())
        .await
        .unwrap();
    let mut attempts = Vec::new();
    let mut healthy = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while healthy.is_none() && tokio::time::Instant::now() < deadline {
        for d in sub.fetch(10, WAIT).await.unwrap() {
            if d.event.id == poison.id {
                attempts.push(d.attempt);
                sub.fail(&d, &HandlerError::Retry("always fails".into()))
                    .await
                    .unwrap();
            } else {
                // Hold the healthy event until the poison is parked, to show it isn't blocked.
                if attempts.len() >= 3 {
                    sub.ack(std::slice::from_ref(&d)).await.unwrap();
                    healthy = Some(d.sequence);
                } else {
                    sub.fail(&d, &HandlerError::Retry("wait".into()))
                        .await
                        .unwrap();
                }
            }
        }
    }
    assert_eq!(
        attempts,
        vec![1, 2, 3],
        "the poison event is tried max_deliver times"
    );
    assert!(healthy.is_some(), "the consumer moves on to the next event");
    let dl = dead_letters(&log).await;
    assert_eq!(dl.len(), 1, "one dead letter");
    assert_eq!(dl[0].consumer, "dl");
    assert_eq!(dl[0].deliveries, 3);
    assert_eq!(dl[0].severity, Severity::High);
    assert_eq!(dl[0].last_error, "always fails");
    assert_eq!(
        dl[0].event["id"],
        serde_json::json!(poison.id),
        "the original is kept whole"
    );
    assert_eq!(
        m.dead_lettered
            .get_or_create(&crate::metrics::ConsumerLabels {
                consumer: "dl".into()
            })
            .get(),
        1
    );
    // The parked event does not come back.
    assert!(sub
        .fetch(10, h.ack_wait() + Duration::from_millis(500))
        .await
        .unwrap()
        .is_empty());

    // A fatal error parks at once.
    let fatal = block(1, 3);
    log.append(std::slice::from_ref(&fatal)).await.unwrap();
    let d = drain(&sub, 1).await.remove(0);
    sub.fail(&d, &HandlerError::Fatal("cannot ever work".into()))
        .await
        .unwrap();
    let dl = dead_letters(&log).await;
    assert_eq!(dl.len(), 2);
    assert_eq!(dl[1].deliveries, 1);
}

pub async fn a_crash_loses_nothing_and_redelivers_only_unacked(h: &dyn Harness) {
    let log = h.fresh().await;
    let events: Vec<_> = (0..20).map(|i| block(1, i)).collect();
    log.append(&events).await.unwrap();
    let s = spec("crashy", h);
    let sub = Subscription::open(log.clone(), s.clone(), LogMetrics::default())
        .await
        .unwrap();
    let got = drain(&sub, 12).await;
    assert_eq!(got.len(), 12);
    // Ack out of order: 0..4 and 6, 9; leave 4, 5, 7, 8, 10, 11 unacked.
    let acked: Vec<_> = got
        .iter()
        .filter(|d| {
            d.sequence - got[0].sequence < 4 || [6, 9].contains(&(d.sequence - got[0].sequence))
        })
        .collect();
    let acked_seqs: HashSet<u64> = acked.iter().map(|d| d.sequence).collect();
    for d in &acked {
        sub.ack(std::slice::from_ref(*d)).await.unwrap();
    }
    drop(sub);
    let log = h.crash(log).await;
    let sub = Subscription::open(log.clone(), s, LogMetrics::default())
        .await
        .unwrap();
    let after = drain(&sub, 20 - acked_seqs.len()).await;
    let seqs: Vec<u64> = after.iter().map(|d| d.sequence).collect();
    assert!(
        seqs.iter().all(|s| !acked_seqs.contains(s)),
        "acked events are not redelivered after a crash: {seqs:?}"
    );
    assert_eq!(
        seqs.len(),
        20 - acked_seqs.len(),
        "every unacked event comes back: {seqs:?}"
    );
    let redelivered: Vec<_> = after
        .iter()
        .filter(|d| d.sequence <= got[11].sequence)
        .collect();
    assert_eq!(redelivered.len(), 6);
    assert!(
        redelivered.iter().all(|d| d.attempt == 2),
        "delivered-before-the-crash events are attempt 2"
    );
    assert!(after
        .iter()
        .filter(|d| d.sequence > got[11].sequence)
        .all(|d| d.attempt == 1));
    sub.ack(&after).await.unwrap();
}

pub async fn a_crash_loop_on_one_event_ends_in_a_dead_letter(h: &dyn Harness) {
    let log = h.fresh().await;
    let poison = block(1, 1);
    log.append(&[poison.clone(), block(1, 2)]).await.unwrap();
    let s = spec("crashloop", h).filters(["chain.>"]);
    let mut log = log;
    // Each "process" takes the poison event and dies before acking or failing.
    for round in 1..=3u32 {
        let sub = Subscription::open(log.clone(), s.clone(), LogMetrics::default())
            .await
            .unwrap();
        let d = drain(&sub, 1).await;
        assert_eq!(d.len(), 1, "round {round}: the poison event is delivered");
        assert_eq!(d[0].event.id, poison.id);
        assert_eq!(d[0].attempt, round);
        drop(sub);
        log = h.crash(log).await;
    }
    let sub = Subscription::open(log.clone(), s, LogMetrics::default())
        .await
        .unwrap();
    let next = drain(&sub, 1).await;
    assert_eq!(next.len(), 1);
    assert_ne!(
        next[0].event.id, poison.id,
        "after max_deliver crashes the poison event is parked"
    );
    let dl = dead_letters(&log).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].deliveries, 3);
}

pub async fn durable_position_survives_restart_and_start_points_work(h: &dyn Harness) {
    let log = h.fresh().await;
    let out = log
        .append(&(0..10).map(|i| block(1, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    let s = spec("durable", h);
    let sub = Subscription::open(log.clone(), s.clone(), LogMetrics::default())
        .await
        .unwrap();
    let got = drain(&sub, 6).await;
    sub.ack(&got).await.unwrap();
    assert_eq!(
        sub.lag().await.unwrap(),
        4,
        "lag counts what is not yet delivered"
    );
    drop(sub);
    let log = h.crash(log).await;
    let sub = Subscription::open(log.clone(), s, LogMetrics::default())
        .await
        .unwrap();
    let rest = drain(&sub, 4).await;
    assert_eq!(
        rest.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        out[6..].iter().map(|a| a.sequence).collect::<Vec<_>>()
    );
    sub.ack(&rest).await.unwrap();
    assert_eq!(sub.lag().await.unwrap(), 0);

    let from = Subscription::open(
        log.clone(),
        spec("from7", h).deliver_from(DeliverFrom::Sequence(out[7].sequence)),
        LogMetrics::default(),
    )
    .await
    .unwrap();
    let got = drain(&from, 3).await;
    assert_eq!(
        got.first().map(|d| d.sequence),
        Some(out[7].sequence),
        "starts at the given sequence"
    );
    let new = Subscription::open(
        log.clone(),
        spec("new", h).deliver_from(DeliverFrom::New),
        LogMetrics::default(),
    )
    .await
    .unwrap();
    assert!(
        new.fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "a New consumer sees no history"
    );
    let fresh = log.append(&[block(1, 99)]).await.unwrap()[0];
    let got = drain(&new, 1).await;
    assert_eq!(got[0].sequence, fresh.sequence);
}

/// A random workload against a model: appends (with duplicate keys), fetches, acks of
/// random subsets, and crashes. Afterwards every stored event has been delivered at least
/// once, first deliveries came in order, and acked events never came back.
pub async fn model_random_workload(h: &dyn Harness, seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut log = h.fresh().await;
    let s = spec("model", h).max_deliver(1000);
    let mut sub = Some(
        Subscription::open(log.clone(), s.clone(), LogMetrics::default())
            .await
            .unwrap(),
    );
    let mut stored: BTreeMap<u64, String> = BTreeMap::new(); // seq -> key
    let mut delivered: HashSet<u64> = HashSet::new();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut held: Vec<crate::Delivery> = Vec::new();
    let mut last_first: u64 = 0;
    let mut next_key = 0u64;
    for _ in 0..steps {
        match rng.below(10) {
            0..=3 => {
                let n = 1 + rng.below(20);
                let mut batch = Vec::new();
                for _ in 0..n {
                    // One in five reuses an old key: must be dropped as a duplicate.
                    let k = if next_key > 0 && rng.below(5) == 0 {
                        rng.below(next_key)
                    } else {
                        next_key += 1;
                        next_key - 1
                    };
                    batch.push(if k % 2 == 0 { block(1, k) } else { notify(k) });
                }
                for (e, a) in batch.iter().zip(log.append(&batch).await.unwrap()) {
                    match stored.get(&a.sequence) {
                        Some(k) => {
                            assert_eq!(k, &e.key, "a duplicate reports the sequence of its key")
                        }
                        None => {
                            assert!(!a.duplicate, "a new key is not a duplicate");
                            assert!(
                                !stored.values().any(|k| k == &e.key),
                                "a key is stored once"
                            );
                            stored.insert(a.sequence, e.key.clone());
                        }
                    }
                }
            }
            4..=6 => {
                let sub_ref = sub.as_ref().unwrap();
                for d in sub_ref
                    .fetch(1 + rng.below(30) as usize, Duration::from_millis(50))
                    .await
                    .unwrap()
                {
                    assert!(
                        !acked.contains(&d.sequence),
                        "acked event {} delivered again",
                        d.sequence
                    );
                    assert_eq!(
                        stored.get(&d.sequence),
                        Some(&d.event.key),
                        "delivery matches what was stored"
                    );
                    if d.attempt == 1 {
                        assert!(
                            d.sequence > last_first,
                            "first deliveries in order ({} after {last_first})",
                            d.sequence
                        );
                        last_first = d.sequence;
                    }
                    delivered.insert(d.sequence);
                    held.push(d);
                }
            }
            7..=8 => {
                let keep = std::mem::take(&mut held);
                let (ack, rest): (Vec<_>, Vec<_>) =
                    keep.into_iter().partition(|_| rng.below(3) != 0);
                sub.as_ref().unwrap().ack(&ack).await.unwrap();
                acked.extend(ack.iter().map(|d| d.sequence));
                held = rest;
            }
            _ => {
                held.clear();
                drop(sub.take());
                log = h.crash(log).await;
                sub = Some(
                    Subscription::open(log.clone(), s.clone(), LogMetrics::default())
                        .await
                        .unwrap(),
                );
            }
        }
    }
    // Drain: ack what is held, then keep fetching until every stored event is acked.
    let sub = sub.unwrap();
    sub.ack(&held).await.unwrap();
    acked.extend(held.iter().map(|d| d.sequence));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.len() < stored.len() && tokio::time::Instant::now() < deadline {
        let got = sub.fetch(500, WAIT).await.unwrap();
        for d in &got {
            assert!(
                !acked.contains(&d.sequence),
                "acked event {} delivered again",
                d.sequence
            );
            delivered.insert(d.sequence);
        }
        acked.extend(got.iter().map(|d| d.sequence));
        sub.ack(&got).await.unwrap();
    }
    let missing: Vec<_> = stored.keys().filter(|s| !delivered.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: events never delivered: {missing:?}"
    );
    assert_eq!(
        acked.len(),
        stored.len(),
        "seed {seed}: every event acked exactly once"
    );
    let in_log: HashMap<u64, String> = log
        .read(1, &[], 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.sequence, s.event.key))
        .collect();
    assert_eq!(
        in_log.len(),
        stored.len(),
        "seed {seed}: the log holds exactly the unique keys"
    );
}

/// Small deterministic PRNG (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Run every check in order.
pub async fn run_all(h: &dyn Harness) {
    append_assigns_increasing_sequences(h).await;
    duplicate_keys_are_dropped(h).await;
    consumers_get_matching_events_in_order(h).await;
    unacked_events_are_redelivered(h).await;
    nak_redelivers_after_its_delay(h).await;
    failing_events_are_dead_lettered_and_the_consumer_moves_on(h).await;
    a_crash_loses_nothing_and_redelivers_only_unacked(h).await;
    a_crash_loop_on_one_event_ends_in_a_dead_letter(h).await;
    durable_position_survives_restart_and_start_points_work(h).await;
}

/// One `#[tokio::test]` per conformance check, each run against a fresh `$harness`
/// (an expression building a [`Harness`]), so a backend's test file is only its harness.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            append_assigns_increasing_sequences,
            duplicate_keys_are_dropped,
            consumers_get_matching_events_in_order,
            unacked_events_are_redelivered,
            nak_redelivers_after_its_delay,
            failing_events_are_dead_lettered_and_the_consumer_moves_on,
            a_crash_loses_nothing_and_redelivers_only_unacked,
            a_crash_loop_on_one_event_ends_in_a_dead_letter,
            durable_position_survives_restart_and_start_points_work
        );
    };
    (@each $harness:expr; $($name:ident),+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::conformance::$name(&$harness).await;
        }
    )+};
}
