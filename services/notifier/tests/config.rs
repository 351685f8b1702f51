//! What the notifier finds wrong in a configuration, before anything runs: bad templates
//! named with their file, line and column; channels that cannot work; e-mail addresses; and
//! secrets kept out of every message.

use steward_config::{Config, Document, MapEnv};

fn load(yaml: &str, dir: &std::path::Path, env: &MapEnv) -> Result<Config, String> {
    let doc = Document::parse(yaml, "steward.yaml", env).map_err(|e| e.to_string())?;
    Config::from_document_checked(&doc, dir.to_path_buf(), &steward_notifier::check_config)
        .map_err(|e| e.to_string())
}

fn with_templates(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("templates");
    std::fs::create_dir(&t).unwrap();
    for (name, text) in files {
        std::fs::write(t.join(name), text).unwrap();
    }
    let r = load(
        "notify:\n  templates: templates\n",
        dir.path(),
        &MapEnv::new(),
    );
    (dir, r)
}

#[test]
fn a_template_syntax_error_is_named_with_file_line_and_column() {
    let (_d, r) = with_templates(&[(
        "liquidation.telegram.hbs",
        "Position {{user}}\nHealth {{#if health_factor}}ok\n",
    )]);
    let e = r.unwrap_err();
    assert!(
        e.starts_with("steward.yaml:2:14: notify.templates: templates/liquidation.telegram.hbs:"),
        "{e}"
    );
    assert!(e.contains("syntax error"), "{e}");
}

#[test]
fn an_unknown_variable_is_named_with_file_line_and_column() {
    let (_d, r) = with_templates(&[(
        "liquidation.subject.hbs",
        "Liquidation of {{user}}\n at {{helth_factor}}\n",
    )]);
    let e = r.unwrap_err();
    assert!(
        e.contains("templates/liquidation.subject.hbs:2:5: unknown variable `helth_factor`: liquidation.example.json does not declare it"),
        "{e}"
    );
    assert!(
        e.contains("health_factor"),
        "the message lists the variables: {e}"
    );
}

#[test]
fn a_helper_missing_its_argument_is_named() {
    let (_d, r) = with_templates(&[(
        "safe_tx.text.hbs",
        "Sign at {{signing_link safe safe_tx_hsh}}\n",
    )]);
    let e = r.unwrap_err();
    assert!(
        e.contains("templates/safe_tx.text.hbs:1:9: unknown variable `safe_tx_hsh`"),
        "{e}"
    );
}

#[test]
fn a_new_template_needs_every_part_and_its_example() {
    let (_d, r) = with_templates(&[("rebalance.telegram.hbs", "Rebalance {{operator_set}}\n")]);
    let e = r.unwrap_err();
    assert!(
        e.contains("the new template `rebalance` lacks rebalance.subject.hbs, rebalance.text.hbs, rebalance.html.hbs, rebalance.example.json"),
        "{e}"
    );
    let (_d, r) = with_templates(&[
        (
            "rebalance.telegram.hbs",
            "{{#bold}}Rebalance{{/bold}} {{operator_set}}: {{fmt_amount moved 18 \"ETH\"}}\n",
        ),
        ("rebalance.subject.hbs", "Rebalance {{operator_set}}\n"),
        (
            "rebalance.text.hbs",
            "Rebalance {{operator_set}}: {{moved}}\n",
        ),
        ("rebalance.html.hbs", "<p>Rebalance {{operator_set}}</p>\n"),
        (
            "rebalance.example.json",
            "{\"operator_set\": \"lido\", \"moved\": \"1000000000000000000\"}",
        ),
        ("README.md", "not a template"),
    ]);
    let config = r.unwrap();
    let t = steward_notifier::Templates::load(&config).unwrap();
    assert!(t.has("rebalance"));
    let out = t
        .render("rebalance", &t.example_context("rebalance"))
        .unwrap();
    assert_eq!(out.summary, "Rebalance lido");
    assert_eq!(out.telegram, "*Rebalance* lido: 1 ETH");
    let (_d, r) = with_templates(&[
        ("rebalance.telegram.hbs", "x\n"),
        ("rebalance.subject.hbs", "x\n"),
        ("rebalance.text.hbs", "x\n"),
        ("rebalance.html.hbs", "x\n"),
        ("rebalance.example.json", "{\"a\": "),
    ]);
    assert!(
        r.unwrap_err()
            .contains("templates/rebalance.example.json:1:"),
        "bad JSON is placed too"
    );
}

#[test]
fn a_user_template_replaces_the_built_in_one() {
    let (_d, r) = with_templates(&[("liquidation.subject.hbs", "LIQ {{user}}\n")]);
    let config = r.unwrap();
    let t = steward_notifier::Templates::load(&config).unwrap();
    let out = t
        .render("liquidation", &t.example_context("liquidation"))
        .unwrap();
    assert_eq!(
        out.summary,
        "LIQ 0x0000000000000000000000000000000000000001"
    );
    // The other parts stay built in.
    assert!(
        out.telegram.contains("Liquidatable position"),
        "{}",
        out.telegram
    );
}

