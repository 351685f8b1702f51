//! Measurements behind `steward bench notifier` (figures in `docs/benchmarks.md`):
//!
//! - rendering: requests rendered into every part (Telegram markup, subject, text, HTML) and
//!   handed to a transport that does nothing (the e-mail MIME message is built too), per
//!   second, on one core;
//! - the whole notifier: `notify.requested` events appended to the embedded log, consumed,
//!   rendered into the outbox and sent to the fake Telegram server on loopback (Telegram's
//!   limits lifted, one chat per request, so the notifier itself is measured), messages per
//!   second; then, at a paced rate, the time from each append to the message's arrival at
//!   the fake server (p50, p99).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use steward_config::{Config, Document, MapEnv};
use steward_events::{Envelope, NotifyRequested, Severity};
use steward_log::{EventLog, LogMetrics};

use crate::fake_telegram::FakeTelegram;
use crate::outbox::Message;
use crate::templates::Templates;

const TOKEN: &str = "123456:bench-token-not-a-secret";

/// A rate over a run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub messages: usize,
    pub seconds: f64,
}

impl Throughput {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// Latencies of a paced run.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub messages: usize,
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

fn context(i: usize) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("protocol".into(), "aave-v3".into());
    c.insert(
        "pool".into(),
        "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2".into(),
    );
    c.insert("user".into(), format!("0x{:040x}", i + 1).into());
    c.insert("health_factor".into(), "950000000000000000".into());
    c.insert("total_collateral_base".into(), "1000000000000".into());
    c.insert("total_debt_base".into(), "900000000000".into());
    c.insert("max_debt_to_cover_base".into(), "900000000000".into());
    c.insert("block_number".into(), (21_000_000 + i).into());
    c.insert("n".into(), i.into());
    c
}

fn request(i: usize, channel: &str) -> NotifyRequested {
    NotifyRequested {
        channels: vec![channel.to_owned()],
        template: "liquidation".into(),
        severity: Severity::High,
        context: context(i),
    }
}

fn config(yaml: &str) -> anyhow::Result<Config> {
    let doc = Document::parse(yaml, "bench.yaml", &MapEnv::new())?;
    Ok(Config::from_document_checked(
        &doc,
        std::path::PathBuf::from("."),
        &crate::check_config,
    )?)
}

/// Renders `n` requests (every part) and builds each e-mail; nothing is sent.
pub fn render(n: usize) -> anyhow::Result<Throughput> {
    let cfg = config(
        "notify:\n  links: {explorer: \"https://etherscan.io\"}\n  email: {host: localhost, security: plain, from: \"Steward <steward@example.org>\"}\n",
    )?;
    let templates =
        Templates::load(&cfg).map_err(|p| anyhow::anyhow!("templates: {}", p.join("; ")))?;
    let mailer =
        crate::email::Mailer::new(cfg.notify.email.as_ref().expect("email"), &cfg.base_dir)?;
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let req = request(i, "ops");
        let env = Envelope::new("bench", format!("bench:{i}"), &req);
        let ctx = crate::projection::render_context(&env, &req, "ops");
        let r = templates.render(&req.template, &ctx)?;
        let mut m = Message::new(
            env.key.clone(),
            &env,
            "ops",
            "email",
            "ops",
            "high",
            "liquidation",
            0,
        );
        m.recipients = vec!["ops@example.org".into()];
        m.summary = r.summary;
        m.body = r.text;
        m.body_html = r.html;
        let email = mailer.build(&m).map_err(|e| anyhow::anyhow!("{e}"))?;
        bytes += email.formatted().len() + r.telegram.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(bytes > 0, "nothing was rendered");
    Ok(Throughput {
        messages: n,
        seconds,
    })
}

