//! `steward watch backfill`, with a progress bar on a terminal and a line every few
//! seconds elsewhere.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use steward_config::Config;
use steward_watcher::backfill::{Backfill, BackfillRequest};

use crate::app::{open_log, open_store};

pub async fn backfill(
    cfg: Config,
    chain: String,
    from: u64,
    to: Option<u64>,
    log_json: bool,
) -> anyhow::Result<()> {
    let format = if log_json || cfg.log.format == steward_config::LogFormat::Json {
        steward_runtime::telemetry::LogFormat::Json
    } else {
        steward_runtime::telemetry::LogFormat::Text
    };
    steward_runtime::telemetry::init(format, &cfg.log.level).map_err(anyhow::Error::msg)?;
    let log = open_log(&cfg).await?;
    let store = open_store(&cfg).await?;
    let request = BackfillRequest {
        chain: chain.clone(),
        from,
        to,
    };
    let job = Backfill::prepare(&cfg, &request, log, store.clone()).await?;
    let (first, last, resume) = (job.from, job.to, job.resume);
    let total = last - first + 1;
    if resume > first {
        println!("resuming the backfill of {chain} blocks {first}..={last} at block {resume}");
    }
    let stats = job.stats();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} blocks  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(chain.clone());
    bar.set_position(resume - first);
    let started = Instant::now();
    let logs = Arc::new(AtomicU64::new(0));
    let last_line = Arc::new(Mutex::new(Instant::now()));
    let on_range = {
        let bar = bar.clone();
        let logs = logs.clone();
        let last_line = last_line.clone();
        let chain = chain.clone();
        Arc::new(move |done: u64, n: u64| {
            let seen = logs.fetch_add(n, Ordering::Relaxed) + n;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let blocks = done + 1 - resume;
            let msg = format!(
                "{seen} logs, {:.0} blocks/s, {:.0} logs/s",
                blocks as f64 / secs,
                seen as f64 / secs
            );
            bar.set_position(done + 1 - first);
            bar.set_message(msg.clone());
            if bar.is_hidden() {
                let mut at = last_line.lock().unwrap_or_else(|p| p.into_inner());
                if at.elapsed() >= Duration::from_secs(5) || done == last {
                    *at = Instant::now();
                    let left = last.saturating_sub(done);
                    let eta = if blocks > 0 {
                        Duration::from_secs_f64(left as f64 * secs / blocks as f64)
                    } else {
                        Duration::ZERO
                    };
                    println!("{chain}: block {done} of {last}: {msg}, ETA {eta:.0?}");
                }
            }
        })
    };
    job.run(on_range).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    println!(
        "backfilled {chain} blocks {resume}..={last}: {} logs as events ({} events appended) in {secs:.1}s ({:.0} blocks/s, {:.0} logs/s)",
        logs.load(Ordering::Relaxed),
        stats.events.load(Ordering::Relaxed),
        (last + 1 - resume) as f64 / secs,
        logs.load(Ordering::Relaxed) as f64 / secs,
    );
    store.close().await;
    Ok(())
}
