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

macro_rules! conformance_tests {
    ($($name:ident),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(&Embedded::new()).await;
        }
    )+};
}

conformance_tests!(
    append_assigns_increasing_sequences,
    duplicate_keys_are_dropped,
    consumers_get_matching_events_in_order,
    unacked_events_are_redelivered,
    nak_redelivers_after_its_delay,
    failing_events_are_dead_lettered_and_the_consumer_moves_on,
    a_crash_loses_nothing_and_redelivers_only_unacked,
    a_crash_loop_on_one_event_ends_in_a_dead_letter,
    durable_position_survives_restart_and_start_points_work,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_random_workloads() {
    for seed in 1..=24 {
        conformance::model_random_workload(&Embedded::new(), seed, 120).await;
    }
}
