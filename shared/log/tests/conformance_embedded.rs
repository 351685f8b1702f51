//! The conformance suite against the embedded SQLite backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
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
