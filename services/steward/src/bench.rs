//! `steward bench log`: the event log's throughput and latency, against the limit.

use std::sync::Arc;

use steward_log::bench::{self, Figures};
use steward_log::embedded::EmbeddedLog;
use steward_log::nats::{NatsConfig, NatsLog};

fn row(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>10.0} events/s   p50 {:>9.2?}   p99 {:>9.2?}   ({} events in {:.2}s)",
        f.events_per_sec, f.p50_latency, f.p99_latency, f.events, f.seconds
    );
}

/// Run the log benchmark at full speed and, with `rate`, once more paced at that rate.
pub async fn log(
    events: usize,
    batch: usize,
    nats: Option<String>,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    println!("event log: append + consume + ack of {events} events, append batches of {batch}\n");
    let dir = tempfile::tempdir()?;
    let mut paces = vec![None];
    if rate.is_some() {
        paces.push(rate);
    }
    for pace in paces {
        let label = |name: &str| match pace {
            Some(r) => format!("{name} @ {r:.0}/s"),
            None => name.to_owned(),
        };
        let file = dir.path().join(format!("bench-{}.db", run_id()));
        let embedded = EmbeddedLog::open(&file, "bench").await?;
        let f = bench::log_backend_paced(Arc::new(embedded), events, batch, pace).await?;
        row(&label("embedded (SQLite)"), &f);
        if pace.is_none() {
            println!(
                "{:<34} {:.2}x of the 50,000 events/s target",
                "",
                f.events_per_sec / 50_000.0
            );
        }
        let Some(url) = &nats else {
            continue;
        };
        let run = run_id();
        let cfg = NatsConfig::new(url.clone())
            .stream(format!("BENCH_{run}"))
            .prefix(format!("bench{run}"));
        let raw = bench::raw_jetstream_paced(&cfg, events, batch, pace).await?;
        row(&label("raw async-nats JetStream"), &raw);
        let log = NatsLog::connect(cfg).await?;
        let f = bench::log_backend_paced(Arc::new(log), events, batch, pace).await?;
        row(&label("steward JetStream backend"), &f);
        println!(
            "{:<34} {:.2}x of the raw loop (target 0.70x)",
            "",
            f.events_per_sec / raw.events_per_sec
        );
    }
    if nats.is_none() {
        println!("\n(pass --nats URL or set STEWARD_NATS_URL for the JetStream figures)");
    }
    Ok(())
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}