fn error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    load(yaml, dir.path(), &MapEnv::new()).expect_err("refused")
}

#[test]
fn channels_that_cannot_work_are_refused_where_they_are() {
    assert_eq!(
        error("notify:\n  channels:\n    - name: ops\n"),
        "steward.yaml:3:7: notify.channels[0]: says nowhere to send: give `telegram: {chats: [...]}` or `email: {to: [...]}`"
    );
    let e = error("notify:\n  channels:\n    - name: ops\n      telegram: {chats: [1]}\n");
    assert!(
        e.starts_with(
            "steward.yaml:4:7: notify.channels[0].telegram: a Telegram channel needs the bot"
        ),
        "{e}"
    );
    let e = error("notify:\n  email: {host: smtp.example.org, from: steward@example.org}\n  channels:\n    - name: ops\n      email: {to: [\"not an address\"]}\n");
    assert!(
        e.starts_with("steward.yaml:5:20: notify.channels[0].email.to[0]: not an e-mail address"),
        "{e}"
    );
    let e = error("notify:\n  alert_channels: [opz]\n  email: {host: h, from: a@b.c}\n  channels:\n    - {name: ops, email: {to: [a@b.c]}}\n");
    assert!(
        e.contains(
            "notify.alert_channels[0]: no channel has this name; the channels are: ops (got opz)"
        ),
        "{e}"
    );
    let e = error("notify:\n  telegram: {api_url: \"ftp://x\"}\n");
    assert!(
        e.contains("notify.telegram.api_url: must be an http(s) URL"),
        "{e}"
    );
}

#[test]
fn secrets_are_absent_or_redacted_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "notify:\n  telegram:\n    bot_token: ${TELEGRAM_BOT_TOKEN:-}\n  email:\n    host: smtp.example.org\n    username: steward\n    password: ${SMTP_PASSWORD:-}\n    from: steward@example.org\n";
    // Absent (another pod): accepted, the transport is off and the summary says why.
    let c = load(yaml, dir.path(), &MapEnv::new()).unwrap();
    assert!(!c.notify.telegram_enabled());
    assert!(
        c.summary()
            .contains("telegram off (no bot_token: TELEGRAM_BOT_TOKEN is not set)"),
        "{}",
        c.summary()
    );
    // Present: never printed.
    let env = MapEnv::new()
        .with("TELEGRAM_BOT_TOKEN", "12345:very-secret-token")
        .with("SMTP_PASSWORD", "very-secret-password");
    let c = load(yaml, dir.path(), &env).unwrap();
    assert!(c.notify.telegram_enabled());
    let shown = format!("{c:?}\n{}", c.summary());
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(
        shown.contains("token set, redacted") && shown.contains("password set (redacted)"),
        "{shown}"
    );
    // A malformed token is refused without being echoed.
    let env = MapEnv::new().with("TELEGRAM_BOT_TOKEN", "not a token, very-secret");
    let e = load(yaml, dir.path(), &env).unwrap_err();
    assert!(
        e.contains("notify.telegram.bot_token: does not look like a bot token"),
        "{e}"
    );
    assert!(!e.contains("very-secret"), "{e}");
}

#[test]
fn an_smtp_ca_file_that_is_missing_empty_or_useless_is_refused_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mail = |extra: &str| {
        format!(
            "notify:\n  email:\n    host: smtp.example.org\n    from: steward@example.org\n{extra}"
        )
    };
    let e = load(
        &mail("    ca_file: nosuch.pem\n"),
        dir.path(),
        &MapEnv::new(),
    )
    .unwrap_err();
    assert!(e.contains("notify.email.ca_file"), "{e}");
    assert!(e.contains("cannot read") && e.contains("nosuch.pem"), "{e}");

    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let e = load(
        &mail("    ca_file: empty.pem\n"),
        dir.path(),
        &MapEnv::new(),
    )
    .unwrap_err();
    assert!(e.contains("holds no PEM certificate"), "{e}");

    // A CA with plain SMTP would never be used.
    let e = load(
        &mail("    security: plain\n    ca_file: empty.pem\n"),
        dir.path(),
        &MapEnv::new(),
    )
    .unwrap_err();
    assert!(e.contains("`security: plain` uses no TLS"), "{e}");

    // A real CA file, relative to the configuration's folder, loads.
    let tls = std::path::Path::new(
        &std::env::var("STEWARD_TEST_SERVERS_DIR")
            .expect("STEWARD_TEST_SERVERS_DIR: run the tests through scripts/test"),
    )
    .join("tls/ca.pem");
    std::fs::copy(tls, dir.path().join("ca.pem")).unwrap();
    load(&mail("    ca_file: ca.pem\n"), dir.path(), &MapEnv::new()).unwrap();
}
