//! NATS-specific behaviour of the JetStream backend, against a real nats-server
//! (`STEWARD_TEST_NATS_URL`). The semantics shared with the embedded backend are checked by
//! the conformance suite; these tests cover what only this backend has: stream provisioning,
//! `Nats-Msg-Id` dedup, pipelined appends, server-side delivery counting and filters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use steward_log::conformance::{block, notify};
use steward_log::nats::{NatsConfig, NatsLog};
use steward_log::{ConsumerSpec, DeliverFrom, EventLog, LogError, LogMetrics, Subscription};
use steward_testkit::{nats_url, unique};

fn config() -> NatsConfig {
    NatsConfig::new(nats_url())
        .stream(unique("s"))
        .prefix(unique("p"))
}

async fn open(cfg: &NatsConfig) -> NatsLog {
    NatsLog::connect(cfg.clone())
        .await
        .expect("connect to the test nats-server")
}

async fn stream_info(cfg: &NatsConfig) -> jetstream::stream::Info {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    js.get_stream(&cfg.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone()
}

async fn consumer_info(cfg: &NatsConfig, name: &str) -> jetstream::consumer::Info {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    js.get_stream(&cfg.stream)
        .await
        .unwrap()
        .consumer_info(name)
        .await
        .unwrap()
}

/// A spec with redelivery after `ack_wait` and no extra backoff.
fn spec(name: &str) -> ConsumerSpec {
    ConsumerSpec::new(name)
        .ack_wait(Duration::from_secs(1))
        .backoff(vec![])
        .max_deliver(5)
}

#[tokio::test]
async fn stream_provisioning_is_idempotent_and_updates_settings() {
    let cfg = config();
    let log = open(&cfg).await;
    let first = log.append(&[block(1, 1), block(1, 2)]).await.unwrap();

    let info = stream_info(&cfg).await;
    assert_eq!(info.config.subjects, vec![format!("{}.>", cfg.prefix)]);
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    assert_eq!(
        info.config.duplicate_window,
        Duration::from_secs(600),
        "default duplicate window is 10 minutes"
    );
    assert_eq!(info.config.num_replicas, 1);

    // Same settings again: nothing changes, nothing is lost.
    let again = open(&cfg).await;
    assert_eq!(again.last_sequence().await.unwrap(), first[1].sequence);
    assert_eq!(stream_info(&cfg).await.config, info.config);

    // Changed settings are applied in place; the data stays.
    let changed = cfg
        .clone()
        .duplicate_window(Duration::from_secs(120))
        .max_age(Some(Duration::from_secs(86_400)));
    let log3 = open(&changed).await;
    let info = stream_info(&cfg).await;
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.config.max_age, Duration::from_secs(86_400));
    assert_eq!(
        info.state.messages, 2,
        "updating the stream keeps its events"
    );
    assert_eq!(log3.read(1, &[], 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn bad_config_and_unreachable_servers_give_clear_errors() {
    let err = NatsLog::connect(config().prefix("a.>")).await.unwrap_err();
    assert!(matches!(err, LogError::Invalid(_)), "{err}");

    // Nothing listens on port 1; the token and URL credentials must not leak.
    let cfg =
        NatsConfig::new("nats://alice:hunter2@127.0.0.1:1").token(Some("sekrit-token".into()));
    let err = NatsLog::connect(cfg).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LogError::Unavailable(_)), "{msg}");
    assert!(msg.contains("127.0.0.1:1"), "names the server: {msg}");
    assert!(
        !msg.contains("hunter2") && !msg.contains("alice") && !msg.contains("sekrit-token"),
        "{msg}"
    );

    // Replicas the single test server cannot provide.
    let err = NatsLog::connect(config().replicas(3)).await.unwrap_err();
    assert!(err.to_string().contains("provisioning stream"), "{err}");
}

#[tokio::test]
async fn same_key_is_a_duplicate_via_nats_msg_id() {
    let cfg = config();
    let log = open(&cfg).await;
    let a = block(1, 7);
    let first = log.append(std::slice::from_ref(&a)).await.unwrap()[0];
    assert!(!first.duplicate);
    let mut retry = block(1, 7);
    retry.id = uuid::Uuid::now_v7();
    let second = log.append(&[retry]).await.unwrap()[0];
    assert!(
        second.duplicate,
        "same key within the window is a duplicate"
    );
    assert_eq!(
        second.sequence, first.sequence,
        "a duplicate reports the stored copy's sequence"
    );
    assert_eq!(
        log.last_sequence().await.unwrap(),
        first.sequence,
        "nothing new stored"
    );

    // The header really is what the server dedups on.
    let client = async_nats::connect(nats_url()).await.unwrap();
    let msg = jetstream::new(client)
        .get_stream(&cfg.stream)
        .await
        .unwrap()
        .get_raw_message(first.sequence)
        .await
        .unwrap();
    let id = msg
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_owned());
    assert_eq!(id.as_deref(), Some(a.key.as_str()));
}

