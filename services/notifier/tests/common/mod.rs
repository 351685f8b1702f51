//! Shared setup of the notifier's tests: an embedded event log and a SQLite store in a temp
//! dir, the notifier service started (and stopped, or crashed) as the binary runs it, a real
//! SMTP server (aiosmtpd, installed by `scripts/install-test-deps`), the fake Bot API, and
//! every log line captured so tests can search it for secrets.
#![allow(dead_code, unused_imports, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use steward_config::{Config, Document, MapEnv};
use steward_events::{Envelope, NotifyRequested, Payload};
use steward_log::embedded::EmbeddedLog;
use steward_log::{EventLog, LogMetrics};
use steward_runtime::{Readiness, ServiceContext};
use steward_store::Store;
use tokio_util::sync::CancellationToken;

pub use steward_notifier::fake_telegram::FakeTelegram;

pub const TOKEN: &str = "4242:AAH-bot-token-secret-value_xyz";
pub const SMTP_USER: &str = "steward";
pub const SMTP_PASSWORD: &str = "smtp-hunter2-password";

// ---------------------------------------------------------------- captured logs

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Buffer> = OnceLock::new();

/// Captures every log line of the process (all levels, all targets, except what the
/// binary's own filter never lets through: transports below info).
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let buf = Buffer::default();
        let writer = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                steward_runtime::telemetry::allowed(m.target(), m.level())
            }));
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(tracing_subscriber::filter::LevelFilter::TRACE))
            .try_init();
        buf
    });
}

