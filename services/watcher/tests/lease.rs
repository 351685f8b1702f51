//! One active watcher per chain across replicas: the lease on a real PostgreSQL.

use std::time::Duration;

use steward_store::sqlx;
use steward_store::Store;
use steward_watcher::lease::{Lease, RETRY};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_standby_takes_the_chain_when_the_active_replica_lets_go_or_dies() {
    // Two replicas, one database.
    let url = steward_testkit::fresh_postgres().await;
    let a = Store::connect(&url, 4).await.expect("store a");
    let b = Store::connect(&url, 4).await.expect("store b");
    let stop = CancellationToken::new();
    let mut first = Lease::acquire(a.clone(), 7, "local".into(), stop.clone())
        .await
        .expect("the first replica takes the lease");
    assert!(first.held().await);

    // Another chain is independent.
    let other = Lease::acquire(b.clone(), 8, "other".into(), stop.clone()).await;
    assert!(other.is_some());

    // The standby waits...
    let standby = tokio::spawn(Lease::acquire(b.clone(), 7, "local".into(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !standby.is_finished(),
        "the standby must wait while the lease is held"
    );
    // ...and takes over once the active replica's session dies.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7 AND granted",
    )
    .execute(a.pool())
    .await
    .unwrap();
    assert!(
        !first.held().await,
        "the killed session no longer holds the lease"
    );
    let mut second = tokio::time::timeout(RETRY + Duration::from_secs(3), standby)
        .await
        .expect("the standby takes over within a retry")
        .unwrap()
        .expect("a lease");
    assert!(second.held().await);

    // Released on purpose: available at once to the next.
    second.release().await;
    let third = tokio::time::timeout(
        Duration::from_secs(1),
        Lease::acquire(a.clone(), 7, "local".into(), stop.clone()),
    )
    .await
    .expect("free after release");
    assert!(third.is_some());

    // Shutdown ends a wait.
    let waiting = tokio::spawn(Lease::acquire(b.clone(), 7, "local".into(), stop.clone()));
    stop.cancel();
    assert!(waiting.await.unwrap().is_none());
}
