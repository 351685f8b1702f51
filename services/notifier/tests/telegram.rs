//! Telegram against the fake Bot API on loopback (`steward_notifier::fake_telegram`, which
//! refuses markup Telegram would refuse): commands, the allowlist, subscriptions, /status and
//! /queue from the events of the catalogue, escaping of hostile strings in MarkdownV2 and
//! HTML, rate limits under a burst of 200 alerts, the digest, 429 `retry_after`, a crash
//! between send and ack, a refused token, and the dead-letter alert.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::json;
use steward_events::{
    LogEventDeadLettered, PlaybookRunFinished, RiskPositionLiquidatable, SafeTxExecuted,
    SafeTxProposed, SafeTxReopened, Severity,
};
use tokio::time::Instant;

const OPS_CHAT: i64 = -1001;
const ADMIN_CHAT: i64 = 100;
const ADMIN_USER: i64 = 5;
const STRANGER_CHAT: i64 = 200;
const STRANGER: i64 = 9;

fn yaml(fake: &FakeTelegram, extra_telegram: &str, extra: &str) -> String {
    format!(
        "notify:\n  links:\n    explorer: https://etherscan.io\n    signing: \"https://sign.example/{{chain_id}}/{{safe}}/{{safe_tx_hash}}\"\n  retry: {{attempts: 5, initial_backoff: 100ms, max_backoff: 500ms}}\n  telegram:\n    bot_token: \"{TOKEN}\"\n    api_url: {}\n    poll_timeout: 1s\n    allowed_chats: [{ADMIN_CHAT}]\n    allowed_users: [{ADMIN_USER}]\n{extra_telegram}  channels:\n    - name: ops\n      telegram: {{chats: [{OPS_CHAT}]}}\n{extra}",
        fake.url()
    )
}

async fn setup(extra_telegram: &str, extra: &str) -> (FakeTelegram, Harness) {
    let fake = FakeTelegram::start(TOKEN).await.expect("fake Bot API");
    let h = Harness::new(&yaml(&fake, extra_telegram, extra)).await;
    (fake, h)
}

fn to(sent: &[Sent], chat: i64) -> Vec<Sent> {
    sent.iter().filter(|s| s.chat_id == chat).cloned().collect()
}

use steward_notifier::fake_telegram::Sent;