/// A notifier on an embedded log and a SQLite store in `dir`, sending to `fake`, with
/// Telegram's limits lifted and flood control out of the way; `chats` chats in one channel
/// named `c<i>` each.
async fn start_notifier(
    dir: &std::path::Path,
    fake: &FakeTelegram,
    chats: usize,
) -> anyhow::Result<(
    Arc<dyn EventLog>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let mut channels = String::new();
    for i in 0..chats {
        channels.push_str(&format!(
            "    - {{name: c{i}, telegram: {{chats: [{}]}}}}\n",
            i + 1
        ));
    }
    let yaml = format!(
        "notify:\n  flood: {{max_messages: 1000000, window: 1s}}\n  telegram:\n    bot_token: \"{TOKEN}\"\n    api_url: {}\n    poll_timeout: 1s\n    rate_limits: {{per_chat_interval: 1ms, per_group_per_minute: 1000000, overall_per_second: 1000000}}\n  channels:\n{channels}",
        fake.url()
    );
    let cfg = Arc::new(config(&yaml)?);
    let log: Arc<dyn EventLog> = Arc::new(
        steward_log::embedded::EmbeddedLog::open(&dir.join("events.db"), "steward").await?,
    );
    let store =
        steward_store::Store::connect(&format!("sqlite://{}", dir.join("steward.db").display()), 4)
            .await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let readiness = steward_runtime::Readiness::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ctx = steward_runtime::ServiceContext {
        name: crate::NAME,
        log: log.clone(),
        metrics: LogMetrics::register(&mut registry),
        store,
        config: cfg,
        shutdown: shutdown.clone(),
        ready: readiness.register(crate::NAME),
    };
    let handle = tokio::spawn(crate::service().run(ctx));
    Ok((log, shutdown, handle))
}

fn number_of(s: &crate::fake_telegram::Sent) -> Option<usize> {
    // The liquidation template shows the block number: 21_000_000 + i.
    let at = s.plain.find("Block ")?;
    let digits: String = s.plain[at + 6..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse::<usize>().ok().map(|b| b - 21_000_000)
}

/// Appends `n` requests at once (one chat each, `chats` chats) and waits until the fake
/// server has received them all.
pub async fn pipeline(n: usize, chats: usize) -> anyhow::Result<Throughput> {
    let dir = tempfile::tempdir()?;
    let fake = FakeTelegram::start(TOKEN).await?;
    let (log, shutdown, handle) = start_notifier(dir.path(), &fake, chats).await?;
    let events: Vec<Envelope> = (0..n)
        .map(|i| {
            Envelope::new(
                "bench",
                format!("bench:{i}"),
                &request(i, &format!("c{}", i % chats)),
            )
        })
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(500) {
        log.append(chunk).await?;
    }
    let sent = fake.wait_sent(n, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    handle.await??;
    anyhow::ensure!(
        sent.len() == n,
        "the fake Telegram received {} messages of {n}",
        sent.len()
    );
    Ok(Throughput {
        messages: n,
        seconds,
    })
}

/// Appends `n` requests at `rate` per second; the time from each append to its message's
/// arrival at the fake server.
pub async fn latency(n: usize, rate: f64, chats: usize) -> anyhow::Result<Latency> {
    let dir = tempfile::tempdir()?;
    let fake = FakeTelegram::start(TOKEN).await?;
    let (log, shutdown, handle) = start_notifier(dir.path(), &fake, chats).await?;
    // Let the consumer settle before timing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut appended = Vec::with_capacity(n);
    let start = tokio::time::Instant::now();
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let e = Envelope::new(
            "bench",
            format!("lat:{i}"),
            &request(i, &format!("c{}", i % chats)),
        );
        let t = tokio::time::Instant::now();
        log.append(std::slice::from_ref(&e)).await?;
        appended.push(t);
    }
    let sent = fake.wait_sent(n, Duration::from_secs(120)).await;
    shutdown.cancel();
    handle.await??;
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|s| number_of(s).map(|i| s.at.saturating_duration_since(appended[i])))
        .collect();
    anyhow::ensure!(lat.len() == n, "{} of {n} messages arrived", lat.len());
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Ok(Latency {
        messages: n,
        rate,
        p50: pct(0.50),
        p99: pct(0.99),
        max: *lat.last().unwrap_or(&Duration::ZERO),
    })
}