/// Everything logged so far.
pub fn logs() -> String {
    LOGS.get()
        .map(|b| {
            String::from_utf8_lossy(&b.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the notifier

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: Arc<dyn EventLog>,
    pub store: Store,
    pub config: Arc<Config>,
    running: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

/// A configuration with the notifier's checks, as `steward config check` loads it.
pub fn config(yaml: &str, dir: &std::path::Path) -> Config {
    let doc = Document::parse(yaml, "steward.yaml", &MapEnv::new()).expect("yaml");
    Config::from_document_checked(&doc, dir.to_path_buf(), &steward_notifier::check_config)
        .unwrap_or_else(|e| panic!("config: {e}"))
}

impl Harness {
    pub async fn new(yaml: &str) -> Self {
        capture_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Arc::new(config(yaml, dir.path()));
        let log = EmbeddedLog::open(&dir.path().join("events.db"), "steward")
            .await
            .expect("embedded log");
        let store = Store::connect(
            &format!("sqlite://{}", dir.path().join("steward.db").display()),
            4,
        )
        .await
        .expect("store");
        Self {
            dir,
            log: Arc::new(log),
            store,
            config,
            running: None,
        }
    }

    fn context(&self, shutdown: CancellationToken) -> ServiceContext {
        let mut registry = prometheus_client::registry::Registry::default();
        ServiceContext {
            name: steward_notifier::NAME,
            log: self.log.clone(),
            metrics: LogMetrics::register(&mut registry),
            store: self.store.clone(),
            config: self.config.clone(),
            shutdown,
            ready: Readiness::default().register(steward_notifier::NAME),
        }
    }

    /// Runs the notifier until [`Harness::stop`] or [`Harness::crash`].
    pub fn start(&mut self) {
        let token = CancellationToken::new();
        let ctx = self.context(token.clone());
        let handle = tokio::spawn(steward_notifier::service().run(ctx));
        self.running = Some((token, handle));
    }

    /// Runs the notifier to its end and returns how it ended (for start-up failures).
    pub async fn run_to_end(&self, within: Duration) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        let ctx = self.context(token.clone());
        let run = steward_notifier::service().run(ctx);
        match tokio::time::timeout(within, run).await {
            Ok(r) => r,
            Err(_) => {
                token.cancel();
                Ok(())
            }
        }
    }

    /// A graceful stop, as on SIGTERM.
    pub async fn stop(&mut self) {
        if let Some((token, handle)) = self.running.take() {
            token.cancel();
            handle
                .await
                .expect("notifier task")
                .expect("the notifier stopped with an error");
        }
    }

    /// The process dies: the task is dropped wherever it is, nothing runs after.
    pub async fn crash(&mut self) {
        if let Some((_, handle)) = self.running.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    pub async fn append<P: Payload>(&self, key: &str, payload: &P) -> Envelope {
        let e = Envelope::new("test", key, payload);
        self.log
            .append(std::slice::from_ref(&e))
            .await
            .expect("append");
        e
    }

    pub async fn request(&self, key: &str, req: NotifyRequested) -> Envelope {
        self.append(key, &req).await
    }

    /// Every event in the log, in order.
    pub async fn events(&self) -> Vec<Envelope> {
        self.log
            .read(1, &[], 1_000_000)
            .await
            .expect("read log")
            .into_iter()
            .map(|s| s.event)
            .collect()
    }

    pub async fn events_of(&self, t: &str) -> Vec<Envelope> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.event_type == t)
            .collect()
    }

    /// Waits until `n` events of type `t` are in the log.
    pub async fn wait_events(&self, t: &str, n: usize, within: Duration) -> Vec<Envelope> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let e = self.events_of(t).await;
            if e.len() >= n || tokio::time::Instant::now() >= deadline {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn outbox(&self) -> steward_notifier::outbox::Outbox {
        steward_notifier::outbox::Outbox::new(self.store.clone())
    }

    /// Everything a secret could leak into: the captured logs, every event, every outbox row.
    pub async fn assert_secrets_kept(&self, secrets: &[&str]) {
        let logs = logs();
        let events: String = self
            .events()
            .await
            .iter()
            .map(|e| String::from_utf8_lossy(&e.to_json()).into_owned())
            .collect();
        let rows: String = self
            .outbox()
            .all()
            .await
            .expect("outbox")
            .iter()
            .map(|m| format!("{m:?}"))
            .collect();
        let config = format!("{:?}\n{}", self.config, self.config.summary());
        for s in secrets {
            assert!(!logs.contains(s), "a secret is in the logs:\n{logs}");
            assert!(!events.contains(s), "a secret is in an event");
            assert!(!rows.contains(s), "a secret is in the outbox");
            assert!(
                !config.contains(s),
                "a secret is in the config's Debug or summary"
            );
        }
        assert!(
            !logs.is_empty(),
            "no logs were captured: the search proves nothing"
        );
    }
}

pub fn request(
    channels: &[&str],
    template: &str,
    severity: steward_events::Severity,
    ctx: Value,
) -> NotifyRequested {
    NotifyRequested {
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        template: template.to_owned(),
        severity,
        context: ctx.as_object().cloned().unwrap_or_default(),
    }
}

/// Polls `f` until it returns `Some`, up to `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- the SMTP server

/// aiosmtpd, started by the test on a port of its choosing.
pub struct Smtp {
    child: Child,
    pub port: u16,
    out: std::path::PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn smtp_python() -> std::path::PathBuf {
    let py = steward_testkit::tools_dir().join("smtp-venv/bin/python");
    if !py.exists() {
        panic!(
            "{} is missing: the e-mail tests need aiosmtpd. Run `bash scripts/install-test-deps` \
             (or the whole suite with `scripts/test`), which installs it into a venv there.",
            py.display()
        );
    }
    py
}

impl Smtp {
    /// Starts aiosmtpd on `port`, writing what it receives to `out`; with `auth`, it requires
    /// that user and password.
    pub fn start(port: u16, out: &std::path::Path, auth: Option<(&str, &str)>) -> Self {
        Self::start_with(port, out, auth, None)
    }

    /// [`Smtp::start`] with TLS: `("starttls" | "tls", certificate, key)` (PEM files).
    pub fn start_with(
        port: u16,
        out: &std::path::Path,
        auth: Option<(&str, &str)>,
        tls: Option<(&str, &std::path::Path, &std::path::Path)>,
    ) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py");
        let mut cmd = Command::new(smtp_python());
        cmd.arg(script).arg(port.to_string()).arg(out);
        if let Some((mode, cert, key)) = tls {
            cmd.env("SMTP_TLS", mode)
                .env("SMTP_CERT", cert)
                .env("SMTP_KEY", key);
        }
        if let Some((u, p)) = auth {
            cmd.arg(u).arg(p);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read aiosmtpd's first line");
        assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
        Self {
            child,
            port,
            out: out.to_owned(),
        }
    }

    /// The messages received, parsed by Python's `email` package.
    pub fn messages(&self) -> Vec<Value> {
        read_messages(&self.out)
    }
}

pub fn read_messages(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