/// Waits until `chat` has received `n` messages.
async fn wait_chat(fake: &FakeTelegram, chat: i64, n: usize) -> Vec<Sent> {
    eventually(
        Duration::from_secs(20),
        &format!("{n} messages in chat {chat}"),
        || async {
            let s = to(&fake.sent(), chat);
            (s.len() >= n).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_allowlisted_chats_and_users_and_refuse_everyone_else() {
    let (fake, mut h) = setup("", "").await;
    // Read models come from the events of the catalogue.
    h.append(
        "safe:1",
        &SafeTxProposed {
            safe: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            safe_tx_hash: "0xabc0000000000000000000000000000000000000000000000000000000000def"
                .into(),
            nonce: 7,
            to: "0x0000000000000000000000000000000000000002".into(),
            value: "0".into(),
            data: "0x".into(),
            operation: 0,
            safe_tx_gas: "0".into(),
            base_gas: "0".into(),
            gas_price: "0".into(),
            gas_token: "0x0000000000000000000000000000000000000000".into(),
            refund_receiver: "0x0000000000000000000000000000000000000000".into(),
            would_revert: false,
            reason: "rebalance [stake] (operator_3)".into(),
            decoded: None,
            origin: None,
            threshold: None,
            simulation: None,
        },
    )
    .await;
    // Executed, then reopened by a reorg: waiting again, so still in /queue.
    let hash = "0xabc0000000000000000000000000000000000000000000000000000000000def";
    let safe = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
    h.append(
        "safe:2",
        &SafeTxExecuted {
            safe: safe.into(),
            safe_tx_hash: hash.into(),
            nonce: 7,
            transaction_hash: format!("0x{}", "11".repeat(32)),
            block_number: 9,
        },
    )
    .await;
    h.append(
        "safe:3",
        &SafeTxReopened {
            safe: safe.into(),
            safe_tx_hash: hash.into(),
            nonce: 7,
            previous_status: "executed".into(),
            transaction_hash: format!("0x{}", "11".repeat(32)),
            block_number: 9,
            block_hash: format!("0x{}", "22".repeat(32)),
            reopened: 1,
            reason: "rebalance [stake] (operator_3)".into(),
        },
    )
    .await;
    h.append(
        "risk:1",
        &serde_json::from_value::<RiskPositionLiquidatable>(json!({
            "protocol": "aave-v3",
            "pool": "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2",
            "user": "0x0000000000000000000000000000000000000001",
            "health_factor": "950000000000000000",
            "total_collateral_base": "1",
            "total_debt_base": "1",
            "close_factor_bps": 5000,
            "max_debt_to_cover_base": "1",
            "severity": "high",
            "block_number": 1,
        }))
        .unwrap(),
    )
    .await;
    h.start();
    fake.message(ADMIN_CHAT, 1, "/start");
    let r = wait_chat(&fake, ADMIN_CHAT, 1).await;
    assert!(
        r[0].plain.contains("/subscribe <severity|topic>"),
        "{}",
        r[0].plain
    );
    fake.message(STRANGER_CHAT, STRANGER, "/status");
    fake.message(STRANGER_CHAT, STRANGER, "/subscribe critical");
    // The allowlisted user, in a chat that is not on the list: allowed.
    fake.message(300, ADMIN_USER, "/help@steward_test_bot");
    let r = wait_chat(&fake, 300, 1).await;
    assert!(r[0].plain.contains("/queue"), "{}", r[0].plain);
    let refused = wait_chat(&fake, STRANGER_CHAT, 2).await;
    for m in &refused {
        assert_eq!(
            m.plain,
            steward_notifier::bot::REFUSAL,
            "a polite refusal and nothing else"
        );
        assert!(m.reply_markup.is_none());
    }

    // /queue: the pending Safe transaction, with a signing link and a button.
    fake.message(ADMIN_CHAT, 1, "/queue");
    let r = wait_chat(&fake, ADMIN_CHAT, 2).await;
    let q = &r[1];
    assert!(
        q.plain.contains("Safe transactions waiting (1)"),
        "{}",
        q.plain
    );
    assert!(
        q.plain.contains("#7: rebalance [stake] (operator_3)"),
        "{}",
        q.plain
    );
    let sign = "https://sign.example//0x5FbDB2315678afecb367f032d93F642f64180aa3/0xabc0000000000000000000000000000000000000000000000000000000000def";
    assert!(q.links.iter().any(|(_, u)| u == sign), "{:?}", q.links);
    assert!(
        q.links
            .iter()
            .any(|(_, u)| u
                == "https://etherscan.io/address/0x5FbDB2315678afecb367f032d93F642f64180aa3"),
        "{:?}",
        q.links
    );
    let kb = q.reply_markup.as_ref().expect("buttons")["inline_keyboard"].to_string();
    assert!(kb.contains(sign), "{kb}");
    assert!(kb.contains("refresh:queue"), "{kb}");

    // /status: the open risk; a refresh button answers too.
    fake.message(ADMIN_CHAT, 1, "/status");
    let r = wait_chat(&fake, ADMIN_CHAT, 3).await;
    assert!(r[2].plain.contains("Open risks (1)"), "{}", r[2].plain);
    assert!(
        r[2].plain.contains("aave-v3 position 0x0000…0001"),
        "{}",
        r[2].plain
    );
    assert!(
        r[2].plain.contains("notifier consumer lag"),
        "{}",
        r[2].plain
    );
    fake.callback(ADMIN_CHAT, 1, "refresh:status");
    let r = wait_chat(&fake, ADMIN_CHAT, 4).await;
    assert!(r[3].plain.starts_with("Steward status"), "{}", r[3].plain);
    assert!(fake
        .requests()
        .iter()
        .any(|(m, _, _)| m == "answercallbackquery"));

    // Subscriptions are events; a subscriber hears what matches and nothing else.
    fake.message(ADMIN_CHAT, 1, "/subscribe high");
    let r = wait_chat(&fake, ADMIN_CHAT, 5).await;
    assert!(
        r[4].plain.contains("severity high and above"),
        "{}",
        r[4].plain
    );
    let subs = h
        .wait_events("notify.subscription.added", 1, Duration::from_secs(5))
        .await;
    let s: steward_events::NotifySubscriptionAdded = subs[0].payload().unwrap();
    assert_eq!(
        (s.chat_id, s.user_id, s.subscription.as_str()),
        (ADMIN_CHAT, Some(1), "high")
    );
    // Let the projection apply it.
    eventually(
        Duration::from_secs(5),
        "the subscription applied",
        || async {
            h.store
                .is_applied(steward_notifier::projection::NAME, &subs[0].key)
                .await
                .unwrap()
                .then_some(())
        },
    )
    .await;
    h.request(
        "low:1",
        request(&["ops"], "default", Severity::Low, json!({"n": "low one"})),
    )
    .await;
    h.request(
        "high:1",
        request(
            &["ops"],
            "default",
            Severity::High,
            json!({"n": "high one"}),
        ),
    )
    .await;
    let ops = wait_chat(&fake, OPS_CHAT, 2).await;
    assert!(ops[0].plain.contains("low one") && ops[1].plain.contains("high one"));
    let r = wait_chat(&fake, ADMIN_CHAT, 6).await;
    assert!(r[5].plain.contains("high one"), "{}", r[5].plain);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        to(&fake.sent(), ADMIN_CHAT).len(),
        6,
        "the low one is not for this subscriber"
    );

    fake.message(ADMIN_CHAT, 1, "/unsubscribe");
    wait_chat(&fake, ADMIN_CHAT, 7).await;
    assert_eq!(
        h.wait_events("notify.subscription.removed", 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    // The stranger's /subscribe was refused: no event for it.
    assert_eq!(h.events_of("notify.subscription.added").await.len(), 1);
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

const HOSTILE: &str = "_*[]()~`>#+-=|{}.!\\ <b>x</b> &amp; \"q\" 'a'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_arrive_verbatim_in_markdown_v2_and_html() {
    for mode in ["markdown_v2", "html"] {
        let (fake, mut h) = setup(&format!("    parse_mode: {mode}\n"), "").await;
        h.start();
        h.request(
            "hostile:1",
            request(
                &["ops"],
                "default",
                Severity::Critical,
                json!({"evil": HOSTILE}),
            ),
        )
        .await;
        h.request(
            "hostile:2",
            request(
                &["ops"],
                "liquidation",
                Severity::High,
                json!({
                    "protocol": HOSTILE,
                    "pool": "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2",
                    "user": HOSTILE,
                    "health_factor": "1",
                    "total_collateral_base": "2",
                    "total_debt_base": "3",
                    "max_debt_to_cover_base": "4",
                    "block_number": 5,
                    "transaction_hash": "0xfeed",
                    "buttons": [{"text": HOSTILE, "url": "https://example.org/x?a=(1)"}],
                }),
            ),
        )
        .await;
        let sent = wait_chat(&fake, OPS_CHAT, 2).await;
        // The fake refuses text Telegram would refuse (400 can't parse entities), so arriving
        // here means the markup parsed; and the reader sees every character as it was.
        assert!(
            sent[0].plain.contains(&format!("evil: {HOSTILE}")),
            "{mode}: {}",
            sent[0].plain
        );
        assert!(
            sent[1].plain.contains(&format!("on {HOSTILE}")),
            "{mode}: {}",
            sent[1].plain
        );
        assert!(
            sent[1].plain.contains(&format!("User: {HOSTILE}")),
            "{mode}: {}",
            sent[1].plain
        );
        // The template's own formatting survived as markup.
        assert!(
            sent[0].text.starts_with(match mode {
                "html" => "🔴 CRITICAL <b>default</b>",
                _ => "🔴 CRITICAL *default*",
            }),
            "{mode}: {}",
            sent[0].text
        );
        let kb = sent[1].reply_markup.as_ref().expect("buttons")["inline_keyboard"].to_string();
        assert!(kb.contains("https://example.org/x?a=(1)"), "{kb}");
        assert!(kb.contains("https://etherscan.io/tx/0xfeed"), "{kb}");
        assert!(h.events_of("notify.failed").await.is_empty());
        h.stop().await;
        h.assert_secrets_kept(&[TOKEN]).await;
    }
}

fn max_in_window(times: &[Instant], len: Duration) -> usize {
    times
        .iter()
        .map(|&a| times.iter().filter(|&&b| b >= a && b < a + len).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_alerts_keeps_telegram_limits() {
    // 40 channels of one chat each (10 of them groups), 5 alerts each, all at once.
    let mut channels = String::new();
    let chat = |i: usize| {
        if i < 10 {
            -5000 - i as i64
        } else {
            5000 + i as i64
        }
    };
    for i in 0..40 {
        channels.push_str(&format!(
            "    - {{name: c{i}, telegram: {{chats: [{}]}}}}\n",
            chat(i)
        ));
    }
    let (fake, mut h) = setup(
        "",
        &format!("{channels}  flood: {{max_messages: 1000, window: 1m}}\n"),
    )
    .await;
    h.start();
    let events: Vec<_> = (0..200)
        .map(|i| {
            steward_events::Envelope::new(
                "test",
                format!("burst:{i}"),
                &request(
                    &[&format!("c{}", i % 40)],
                    "default",
                    Severity::High,
                    json!({"i": i}),
                ),
            )
        })
        .collect();
    let started = Instant::now();
    h.log.append(&events).await.unwrap();
    let sent = fake.wait_sent(200, Duration::from_secs(60)).await;
    assert_eq!(sent.len(), 200, "every alert delivered");
    let took = started.elapsed();
    let times: Vec<Instant> = sent.iter().map(|s| s.at).collect();
    // 30 per second overall (arrival times jitter by a few ms: check a slightly shorter window).
    assert!(max_in_window(&times, Duration::from_millis(950)) <= 30);
    assert!(
        took >= Duration::from_secs(6),
        "200 at 30/s take more than 6 s ({took:?})"
    );
    // One per second per chat, 20 per minute per group.
    let mut by_chat: HashMap<i64, Vec<Instant>> = HashMap::new();
    for s in &sent {
        by_chat.entry(s.chat_id).or_default().push(s.at);
    }
    assert_eq!(by_chat.len(), 40);
    for (c, mut t) in by_chat {
        t.sort();
        assert_eq!(t.len(), 5);
        for w in t.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_millis(900),
                "chat {c}: {:?}",
                w[1] - w[0]
            );
        }
        if c < 0 {
            assert!(max_in_window(&t, Duration::from_secs(60)) <= 20);
        }
    }
    let delivered = h
        .wait_events("notify.delivered", 200, Duration::from_secs(10))
        .await;
    assert_eq!(delivered.len(), 200);
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_becomes_one_digest() {
    let (fake, mut h) = setup(
        "    rate_limits: {per_chat_interval: 10ms}\n",
        "  flood: {max_messages: 3, window: 2s}\n",
    )
    .await;
    h.start();
    let events: Vec<_> = (0..10)
        .map(|i| {
            steward_events::Envelope::new(
                "test",
                format!("flood:{i}"),
                &request(&["ops"], "default", Severity::Medium, json!({"i": i})),
            )
        })
        .collect();
    h.log.append(&events).await.unwrap();
    let sent = wait_chat(&fake, OPS_CHAT, 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent_after = to(&fake.sent(), OPS_CHAT);
    assert_eq!(
        sent_after.len(),
        4,
        "3 messages and one digest: {:#?}",
        sent_after.iter().map(|s| &s.plain).collect::<Vec<_>>()
    );
    let digest = &sent[3];
    assert!(
        digest.plain.starts_with("7 notifications in the last 2s"),
        "{}",
        digest.plain
    );
    assert_eq!(
        digest.plain.matches("[medium] default").count(),
        7,
        "{}",
        digest.plain
    );
    // Every request is accounted for: 10 delivered (7 of them inside the digest).
    let delivered = h
        .wait_events("notify.delivered", 10, Duration::from_secs(5))
        .await;
    assert_eq!(delivered.len(), 10);
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_as_retry_after_says() {
    let (fake, mut h) = setup("", "").await;
    fake.too_many_requests(1, 2);
    h.start();
    h.request(
        "r:1",
        request(&["ops"], "default", Severity::High, json!({})),
    )
    .await;
    let sent = wait_chat(&fake, OPS_CHAT, 1).await;
    let attempts: Vec<Instant> = fake
        .requests()
        .into_iter()
        .filter(|(m, _, _)| m == "sendmessage")
        .map(|(_, _, at)| at)
        .collect();
    assert_eq!(attempts.len(), 2, "refused once with 429, then accepted");
    assert!(
        attempts[1] - attempts[0] >= Duration::from_secs(2),
        "{:?}",
        attempts[1] - attempts[0]
    );
    assert_eq!(sent.len(), 1);
    let rows = h.outbox().all().await.unwrap();
    assert_eq!(rows[0].attempts, 1, "a 429 is not a failed attempt");
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_ack_never_sends_twice() {
    let (fake, mut h) = setup("", "").await;
    fake.hang(true);
    h.start();
    let first = h
        .request(
            "crash:1",
            request(&["ops"], "default", Severity::High, json!({"n": "first"})),
        )
        .await;
    // Telegram has the message, the notifier never hears back: the process dies now.
    wait_chat(&fake, OPS_CHAT, 1).await;
    h.crash().await;
    fake.hang(false);
    h.start();
    h.request(
        "crash:2",
        request(&["ops"], "default", Severity::High, json!({"n": "second"})),
    )
    .await;
    wait_chat(&fake, OPS_CHAT, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = to(&fake.sent(), OPS_CHAT);
    assert_eq!(
        sent.len(),
        2,
        "{:?}",
        sent.iter().map(|s| &s.plain).collect::<Vec<_>>()
    );
    assert!(sent[0].plain.contains("first") && sent[1].plain.contains("second"));
    let rows = h.outbox().all().await.unwrap();
    let row = rows.iter().find(|m| m.request_key == first.key).unwrap();
    assert_eq!(row.status, "unconfirmed");
    // The same request delivered again (redelivery, a replay) adds nothing.
    let projection = steward_notifier::NotifierProjection::new(
        h.config.clone(),
        std::sync::Arc::new(steward_notifier::Templates::load(&h.config).unwrap()),
    );
    let again = h.store.project(&projection, 1, &first).await.unwrap();
    assert_eq!(again, steward_store::Applied::AlreadyApplied);
    let mut copy = first.clone();
    copy.id = uuid_like();
    h.log.append(std::slice::from_ref(&copy)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(to(&fake.sent(), OPS_CHAT).len(), 2);
    assert_eq!(h.outbox().all().await.unwrap().len(), 2);
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

fn uuid_like() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_start_up_without_showing_it() {
    let fake = FakeTelegram::start("1:the-right-token").await.unwrap();
    let h = Harness::new(&yaml(&fake, "", "")).await;
    let err = h
        .run_to_end(Duration::from_secs(10))
        .await
        .expect_err("start-up must stop");
    let text = format!("{err:#}");
    assert!(text.contains("Telegram refused the bot"), "{text}");
    assert!(text.contains("TELEGRAM_BOT_TOKEN"), "{text}");
    assert!(
        !text.contains(TOKEN) && !text.contains("AAH-bot-token-secret-value_xyz"),
        "{text}"
    );
    h.assert_secrets_kept(&[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_telegram_is_off_and_requests_fail_saying_why() {
    let fake = FakeTelegram::start(TOKEN).await.unwrap();
    let yaml = yaml(&fake, "", "").replace(
        &format!("    bot_token: \"{TOKEN}\"\n"),
        "    bot_token: ${TELEGRAM_BOT_TOKEN:-}\n",
    );
    let mut h = Harness::new(&yaml).await;
    assert!(!h.config.notify.telegram_enabled());
    h.start();
    h.request(
        "off:1",
        request(&["ops"], "default", Severity::High, json!({})),
    )
    .await;
    let failed = h
        .wait_events("notify.failed", 1, Duration::from_secs(10))
        .await;
    let f: steward_events::NotifyFailed = failed[0].payload().unwrap();
    assert!(f.error.contains("Telegram is off"), "{}", f.error);
    assert!(fake.requests().is_empty(), "nothing reaches the Bot API");
    assert!(logs().contains("Telegram is off"));
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_raises_an_alert() {
    let (fake, mut h) = setup("", "").await;
    h.start();
    h.append(
        "dl:1",
        &LogEventDeadLettered {
            consumer: "risk".into(),
            sequence: 42,
            deliveries: 5,
            last_error: "rpc timed out".into(),
            event: json!({"type": "chain.log.observed", "key": "log:1:0xb10c:3"}),
            severity: Severity::High,
        },
    )
    .await;
    let sent = wait_chat(&fake, OPS_CHAT, 1).await;
    assert!(
        sent[0].plain.contains("Event dead-lettered"),
        "{}",
        sent[0].plain
    );
    assert!(
        sent[0].plain.contains(
            "Consumer risk gave up on chain.log.observed (sequence 42) after 5 deliveries"
        ),
        "{}",
        sent[0].plain
    );
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_playbook_run_raises_an_alert_and_a_successful_one_does_not() {
    let (fake, mut h) = setup("", "").await;
    h.start();
    h.append(
        "run:ok",
        &PlaybookRunFinished {
            playbook: "oracle-alert".into(),
            run_key: "run-ok".into(),
            outcome: "succeeded".into(),
            failed_step: None,
            error: None,
        },
    )
    .await;
    h.append(
        "run:failed",
        &PlaybookRunFinished {
            playbook: "aave-liquidation".into(),
            run_key: "run-failed".into(),
            outcome: "failed".into(),
            failed_step: Some("queue".into()),
            error: Some("no relayer for chain 1 <configured>".into()),
        },
    )
    .await;
    let sent = wait_chat(&fake, OPS_CHAT, 1).await;
    let text = &sent[0].plain;
    assert!(text.contains("Playbook failed"), "{text}");
    assert!(
        text.contains("aave-liquidation stopped at step queue"),
        "{text}"
    );
    assert!(
        text.contains("Error: no relayer for chain 1 <configured>"),
        "{text}"
    );
    // The successful run, consumed first, queued nothing: every outbox row is the failure's.
    assert!(!text.contains("oracle-alert"), "{text}");
    let rows = h.outbox().all().await.unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.template == "playbook_failed" && !r.body.contains("oracle-alert")),
        "{rows:?}"
    );
    h.stop().await;
    h.assert_secrets_kept(&[TOKEN]).await;
}
