//! The conformance suite against a real nats-server (JetStream).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use steward_log::conformance::{self, Harness};
use steward_log::nats::{NatsConfig, NatsLog};
use steward_log::EventLog;

const ACK_WAIT: Duration = Duration::from_secs(1);

struct Nats {
    current: Mutex<Option<NatsConfig>>,
}

impl Nats {
    fn new() -> Self {
        Self {
            current: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Harness for Nats {
    async fn fresh(&self) -> Arc<dyn EventLog> {
        let cfg = NatsConfig::new(steward_testkit::nats_url())
            .stream(steward_testkit::unique("C").to_uppercase())
            .prefix(steward_testkit::unique("c"));
        *self.current.lock().unwrap() = Some(cfg.clone());
        Arc::new(NatsLog::connect(cfg).await.unwrap())
    }

    async fn crash(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog> {
        drop(log);
        // The server cannot tell that a client died: its deliveries come back only once
        // their ack wait runs out. Waiting for it makes "after the crash" mean the same as
        // on the embedded backend, where a restart makes them due at once.
        tokio::time::sleep(ACK_WAIT + Duration::from_millis(200)).await;
        let cfg = self.current.lock().unwrap().clone().expect("fresh() first");
        Arc::new(NatsLog::connect(cfg).await.unwrap())
    }

    fn ack_wait(&self) -> Duration {
        ACK_WAIT
    }
}

steward_log::conformance_tests!(Nats::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_random_workloads() {
    // Fewer steps than the embedded run: each crash waits out the ack wait.
    for seed in 1..=6 {
        conformance::model_random_workload(&Nats::new(), seed, 60).await;
    }
}
