//! `steward bench log`: the event log's throughput and latency, against the limit.

use std::sync::Arc;

use steward_log::bench::{self, Figures};
use steward_log::embedded::EmbeddedLog;
use steward_log::nats::{NatsConfig, NatsLog};

fn row(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>10.0} events/s   p50 {:>9.2?}   p99 {:>9.2?}   ({} events in {:.2}s)",
        f.events_per_sec, f.p50_latency, f.p99_latency, f.events, f.seconds
    );
}

pub async fn log(events: usize, batch: usize, nats: Option<String>) -> anyhow::Result<()> {
    println!("event log: append + consume + ack of {events} events, append batches of {batch}\n");

    let dir = tempfile::tempdir()?;
    let embedded = EmbeddedLog::open(&dir.path().join("bench-events.db"), "bench").await?;
    let f = bench::log_backend(Arc::new(embedded), events, batch).await?;
    row("embedded (SQLite)", &f);
    println!(
        "{:<28} {:.2}x of the 50,000 events/s target",
        "",
        f.events_per_sec / 50_000.0
    );

    match nats {
        Some(url) => {
            let run = uuid_like();
            let raw = bench::raw_jetstream(&url, events, batch).await?;
            row("raw async-nats JetStream", &raw);
            let cfg = NatsConfig::new(url)
                .stream(format!("BENCH_{run}"))
                .prefix(format!("bench{run}"));
            let log = NatsLog::connect(cfg).await?;
            let f = bench::log_backend(Arc::new(log), events, batch).await?;
            row("steward JetStream backend", &f);
            println!(
                "{:<28} {:.2}x of the raw loop (target 0.70x)",
                "",
                f.events_per_sec / raw.events_per_sec
            );
        }
        None => println!("\n(pass --nats URL or set STEWARD_NATS_URL for the JetStream figures)"),
    }
    Ok(())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}
