//! A consumer killed mid-batch, between applying events to its read model and acking
//! them, loses nothing and double-applies nothing — on both deployments:
//! embedded log + SQLite store (`steward up`), and NATS JetStream + PostgreSQL
//! (`steward run`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use steward_events::{ChainBlockObserved, Envelope};
use steward_log::{ConsumerSpec, EventLog, LogMetrics, Subscription};
use steward_store::sqlx::{Any, Transaction};
use steward_store::{Applied, ApplyError, Projection, Store};

/// A read model that counts blocks: applying an event twice would show as a wrong sum.
struct BlockSum;

#[async_trait]
impl Projection for BlockSum {
    fn name(&self) -> &str {
        "block_sum"
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Any>,
        event: &Envelope,
    ) -> Result<(), ApplyError> {
        let b: ChainBlockObserved = event
            .payload()
            .map_err(|e| ApplyError::Fatal(e.to_string()))?;
        steward_store::sqlx::query("UPDATE block_sum SET n = n + 1, total = total + $1")
            .bind(b.number as i64)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

async fn sum(store: &Store) -> (i64, i64) {
    steward_store::sqlx::query_as::<_, (i64, i64)>("SELECT n, total FROM block_sum")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn blocks(n: u64) -> Vec<Envelope> {
    (1..=n)
        .map(|i| steward_log::conformance::block(1, i))
        .collect()
}

/// The scenario, given a way to open the log (again, after a "crash") and a store URL.
async fn scenario<F, Fut>(open_log: F, store_url: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn EventLog>>,
{
    let n = 300u64;
    let want = (n as i64, (n * (n + 1) / 2) as i64);
    let store = Store::connect(store_url, 4).await.unwrap();
    steward_store::sqlx::query("CREATE TABLE block_sum (n BIGINT NOT NULL, total BIGINT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    steward_store::sqlx::query("INSERT INTO block_sum VALUES (0, 0)")
        .execute(store.pool())
        .await
        .unwrap();

    let spec = ConsumerSpec::new("blocksum")
        .filters(["chain.block.observed"])
        .ack_wait(Duration::from_secs(1));
    let log = open_log().await;
    log.append(&blocks(n)).await.unwrap();

    // First life: take a batch, apply all of it, ack only the first half, then die.
    let sub = Subscription::open(log.clone(), spec.clone(), LogMetrics::default())
        .await
        .unwrap();
    let mut batch = Vec::new();
    while batch.len() < 200 {
        batch.extend(
            sub.fetch(200 - batch.len(), Duration::from_secs(2))
                .await
                .unwrap(),
        );
    }
    let items: Vec<_> = batch.iter().map(|d| (d.sequence, &d.event)).collect();
    let applied = store.project_batch(&BlockSum, &items).await.unwrap();
    assert!(applied.iter().all(|a| *a == Applied::Applied));
    sub.ack(&batch[..100]).await.unwrap();
    drop(sub);
    drop(log);

    // Second life: everything not acked comes back; the 100 applied-but-unacked events
    // are recognised and skipped, the rest applied once.
    let log = open_log().await;
    let sub = Subscription::open(log.clone(), spec, LogMetrics::default())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut skipped = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < (n - 100) as usize && tokio::time::Instant::now() < deadline {
        let got = sub.fetch(100, Duration::from_secs(2)).await.unwrap();
        for d in &got {
            assert!(
                d.sequence > batch[99].sequence,
                "an acked event came back: {}",
                d.sequence
            );
            match store
                .project(&BlockSum, d.sequence, &d.event)
                .await
                .unwrap()
            {
                Applied::AlreadyApplied => skipped += 1,
                Applied::Applied => {}
            }
            seen.insert(d.sequence);
        }
        sub.ack(&got).await.unwrap();
    }
    assert_eq!(
        seen.len(),
        (n - 100) as usize,
        "every unacked event was redelivered"
    );
    assert_eq!(
        skipped, 100,
        "the applied-but-unacked events were recognised"
    );
    assert_eq!(sum(&store).await, want, "each block counted exactly once");
    assert_eq!(
        store.position("block_sum").await.unwrap(),
        Some(log.last_sequence().await.unwrap())
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_and_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store_url = format!("sqlite://{}", dir.path().join("steward.db").display());
    let open = || {
        let path = path.clone();
        async move {
            let log: Arc<dyn EventLog> = Arc::new(
                steward_log::embedded::EmbeddedLog::open(&path, "steward")
                    .await
                    .unwrap(),
            );
            log
        }
    };
    scenario(open, &store_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_log_and_postgres_store() {
    let url = steward_testkit::nats_url();
    let stream = steward_testkit::unique("S").to_uppercase();
    let prefix = steward_testkit::unique("p");
    let store_url = steward_testkit::fresh_postgres().await;
    let open = || {
        let cfg = steward_log::nats::NatsConfig::new(url.clone())
            .stream(stream.clone())
            .prefix(prefix.clone());
        async move {
            let log: Arc<dyn EventLog> =
                Arc::new(steward_log::nats::NatsLog::connect(cfg).await.unwrap());
            log
        }
    };
    scenario(open, &store_url).await;
}