#[tokio::test]
async fn a_20k_batch_appends_in_order() {
    let log = open(&config()).await;
    let events: Vec<_> = (0..20_000).map(|i| block(1, i)).collect();
    let out = log.append(&events).await.unwrap();
    assert_eq!(out.len(), events.len());
    assert!(out.iter().all(|a| !a.duplicate));
    assert!(
        out.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
        "dense sequences in input order"
    );
    assert_eq!(log.last_sequence().await.unwrap(), out[19_999].sequence);
    let back = log.read(out[10_000].sequence, &[], 5).await.unwrap();
    assert_eq!(
        back[0].event, events[10_000],
        "the output lines up with the input"
    );
}

#[tokio::test]
async fn several_filters_deliver_exactly_the_matching_events() {
    let log = open(&config()).await;
    let mut events = Vec::new();
    for i in 0..60 {
        events.push(match i % 3 {
            0 => notify(i),
            1 => block(1, i),
            _ => steward_events::Envelope::new(
                "test",
                format!("dl:{i}"),
                &steward_events::LogEventDeadLettered {
                    consumer: "x".into(),
                    sequence: i,
                    deliveries: 1,
                    last_error: "e".into(),
                    event: serde_json::json!({}),
                    severity: steward_events::Severity::High,
                },
            ),
        });
    }
    let appended = log.append(&events).await.unwrap();
    // Overlapping patterns too: `chain.>` covers `chain.block.observed`.
    let c = log
        .consumer(&spec("multi").filters(["notify.*", "chain.>", "chain.block.observed"]))
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 40 && Instant::now() < deadline {
        let batch = c.fetch(25, Duration::from_millis(500)).await.unwrap();
        c.ack(&batch.iter().map(|d| d.token.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        got.extend(batch);
    }
    let want: Vec<u64> = appended
        .iter()
        .zip(&events)
        .filter(|(_, e)| e.event_type != "log.event.dead_lettered")
        .map(|(a, _)| a.sequence)
        .collect();
    let seqs: Vec<u64> = got.iter().map(|d| d.sequence).collect();
    assert_eq!(seqs, want, "exactly the matching events, in order");
    assert!(
        c.fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "nothing else arrives"
    );
    assert_eq!(c.lag().await.unwrap(), 0);

    // Reading with several filters gives the same set.
    let filters = [
        "notify.requested".to_owned(),
        "chain.block.observed".to_owned(),
    ];
    let read: Vec<u64> = log
        .read(1, &filters, 1000)
        .await
        .unwrap()
        .iter()
        .map(|s| s.sequence)
        .collect();
    assert_eq!(read, want);
}

#[tokio::test]
async fn an_unacked_event_comes_back_as_attempt_2_after_ack_wait() {
    let log = open(&config()).await;
    log.append(&[block(1, 1)]).await.unwrap();
    let c = log.consumer(&spec("redeliver")).await.unwrap();
    let first = c.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    let taken = Instant::now();
    let mut again = Vec::new();
    while again.is_empty() && taken.elapsed() < Duration::from_secs(5) {
        again = c.fetch(10, Duration::from_secs(3)).await.unwrap();
    }
    assert_eq!(again.len(), 1, "delivered again");
    assert!(
        taken.elapsed() >= Duration::from_millis(900),
        "not before ack_wait: {:?}",
        taken.elapsed()
    );
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].sequence, first[0].sequence);
    assert_eq!(again[0].payload, first[0].payload);
    c.ack(&[again[0].token.clone()]).await.unwrap();
    assert!(
        c.fetch(10, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_empty(),
        "acked: gone for good"
    );
}

#[tokio::test]
async fn the_server_delivers_once_past_max_deliver_so_the_subscription_can_park() {
    let cfg = config();
    let log: Arc<dyn EventLog> = Arc::new(open(&cfg).await);
    let poison = block(1, 1);
    log.append(std::slice::from_ref(&poison)).await.unwrap();
    let s = spec("park")
        .max_deliver(2)
        .ack_wait(Duration::from_millis(500));
    assert_eq!(
        consumer_info_after_open(&log, &cfg, &s)
            .await
            .config
            .max_deliver,
        3
    );
    let sub = Subscription::open(log.clone(), s, LogMetrics::default())
        .await
        .unwrap();
    // Take it twice without acking (a crash each time), then the third delivery is parked.
    let mut attempts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while attempts.len() < 2 && Instant::now() < deadline {
        attempts.extend(
            sub.fetch(10, Duration::from_secs(1))
                .await
                .unwrap()
                .iter()
                .map(|d| d.attempt),
        );
    }
    assert_eq!(attempts, vec![1, 2]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut parked = Vec::new();
    while parked.is_empty() && Instant::now() < deadline {
        assert!(
            sub.fetch(10, Duration::from_secs(1))
                .await
                .unwrap()
                .is_empty(),
            "attempt 3 is not handed out"
        );
        parked = log
            .read(1, &["log.event.dead_lettered".to_owned()], 10)
            .await
            .unwrap();
    }
    assert_eq!(
        parked.len(),
        1,
        "attempt max_deliver+1 is parked as a dead letter"
    );
}

async fn consumer_info_after_open(
    log: &Arc<dyn EventLog>,
    cfg: &NatsConfig,
    s: &ConsumerSpec,
) -> jetstream::consumer::Info {
    drop(log.consumer(s).await.unwrap());
    consumer_info(cfg, &s.name).await
}

#[tokio::test]
async fn consumer_settings_follow_the_spec_and_reopening_updates_them() {
    let cfg = config();
    let log: Arc<dyn EventLog> = Arc::new(open(&cfg).await);
    log.append(&(0..4).map(|i| block(1, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    let s = ConsumerSpec::new("settings")
        .filters(["chain.>"])
        .ack_wait(Duration::from_secs(30))
        .max_deliver(4)
        .backoff(vec![Duration::from_secs(1), Duration::from_secs(5)])
        .deliver_from(DeliverFrom::Sequence(3));
    let info = consumer_info_after_open(&log, &cfg, &s).await;
    assert_eq!(info.config.durable_name.as_deref(), Some("settings"));
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    assert_eq!(
        info.config.filter_subject,
        format!("{}.chain.>", cfg.prefix)
    );
    assert_eq!(
        info.config.max_deliver, 5,
        "one more than the spec: the extra delivery is parked"
    );
    assert_eq!(
        info.config.backoff,
        vec![Duration::from_secs(31), Duration::from_secs(35)],
        "ack_wait + backoff"
    );
    assert_eq!(info.config.ack_wait, Duration::from_secs(31));
    assert_eq!(info.config.max_ack_pending, 10_000);
    assert_eq!(
        info.config.deliver_policy,
        jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: 3 }
    );
    assert_eq!(info.num_pending, 2);

    // Reopen with another filter: updated in place, position kept.
    let s2 = s
        .clone()
        .filters(["notify.*"])
        .deliver_from(DeliverFrom::All);
    let info = consumer_info_after_open(&log, &cfg, &s2).await;
    assert_eq!(
        info.config.filter_subject,
        format!("{}.notify.*", cfg.prefix)
    );
    assert_eq!(
        info.config.deliver_policy,
        jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: 3 },
        "start point is kept"
    );

    // Several filters on a 2.9 server: the server takes everything, the client filters.
    let s3 = s2.clone().filters(["notify.*", "chain.block.observed"]);
    let info = consumer_info_after_open(&log, &cfg, &s3).await;
    let version = async_nats::connect(nats_url())
        .await
        .unwrap()
        .server_info()
        .version;
    if version.starts_with("2.9.") {
        assert_eq!(info.config.filter_subject, format!("{}.>", cfg.prefix));
    } else {
        assert_eq!(info.config.filter_subjects.len(), 2);
    }

    // A backoff longer than the deliveries allow is cut to what the server accepts.
    let s4 = s3.max_deliver(1).backoff(vec![Duration::from_secs(1); 4]);
    let info = consumer_info_after_open(&log, &cfg, &s4).await;
    assert_eq!(info.config.max_deliver, 2);
    assert_eq!(info.config.backoff.len(), 1);

    // Opening the same spec again changes nothing.
    let before = consumer_info(&cfg, "settings").await.config;
    assert_eq!(
        consumer_info_after_open(&log, &cfg, &s4).await.config,
        before
    );
}

#[tokio::test]
async fn nak_with_delay_redelivers_after_the_delay() {
    let log = open(&config()).await;
    log.append(&[block(1, 1)]).await.unwrap();
    let c = log
        .consumer(&spec("nak").ack_wait(Duration::from_secs(30)))
        .await
        .unwrap();
    let d = c.fetch(1, Duration::from_secs(2)).await.unwrap().remove(0);
    let naked = Instant::now();
    c.nak(&d.token, Duration::from_millis(800)).await.unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(400))
            .await
            .unwrap()
            .is_empty(),
        "not before the delay"
    );
    let mut again = Vec::new();
    while again.is_empty() && naked.elapsed() < Duration::from_secs(5) {
        again = c.fetch(1, Duration::from_secs(2)).await.unwrap();
    }
    assert_eq!(again.len(), 1);
    assert!(
        naked.elapsed() >= Duration::from_millis(750),
        "{:?}",
        naked.elapsed()
    );
    assert!(
        naked.elapsed() < Duration::from_secs(5),
        "well before ack_wait"
    );
    assert_eq!(again[0].attempt, 2);

    // A zero delay redelivers at once.
    c.nak(&again[0].token, Duration::ZERO).await.unwrap();
    let third = c.fetch(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempt, 3);
    c.ack(&[third[0].token.clone()]).await.unwrap();
}

/// Fetch until one delivery arrives; returns it and how long that took.
async fn next_one(c: &dyn steward_log::Consumer) -> (steward_log::RawDelivery, Duration) {
    let t = Instant::now();
    loop {
        let mut got = c.fetch(1, Duration::from_millis(200)).await.unwrap();
        if let Some(d) = got.pop() {
            return (d, t.elapsed());
        }
        assert!(t.elapsed() < Duration::from_secs(10), "nothing redelivered");
    }
}

#[tokio::test]
async fn nak_delays_follow_the_spec_when_the_server_has_a_backoff() {
    let log = open(&config()).await;
    log.append(&[block(1, 1)]).await.unwrap();
    let s = ConsumerSpec::new("nakbackoff")
        .ack_wait(Duration::from_secs(30))
        .max_deliver(5)
        .backoff(vec![
            Duration::from_millis(300),
            Duration::from_millis(1500),
        ]);
    let c = log.consumer(&s).await.unwrap();
    let (d1, _) = next_one(c.as_ref()).await;
    assert_eq!(d1.attempt, 1);
    c.nak(&d1.token, s.backoff_after(1)).await.unwrap();
    let (d2, waited) = next_one(c.as_ref()).await;
    assert_eq!(d2.attempt, 2);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1300),
        "{waited:?}"
    );
    c.nak(&d2.token, s.backoff_after(2)).await.unwrap();
    let (d3, waited) = next_one(c.as_ref()).await;
    assert_eq!(d3.attempt, 3);
    // The server alone would wait 1.5s + (backoff[1] - backoff[0]) = 2.7s.
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(2400),
        "{waited:?}"
    );
    c.ack(std::slice::from_ref(&d3.token)).await.unwrap();
}

