//! E-mail against a real SMTP server (aiosmtpd): the MIME message as a mail client parses it,
//! both parts, escaping, recipients, authentication; a server that is down and comes back
//! gets the message exactly once; a refused password fails for good without being shown.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use steward_events::Severity;

fn yaml(port: u16, extra: &str) -> String {
    format!(
        "notify:\n  retry: {{attempts: 30, initial_backoff: 100ms, max_backoff: 400ms}}\n  email:\n    host: 127.0.0.1\n    port: {port}\n    security: plain\n    username: {SMTP_USER}\n    password: \"{SMTP_PASSWORD}\"\n    from: \"Steward <steward@example.org>\"\n    timeout: 5s\n  channels:\n    - name: ops-mail\n      email:\n        to: [\"ops@example.org\", \"Risk Desk <risk@example.org>\"]\n{extra}"
    )
}

const HOSTILE: &str = "<script>alert(\"pwn\")</script> & <b>bold</b>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_mail_with_both_parts_escaped_reaches_every_recipient() {
    let port = free_port();
    let mut h = Harness::new(&yaml(port, "")).await;
    let smtp = Smtp::start(
        port,
        &h.dir.path().join("mail.jsonl"),
        Some((SMTP_USER, SMTP_PASSWORD)),
    );
    h.start();
    let req = h
        .request(
            "liq:1",
            request(
                &["ops-mail"],
                "liquidation",
                Severity::Critical,
                json!({
                    "protocol": HOSTILE,
                    "pool": "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2",
                    "user": "0x0000000000000000000000000000000000000001",
                    "health_factor": "950000000000000000",
                    "total_collateral_base": "1000000000000",
                    "total_debt_base": "900000000000",
                    "max_debt_to_cover_base": "900000000000",
                    "block_number": 21000000,
                }),
            ),
        )
        .await;
    let msgs = eventually(Duration::from_secs(20), "the e-mail", || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["auth"], json!(SMTP_USER), "the server saw our login");
    assert_eq!(m["mail_from"], json!("steward@example.org"));
    let mut rcpt: Vec<String> = serde_json::from_value(m["rcpt_tos"].clone()).unwrap();
    rcpt.sort();
    assert_eq!(rcpt, vec!["ops@example.org", "risk@example.org"]);
    assert!(
        m["to"]
            .as_str()
            .unwrap()
            .contains("Risk Desk <risk@example.org>"),
        "{m}"
    );
    assert_eq!(m["content_type"], json!("multipart/alternative"));
    assert!(
        m["subject"]
            .as_str()
            .unwrap()
            .starts_with("[critical] Liquidatable position on"),
        "{m}"
    );
    assert!(
        m["subject"].as_str().unwrap().contains(HOSTILE),
        "the subject is plain text: {m}"
    );
    let parts = m["parts"].as_array().unwrap();
    let part = |ct: &str| -> String {
        parts
            .iter()
            .find(|p| p["content_type"] == json!(ct))
            .unwrap_or_else(|| panic!("no {ct} part in {m}"))["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let text = part("text/plain");
    let html = part("text/html");
    assert!(
        text.contains(HOSTILE),
        "the text part shows the value as it is:\n{text}"
    );
    assert!(text.contains("Health factor:     0.95"), "{text}");
    assert!(
        !html.contains("<script>"),
        "the HTML part must escape values:\n{html}"
    );
    assert!(
        html.contains(
            "&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
        ),
        "{html}"
    );
    assert!(
        html.contains("<table>"),
        "the template's own markup stays HTML:\n{html}"
    );
    let mid = m["message_id"].as_str().unwrap();
    assert!(mid.ends_with("@steward.notifier>"), "{mid}");

    let delivered = h
        .wait_events("notify.delivered", 1, Duration::from_secs(10))
        .await;
    assert_eq!(delivered.len(), 1);
    let d: steward_events::NotifyDelivered = delivered[0].payload().unwrap();
    assert_eq!(d.channel, "ops-mail");
    assert_eq!(d.request_key, req.key);
    assert_eq!(delivered[0].correlation_id, req.correlation_id);
    h.stop().await;
    h.assert_secrets_kept(&[SMTP_PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_then_up_gets_the_message_exactly_once() {
    let port = free_port();
    let mut h = Harness::new(&yaml(port, "")).await;
    h.start();
    h.request(
        "down:1",
        request(
            &["ops-mail"],
            "default",
            Severity::High,
            json!({"what": "server down"}),
        ),
    )
    .await;
    // Nothing listens: attempts fail and are rescheduled, never given up (30 allowed).
    let outbox = h.outbox();
    let row = eventually(Duration::from_secs(20), "two failed attempts", || async {
        let rows = outbox.all().await.unwrap();
        rows.into_iter()
            .find(|m| m.attempts >= 2 && m.status == "pending")
    })
    .await;
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("SMTP 127.0.0.1"),
        "{:?}",
        row.last_error
    );
    let out = h.dir.path().join("mail.jsonl");
    let smtp = Smtp::start(port, &out, Some((SMTP_USER, SMTP_PASSWORD)));
    eventually(
        Duration::from_secs(20),
        "the e-mail after the server came back",
        || async { (!smtp.messages().is_empty()).then_some(()) },
    )
    .await;
    // Long enough for any stray retry to have happened.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "delivered once, not once per attempt"
    );
    assert_eq!(
        h.wait_events("notify.delivered", 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    assert!(h.events_of("notify.failed").await.is_empty());
    let rows = outbox.all().await.unwrap();
    assert_eq!(rows[0].status, "sent");
    assert!(rows[0].attempts >= 3, "{}", rows[0].attempts);
    h.stop().await;
    h.assert_secrets_kept(&[SMTP_PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_fails_for_good_without_being_shown() {
    let port = free_port();
    let mut h = Harness::new(&yaml(port, "")).await;
    let smtp = Smtp::start(
        port,
        &h.dir.path().join("mail.jsonl"),
        Some((SMTP_USER, "another-password")),
    );
    h.start();
    let req = h
        .request(
            "auth:1",
            request(&["ops-mail"], "default", Severity::High, json!({})),
        )
        .await;
    let failed = h
        .wait_events("notify.failed", 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        failed.len(),
        1,
        "authentication refused (535) is permanent: no retry loop; {:?}\n{}",
        h.outbox().all().await.unwrap(),
        logs()
    );
    let f: steward_events::NotifyFailed = failed[0].payload().unwrap();
    assert_eq!(f.request_key, req.key);
    assert_eq!(f.attempts, 1);
    assert!(f.error.contains("SMTP"), "{}", f.error);
    assert!(smtp.messages().is_empty());
    h.stop().await;
    h.assert_secrets_kept(&[SMTP_PASSWORD]).await;
}

/// The test servers' throwaway CA and its server certificate for 127.0.0.1
/// (`scripts/test-servers` makes them for PostgreSQL; the SMTP server serves the same one).
fn test_tls() -> std::path::PathBuf {
    let dir = std::env::var("STEWARD_TEST_SERVERS_DIR")
        .expect("STEWARD_TEST_SERVERS_DIR: run the tests through scripts/test");
    std::path::Path::new(&dir).join("tls")
}

/// Sends one message with `security` against aiosmtpd serving TLS as `server` (`starttls`,
/// `tls`, or `None`: no TLS offered), trusting the CA file `ca`; returns the harness, the
/// server and the request's key.
async fn over_tls(
    server: Option<&str>,
    security: &str,
    ca: &std::path::Path,
) -> (Harness, Smtp, String) {
    let (cert, key) = (test_tls().join("server.pem"), test_tls().join("server.key"));
    let port = free_port();
    let yaml = yaml(port, "").replace(
        "    security: plain\n",
        &format!("    security: {security}\n    ca_file: {}\n", ca.display()),
    );
    let mut h = Harness::new(&yaml).await;
    let smtp = Smtp::start_with(
        port,
        &h.dir.path().join("mail.jsonl"),
        Some((SMTP_USER, SMTP_PASSWORD)),
        server.map(|mode| (mode, cert.as_path(), key.as_path())),
    );
    h.start();
    let req = h
        .request(
            &format!("{}:1", server.unwrap_or("clear")),
            request(&["ops-mail"], "default", Severity::High, json!({})),
        )
        .await;
    (h, smtp, req.key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_deliver_to_a_server_of_a_private_ca() {
    for mode in ["starttls", "tls"] {
        let (mut h, smtp, _) = over_tls(Some(mode), mode, &test_tls().join("ca.pem")).await;
        let msgs = eventually(Duration::from_secs(20), "the e-mail", || async {
            let m = smtp.messages();
            (!m.is_empty()).then_some(m)
        })
        .await;
        assert_eq!(msgs.len(), 1, "{mode}");
        assert_eq!(msgs[0]["auth"], json!(SMTP_USER), "{mode}: logged in");
        h.wait_events("notify.delivered", 1, Duration::from_secs(10))
            .await;
        h.stop().await;
        h.assert_secrets_kept(&[SMTP_PASSWORD]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_untrusted_ca_is_refused_and_nothing_is_sent() {
    let (mut h, smtp, key) = over_tls(
        Some("starttls"),
        "starttls",
        &test_tls().join("other-ca.pem"),
    )
    .await;
    let failed = h
        .wait_events("notify.failed", 1, Duration::from_secs(30))
        .await;
    let f: steward_events::NotifyFailed = failed[0].payload().unwrap();
    assert_eq!(f.request_key, key);
    assert!(
        f.error.to_ascii_lowercase().contains("certificate"),
        "{}",
        f.error
    );
    assert!(smtp.messages().is_empty(), "sent to an unverified server");
    h.stop().await;
    h.assert_secrets_kept(&[SMTP_PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_required_and_not_offered_sends_nothing_in_the_clear() {
    // A server that offers no STARTTLS.
    let (mut h, smtp, _) = over_tls(None, "starttls", &test_tls().join("ca.pem")).await;
    let failed = h
        .wait_events("notify.failed", 1, Duration::from_secs(30))
        .await;
    let f: steward_events::NotifyFailed = failed[0].payload().unwrap();
    assert!(f.error.contains("SMTP"), "{}", f.error);
    assert!(smtp.messages().is_empty(), "sent without TLS");
    h.stop().await;
    h.assert_secrets_kept(&[SMTP_PASSWORD]).await;
}
