//! The conformance suite against the embedded SQLite backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use steward_events::Envelope;
use steward_log::conformance::{self, Harness};
use steward_log::embedded::EmbeddedLog;
use steward_log::EventLog;
use tempfile::TempDir;

struct Embedded {
    dir: TempDir,
    n: std::sync::atomic::AtomicUsize,
    current: std::sync::Mutex<std::path::PathBuf>,
}

impl Embedded {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            n: Default::default(),
            current: Default::default(),
        }
    }
}

#[async_trait]
impl Harness for Embedded {
    async fn fresh(&self) -> Arc<dyn EventLog> {
        let i = self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("log{i}.db"));
        *self.current.lock().unwrap() = path.clone();
        Arc::new(EmbeddedLog::open(&path, "steward").await.unwrap())
    }

    async fn crash(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog> {
        // Dropping the last handle drops all in-memory consumer state, as a crash would.
        assert_eq!(
            Arc::strong_count(&log),
            1,
            "the test must hold no other handle on the crashed log"
        );
        drop(log);
        let path = self.current.lock().unwrap().clone();
        Arc::new(EmbeddedLog::open(&path, "steward").await.unwrap())
    }

    fn ack_wait(&self) -> Duration {
        Duration::from_millis(500)
    }
}

steward_log::conformance_tests!(Embedded::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_random_workloads() {
    for seed in 1..=24 {
        conformance::model_random_workload(&Embedded::new(), seed, 120).await;
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// A log at `dir`/events.db checkpointing every `pages` pages of 16 KiB, and its WAL's path.
async fn log_checkpointing_every(dir: &std::path::Path, pages: u64) -> (EmbeddedLog, PathBuf) {
    let options = steward_log::embedded::EmbeddedOptions {
        checkpoint_pages: pages,
        ..Default::default()
    };
    let log = EmbeddedLog::open_with(&dir.join("events.db"), "steward", options)
        .await
        .unwrap();
    (log, dir.join("events.db-wal"))
}

/// `count` events of about 4 KB from number `first` on.
fn large_events(first: u64, count: u64) -> Vec<Envelope> {
    let filler = "x".repeat(4000);
    (first..first + count)
        .map(|n| {
            let mut p = steward_events::NotifyRequested::example();
            p.template = format!("t{n}-{filler}");
            Envelope::new("test", format!("notify:{n}"), &p)
        })
        .collect()
}

/// Appends one after another: SQLite's own checkpoints are off, the checkpointer copies the
/// WAL back into the database file on its own connection, and the WAL starts again instead
/// of holding everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_off_the_append_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    // A checkpoint every MiB.
    let (log, wal) = log_checkpointing_every(dir.path(), 64).await;
    let (batches, per_batch) = (320u64, 32u64);
    let mut largest_wal = 0;
    for b in 0..batches {
        let events = large_events(b * per_batch, per_batch);
        let appended = log.append(&events).await.unwrap();
        assert!(appended.iter().all(|a| !a.duplicate));
        largest_wal = largest_wal.max(file_len(&wal));
    }
    // About 40 MiB went through the WAL; without checkpoints it would hold all of it.
    assert!(
        largest_wal < 16 << 20,
        "the WAL reached {largest_wal} bytes"
    );
    // Without checkpoints every page would still be in the WAL, the database file empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while file_len(&path) < 30 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file holds {} bytes after 30 s",
            file_len(&path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log.last_sequence().await.unwrap(), batches * per_batch);
    // Reopened, every event is there.
    log.close().await;
    drop(log);
    let log = EmbeddedLog::open(&path, "steward").await.unwrap();
    assert_eq!(log.last_sequence().await.unwrap(), batches * per_batch);
    let last = log.read(batches * per_batch, &[], 1).await.unwrap();
    assert_eq!(
        last[0].event.key,
        format!("notify:{}", batches * per_batch - 1)
    );
}

/// Appends back to back, each larger than the checkpoint threshold: every one commits while
/// the previous one's pages are being copied back, so a passive checkpoint never finds the
/// WAL wholly copied and it would grow for as long as the appends last. Past its bound the
/// append that commits checkpoints it before returning, and the WAL starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_back_to_back_appends() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint every 512 KiB; the committing append checkpoints past 2 MiB.
    let (log, wal) = log_checkpointing_every(dir.path(), 32).await;
    let log = Arc::new(log);
    let (batches, per_batch) = (240u64, 512u64);
    // Built first, so that building them takes no time between appends.
    let all: Vec<Vec<Envelope>> = (0..batches)
        .map(|b| large_events(b * per_batch, per_batch))
        .collect();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (wal, watching) = (wal.clone(), watching.clone());
        tokio::spawn(async move {
            let mut largest = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                largest = largest.max(file_len(&wal));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            largest
        })
    };
    // Three appenders: while one commits, the next has its rows ready and waits for the lock.
    let mut appenders = tokio::task::JoinSet::new();
    for part in 0..3usize {
        let (log, mine) = (
            log.clone(),
            all.iter()
                .skip(part)
                .step_by(3)
                .cloned()
                .collect::<Vec<_>>(),
        );
        appenders.spawn(async move {
            for events in &mine {
                log.append(events).await.unwrap();
            }
        });
    }
    while let Some(done) = appenders.join_next().await {
        done.unwrap();
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let largest_wal = sampler.await.unwrap();
    // About 500 MiB went through the WAL; without the bound it reached 90-100 MiB, with it
    // 3 MiB (also with the cores busy elsewhere).
    assert!(
        largest_wal < 16 << 20,
        "the WAL reached {largest_wal} bytes"
    );
    assert_eq!(log.last_sequence().await.unwrap(), batches * per_batch);
}