#[tokio::test]
async fn term_stops_delivery() {
    let log = open(&config()).await;
    log.append(&[block(1, 1), block(1, 2)]).await.unwrap();
    let c = log.consumer(&spec("term")).await.unwrap();
    let got = c.fetch(2, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 2);
    c.term(&got[0].token).await.unwrap();
    // Only the other one (unacked) comes back after ack_wait.
    let mut back = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let b = c.fetch(10, Duration::from_millis(500)).await.unwrap();
        c.ack(&b.iter().map(|d| d.token.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        back.extend(b);
    }
    // On a loaded machine the unacked one may come back more than once (its ack can miss a
    // 1 s ack wait); what matters is that it does, and that the termed one never does.
    let seqs: Vec<u64> = back.iter().map(|d| d.sequence).collect();
    assert!(
        seqs.contains(&got[1].sequence),
        "the unacked event comes back: {seqs:?}"
    );
    assert!(
        !seqs.contains(&got[0].sequence),
        "the termed event never returns: {seqs:?}"
    );
}

#[tokio::test]
async fn fetch_returns_as_soon_as_events_are_there() {
    let log = Arc::new(open(&config()).await);
    let c = log.consumer(&spec("quick")).await.unwrap();
    // Some available: no waiting for the full batch or the full wait.
    log.append(&[block(1, 1), block(1, 2), block(1, 3)])
        .await
        .unwrap();
    let t = Instant::now();
    let got = c.fetch(100, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    c.ack(&got.iter().map(|d| d.token.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    // None available: returns when one is appended, not at the end of the wait.
    let writer = log.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.append(&[block(1, 4), block(1, 5)]).await.unwrap();
    });
    let t = Instant::now();
    let got = c.fetch(100, Duration::from_secs(20)).await.unwrap();
    assert!(!got.is_empty());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(got[0].attempt, 1);
    c.ack(&got.iter().map(|d| d.token.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    // Nothing at all: empty after about the wait.
    let t = Instant::now();
    let rest = c.fetch(100, Duration::from_millis(400)).await.unwrap();
    let more = if got.len() == 1 { 1 } else { 0 };
    assert_eq!(rest.len(), more);
    if more == 0 {
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
    }
}

#[tokio::test]
async fn read_replays_from_a_sequence_with_a_filter_without_touching_consumers() {
    let log = open(&config()).await;
    let events: Vec<_> = (0..50)
        .map(|i| if i % 2 == 0 { notify(i) } else { block(1, i) })
        .collect();
    let out = log.append(&events).await.unwrap();
    let c = log.consumer(&spec("untouched")).await.unwrap();
    assert_eq!(c.lag().await.unwrap(), 50);

    let from = out[20].sequence;
    let got = log.read(from, &["chain.>".to_owned()], 1000).await.unwrap();
    let want: Vec<u64> = out
        .iter()
        .zip(&events)
        .filter(|(a, e)| a.sequence >= from && e.event_type.starts_with("chain."))
        .map(|(a, _)| a.sequence)
        .collect();
    assert_eq!(got.iter().map(|s| s.sequence).collect::<Vec<_>>(), want);
    assert!(got
        .iter()
        .all(|s| s.subject.ends_with(".chain.block.observed")));
    assert_eq!(got[0].event, events[21]);

    // `max` is honoured, and reading past the end is empty.
    assert_eq!(log.read(from, &[], 7).await.unwrap().len(), 7);
    assert!(log
        .read(out[49].sequence + 1, &[], 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(log.read(1, &[], 10_000).await.unwrap().len(), 50);

    assert_eq!(
        c.lag().await.unwrap(),
        50,
        "replay leaves durable consumers alone"
    );
}

#[tokio::test]
async fn lag_is_what_the_consumer_has_not_been_handed_yet() {
    let log = open(&config()).await;
    log.append(&(0..10).map(|i| block(1, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    log.append(&(0..5).map(notify).collect::<Vec<_>>())
        .await
        .unwrap();
    let c = log
        .consumer(&spec("lag").filters(["chain.>"]))
        .await
        .unwrap();
    assert_eq!(c.lag().await.unwrap(), 10, "only matching events count");
    let got = c.fetch(4, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(c.lag().await.unwrap(), 6);
    c.ack(&got.iter().map(|d| d.token.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    log.append(&[block(1, 100)]).await.unwrap();
    assert_eq!(c.lag().await.unwrap(), 7);
}

/// The benchmark functions behind `steward bench log` account for every event and give
/// coherent figures (speed itself is measured by the command, never asserted in tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_functions_count_every_event() {
    let n = 3000;
    let raw = steward_log::bench::raw_jetstream_paced(&NatsConfig::new(nats_url()), n, 250, None)
        .await
        .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(open(&config()).await);
    let backend = steward_log::bench::log_backend_paced(log, n, 250, Some(20_000.0))
        .await
        .unwrap();
    for f in [&raw, &backend] {
        assert_eq!(f.events, n as u64, "{f:?}");
        assert!(f.events_per_sec > 0.0 && f.seconds > 0.0, "{f:?}");
        assert!(f.p50_latency <= f.p99_latency, "{f:?}");
    }
    // Paced at 20k/s, 3000 events cannot finish much faster than 150 ms.
    assert!(backend.seconds >= 0.12, "pacing holds: {backend:?}");
}
