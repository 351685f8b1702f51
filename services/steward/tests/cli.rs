//! The `steward` binary as a process: start-up, readiness, signals, crash recovery, config
//! errors, secrets — against the real embedded backends, and a real nats-server and
//! PostgreSQL for `steward run`.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_events::Envelope;
use steward_log::EventLog;

mod common;

use common::*;

fn blocks(n: u64) -> Vec<Envelope> {
    (0..n)
        .map(|i| steward_log::conformance::block(1, i))
        .collect()
}

async fn archived(store_url: &str) -> (i64, i64) {
    let store = steward_store::Store::connect(store_url, 1).await.unwrap();
    let a: i64 = steward_store::sqlx::query_scalar("SELECT COUNT(*) FROM event_archive")
        .fetch_one(store.pool())
        .await
        .unwrap_or(0);
    let p: i64 = steward_store::sqlx::query_scalar("SELECT COUNT(*) FROM projection_applied")
        .fetch_one(store.pool())
        .await
        .unwrap_or(0);
    store.close().await;
    (a, p)
}

#[test]
fn up_reports_ready_serves_metrics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut run = spawn(&mut steward(&[
        "up",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ]));
    let body = wait_ready(addr, &mut run.child);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    for s in [
        "archiver",
        "watcher",
        "risk",
        "rebalancer",
        "safe",
        "notifier",
        "runner",
        "api",
    ] {
        assert_eq!(
            ready["services"][s],
            serde_json::json!(true),
            "{s} ready in {body}"
        );
    }
    assert_eq!(http_get(addr, "/healthz").map(|r| r.0), Some(200));
    let (code, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("steward_log_consumer_lag{consumer=\"archiver\"}"),
        "{metrics}"
    );
    assert!(
        dir.path().join("events.db").exists() && dir.path().join("steward.db").exists(),
        "embedded files under the data dir"
    );

    signal(&run.child, "TERM");
    let status = wait_exit(&mut run.child, Duration::from_secs(20));
    let err = run.stderr();
    assert!(status.success(), "exit {status}: {err}");
    let intake = err
        .find("phase=\"intake\"")
        .or_else(|| err.find("\"phase\":\"intake\""))
        .expect("intake phase logged");
    let workers = err
        .find("phase=\"workers\"")
        .or_else(|| err.find("\"phase\":\"workers\""))
        .expect("workers phase logged");
    assert!(intake < workers, "intake stops before workers");
    assert!(err.contains("all services stopped"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_archive_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60_000u64;
    {
        let log =
            steward_log::embedded::EmbeddedLog::open(&dir.path().join("events.db"), "steward")
                .await
                .unwrap();
        for chunk in blocks(n).chunks(5000) {
            log.append(chunk).await.unwrap();
        }
        log.close().await;
    }
    let store_url = format!("sqlite://{}", dir.path().join("steward.db").display());
    let addr = free_addr();
    let args = [
        "up",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ];

    let mut run = spawn(&mut steward(&args));
    // Kill it hard once the archiver is part-way through.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while Instant::now() < deadline {
        if dir.path().join("steward.db").exists() {
            seen = archived(&store_url).await.0;
            if seen > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&run.child, "KILL");
    let _ = wait_exit(&mut run.child, Duration::from_secs(10));
    let after_kill = archived(&store_url).await.0;
    assert!(seen > 0, "the archiver started");
    assert!(
        after_kill < n as i64,
        "killed mid-way ({after_kill} of {n} archived); raise n if this machine is faster"
    );

    let mut run = spawn(&mut steward(&args));
    wait_ready(addr, &mut run.child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counts = (0, 0);
    while Instant::now() < deadline {
        counts = archived(&store_url).await;
        if counts.0 >= n as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&run.child, "TERM");
    assert!(
        wait_exit(&mut run.child, Duration::from_secs(20)).success(),
        "{}",
        run.stderr()
    );
    assert_eq!(counts.0, n as i64, "every event archived after the restart");
    assert_eq!(
        counts.1, n as i64,
        "each event applied exactly once by the projection"
    );
    let log = steward_log::embedded::EmbeddedLog::open(&dir.path().join("events.db"), "steward")
        .await
        .unwrap();
    let dead = log
        .read(1, &["log.event.dead_lettered".to_owned()], 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "nothing was dead-lettered: {dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_nats_and_postgres_archives_events_and_stops_on_sigterm() {
    let nats = steward_testkit::nats_url();
    // The test cluster trusts loopback, so the password is ignored by the server; it is
    // here to prove it never reaches the log.
    let db = steward_testkit::fresh_postgres().await.replacen(
        "postgres@",
        "postgres:pw-n0t-in-logs@",
        1,
    );
    assert!(db.contains("pw-n0t-in-logs"), "{db}");
    let stream = steward_testkit::unique("S").to_uppercase();
    let prefix = steward_testkit::unique("p");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("steward.yaml");
    std::fs::write(
        &cfg,
        format!("event_log:\n  backend: nats\n  prefix: {prefix}\n  nats:\n    url: ${{NATS_URL}}\n    stream: {stream}\ndatabase:\n  url: ${{DB_URL}}\n"),
    )
    .unwrap();
    let addr = free_addr();
    let mut run = spawn(
        steward(&[
            "run",
            "archiver",
            "watcher",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
            "--log-json",
        ])
        .env("NATS_URL", &nats)
        .env("DB_URL", &db)
        .env("RUST_LOG", "info,steward_runtime::archiver=debug"),
    );
    let body = wait_ready(addr, &mut run.child);
    assert!(
        body.contains("\"archiver\":true") && body.contains("\"watcher\":true"),
        "{body}"
    );
    assert!(
        !body.contains("\"risk\""),
        "only the chosen services run: {body}"
    );

    let log = steward_log::nats::NatsLog::connect(
        steward_log::nats::NatsConfig::new(nats.clone())
            .stream(stream.clone())
            .prefix(prefix.clone()),
    )
    .await
    .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log);
    let events = blocks(500);
    log.append(&events).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counts = (0, 0);
    while Instant::now() < deadline && counts.0 < 500 {
        counts = archived(&db).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        counts,
        (500, 500),
        "every event archived once in PostgreSQL"
    );

    signal(&run.child, "TERM");
    let status = wait_exit(&mut run.child, Duration::from_secs(20));
    let err = run.stderr();
    assert!(status.success(), "exit {status}: {err}");
    // JSON logs, and each event's lines carry its correlation id.
    let first = events[0].correlation_id.to_string();
    let line = err
        .lines()
        .find(|l| l.contains("archived") && l.contains(&first))
        .unwrap_or_else(|| panic!("no log line for {first} in {err}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("log lines are JSON");
    assert_eq!(
        v["span"]["correlation_id"],
        serde_json::json!(first),
        "{line}"
    );
    // The database URL came from the environment; no part of it is logged in clear.
    assert!(
        !err.contains("pw-n0t-in-logs"),
        "the database password was logged: {err}"
    );
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[test]
fn run_without_servers_is_refused_with_an_actionable_message() {
    let out = output(&mut steward(&["run", "archiver"]));
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nats"), "{err}");

    let out = output(&mut steward(&[
        "run",
        "nosuch",
        "--nats",
        "nats://127.0.0.1:1",
    ]));
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown service `nosuch`") && err.contains("archiver"),
        "{err}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn config_check_names_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "steward.yaml",
        "http:\n  listen: 127.0.0.1:9464\nevent_log:\n  nats:\n    urll: nats://x\n",
    );
    let out = output(&mut steward(&["config", "check", "--config", &p]));
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("steward.yaml:5:5"), "position: {err}");
    assert!(
        err.contains("event_log.nats.urll") || err.contains("event_log.nats"),
        "field path: {err}"
    );

    let p = write(dir.path(), "bad.yaml", "shutdown_grace: 5 parsecs\n");
    let out = output(&mut steward(&["config", "check", "--config", &p]));
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:1:17") && err.contains("shutdown_grace"),
        "{err}"
    );

    // `up` refuses to start on the same bad file, with the same message.
    let out = output(&mut steward(&[
        "up",
        "--config",
        &p,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:1:17"));
}

#[test]
fn secrets_never_appear_in_config_check_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2-s3cr3t-pw";
    let token = "nats-t0ken-value";
    let p = write(
        dir.path(),
        "steward.yaml",
        "event_log:\n  backend: nats\n  nats:\n    url: nats://127.0.0.1:4222\n    token: ${NATS_TOKEN}\ndatabase:\n  url: postgres://steward:${DB_PASSWORD}@db:5432/steward\n",
    );
    let out = output(
        steward(&["config", "check", "--config", &p])
            .env("DB_PASSWORD", secret)
            .env("NATS_TOKEN", token),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains(secret) && !all.contains(token),
        "a secret was printed: {all}"
    );
    assert!(
        all.contains("db:5432"),
        "the non-secret parts are shown: {all}"
    );

    // The same file with a bad value next to a secret: the error does not leak it either.
    let p = write(
        dir.path(),
        "bad.yaml",
        "database:\n  url: ${DB_PASSWORD}\n  max_connections: lots\n",
    );
    let out = output(steward(&["config", "check", "--config", &p]).env("DB_PASSWORD", secret));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(78), "{all}");
    assert!(!all.contains(secret), "{all}");
}

#[test]
fn config_schema_is_json_schema() {
    let out = output(&mut steward(&["config", "schema"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["properties"]["event_log"].is_object(), "{v}");
}

/// `steward playbook replay`: the playbook over the events already in the (embedded) log, as
/// a dry run: the runs it would have made are reported, nothing is appended; `--from TIME`
/// skips earlier events; `--file` with another playbook's name is refused.
#[tokio::test]
async fn playbook_replay_runs_over_the_log_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let folder = dir.path().join("playbooks");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(
        repo.join("playbooks/oracle-alert.yaml"),
        folder.join("oracle-alert.yaml"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let cfg = write(
        dir.path(),
        "steward.yaml",
        &format!(
            "data_dir: {}\nplaybooks:\n  folder: {}\nnotify:\n  telegram:\n    bot_token: \"0:unused\"\n  channels:\n    - name: ops\n      telegram: {{ chats: [-1001] }}\n",
            data.display(),
            folder.display()
        ),
    );
    // The shipped test events of the playbook, appended to the log as the services would.
    let text =
        std::fs::read_to_string(repo.join("playbooks/tests/oracle-alert.events.jsonl")).unwrap();
    let events: Vec<Envelope> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Envelope::from_json(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    let log = steward_log::embedded::EmbeddedLog::open(&data.join("events.db"), "steward")
        .await
        .unwrap();
    log.append(&events).await.unwrap();
    log.close().await;

    let replay = |extra: &[&str]| {
        let mut args = vec!["playbook", "replay", "oracle-alert", "--config", &cfg];
        args.extend_from_slice(extra);
        output(&mut steward(&args))
    };
    let out = replay(&["--from", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("over 5 event(s)"), "{stdout}");
    assert!(
        stdout.contains("problem: Oracle feed stale: ETH"),
        "{stdout}"
    );
    assert!(
        stdout.contains("problem: Oracle sources deviate: BTC"),
        "{stdout}"
    );
    assert!(stdout.contains("2 runs"), "{stdout}");
    // A dry run: the log holds what it held.
    let log = steward_log::embedded::EmbeddedLog::open(&data.join("events.db"), "steward")
        .await
        .unwrap();
    assert_eq!(log.last_sequence().await.unwrap(), 5);
    log.close().await;

    // From a time after the stale alert: only the later events.
    let out = replay(&["--from", "2026-03-02T10:01:00Z"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("over 4 event(s)"), "{stdout}");
    assert!(!stdout.contains("Oracle feed stale"), "{stdout}");

    // --file naming another playbook than the one it holds.
    let other = folder.join("renamed.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(folder.join("oracle-alert.yaml"))
            .unwrap()
            .replace("name: oracle-alert", "name: oracle-alert-v2"),
    )
    .unwrap();
    let out = replay(&["--from", "1", "--file", other.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("holds the playbook `oracle-alert-v2`, not `oracle-alert`"),
        "{stderr}"
    );
}
