//! What the notifier does for playbooks: `/approve` and `/deny` become
//! `playbook.approval.decided` events (allowlisted chats only), and a request with
//! `include_status: true` (the daily digest) is rendered with the read models' pending Safe
//! transactions, open risks and failed deliveries.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use steward_events::{
    NotifyFailed, NotifyRequested, PlaybookApprovalDecided, RiskOracleStale, SafeTxProposed,
    Severity,
};
use steward_notifier::fake_telegram::Sent;

const OPS_CHAT: i64 = -1001;
const ADMIN_CHAT: i64 = 100;
const STRANGER_CHAT: i64 = 200;

fn yaml(fake: &FakeTelegram) -> String {
    format!(
        "notify:\n  telegram:\n    bot_token: \"{TOKEN}\"\n    api_url: {}\n    poll_timeout: 1s\n    allowed_chats: [{ADMIN_CHAT}]\n  channels:\n    - name: ops\n      telegram: {{chats: [{OPS_CHAT}]}}\n",
        fake.url()
    )
}

async fn wait_chat(fake: &FakeTelegram, chat: i64, n: usize) -> Vec<Sent> {
    eventually(
        Duration::from_secs(20),
        &format!("{n} messages in chat {chat}"),
        || async {
            let s: Vec<Sent> = fake
                .sent()
                .into_iter()
                .filter(|s| s.chat_id == chat)
                .collect();
            (s.len() >= n).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_deny_become_decision_events_from_allowlisted_chats_only() {
    let fake = FakeTelegram::start(TOKEN).await.expect("fake Bot API");
    let mut h = Harness::new(&yaml(&fake)).await;
    h.start();
    fake.message(
        ADMIN_CHAT,
        7,
        "/approve 5f2c0b9e8a7d6c5b4a3f2e1d0c9b8a7f approve",
    );
    fake.message(
        ADMIN_CHAT,
        8,
        "/deny 5f2c0b9e8a7d6c5b4a3f2e1d0c9b8a7f approve not now",
    );
    fake.message(ADMIN_CHAT, 7, "/approve onlyone");
    fake.message(
        STRANGER_CHAT,
        9,
        "/approve 5f2c0b9e8a7d6c5b4a3f2e1d0c9b8a7f approve",
    );
    let replies = wait_chat(&fake, ADMIN_CHAT, 3).await;
    assert!(
        replies[0].plain.contains("you approved step approve"),
        "{}",
        replies[0].plain
    );
    assert!(
        replies[1].plain.contains("you denied step approve"),
        "{}",
        replies[1].plain
    );
    assert!(
        replies[2].plain.contains("Usage: /approve <run> <step>"),
        "{}",
        replies[2].plain
    );
    let refused = wait_chat(&fake, STRANGER_CHAT, 1).await;
    assert!(
        refused[0].plain.contains("only talks to"),
        "{}",
        refused[0].plain
    );
    let decided = h
        .wait_events("playbook.approval.decided", 2, Duration::from_secs(10))
        .await;
    // Give a stray third event the chance to appear: there must be exactly two.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.events_of("playbook.approval.decided").await.len(), 2);
    let a: PlaybookApprovalDecided = decided[0].payload().unwrap();
    let d: PlaybookApprovalDecided = decided[1].payload().unwrap();
    assert_eq!(
        (
            a.run_key.as_str(),
            a.step.as_str(),
            a.approved,
            a.telegram_user_id,
            a.chat_id
        ),
        (
            "5f2c0b9e8a7d6c5b4a3f2e1d0c9b8a7f",
            "approve",
            true,
            Some(7),
            Some(ADMIN_CHAT)
        )
    );
    assert_eq!(
        (d.approved, d.telegram_user_id, d.reason.as_deref()),
        (false, Some(8), Some("not now"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_digest_lists_pending_safe_transactions_open_risks_and_failed_deliveries() {
    let fake = FakeTelegram::start(TOKEN).await.expect("fake Bot API");
    let mut h = Harness::new(&yaml(&fake)).await;
    h.start();
    h.append(
        "safe:tx:1",
        &SafeTxProposed {
            safe: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            safe_tx_hash: "0x9f1c3a4b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081"
                .into(),
            nonce: 7,
            to: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            value: "0".into(),
            data: "0x".into(),
            operation: 0,
            safe_tx_gas: "0".into(),
            base_gas: "0".into(),
            gas_price: "0".into(),
            gas_token: "0x0000000000000000000000000000000000000000".into(),
            refund_receiver: "0x0000000000000000000000000000000000000000".into(),
            would_revert: false,
            reason: "rebalance the curated set".into(),
            decoded: None,
            origin: None,
            threshold: None,
            simulation: None,
        },
    )
    .await;
    h.append(
        "risk:stale:eth",
        &RiskOracleStale {
            asset: "ETH".into(),
            feed: "0x0000000000000000000000000000000000000001".into(),
            age_secs: 7200,
            heartbeat_secs: 3600,
            last_answer: "300000000000".into(),
            severity: Severity::High,
            active: true,
        },
    )
    .await;
    h.append(
        "notify:failed:1",
        &NotifyFailed {
            channel: "signers".into(),
            request_key: "r1".into(),
            attempts: 8,
            error: "SMTP 550 mailbox unavailable".into(),
        },
    )
    .await;
    let mut context = serde_json::Map::new();
    context.insert("title".into(), json!("Daily digest"));
    context.insert("include_status".into(), json!(true));
    h.request(
        "digest:1",
        NotifyRequested {
            channels: vec!["ops".into()],
            template: "daily_digest".into(),
            severity: Severity::Info,
            context,
        },
    )
    .await;
    let sent = wait_chat(&fake, OPS_CHAT, 1).await;
    let text = &sent.last().unwrap().plain;
    assert!(text.contains("Safe transactions pending (1)"), "{text}");
    assert!(text.contains("rebalance the curated set"), "{text}");
    assert!(text.contains("Open risks (1)"), "{text}");
    assert!(
        text.contains("Deliveries that failed in the last day (1)"),
        "{text}"
    );
    assert!(text.contains("SMTP 550"), "{text}");
    h.stop().await;
}
