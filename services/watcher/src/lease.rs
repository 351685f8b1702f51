//! One active watcher per chain: a lease taken before a chain is followed.
//!
//! On PostgreSQL (several `steward run watcher` replicas) the lease is a session-level
//! advisory lock, `pg_try_advisory_lock`, held on a connection of its own for as long as the
//! chain is followed: a standby replica waits for it and takes over within `RETRY` of the
//! active one dying (PostgreSQL releases the lock when the session ends). This is the
//! documented equivalent of a lease in NATS KV: the store is already shared by every
//! replica, and the lock cannot outlive its holder. On SQLite (`steward up`, one process)
//! there is nothing to share and the lease is granted at once.

use std::time::Duration;

use steward_store::sqlx::{self, AnyConnection, Connection, Row};
use steward_store::{Dialect, Store};
use tokio_util::sync::CancellationToken;

/// How often a standby tries to take the lease, and the holder checks it still has it.
pub const RETRY: Duration = Duration::from_secs(5);

/// A held lease; dropping it releases it.
pub struct Lease {
    conn: Option<AnyConnection>,
    key: i64,
}

/// The lock key of a chain: stable across versions and processes.
fn key(chain_id: u64) -> i64 {
    // "STEW" in the high 32 bits keeps clear of other users of advisory locks.
    (0x5354_4557_i64 << 32) | (chain_id & 0xffff_ffff) as i64
}

impl Lease {
    /// Waits until this process holds the lease of `chain_id`, or `shutdown`. `None` on
    /// shutdown.
    pub async fn acquire(
        store: Store,
        chain_id: u64,
        chain: String,
        shutdown: CancellationToken,
    ) -> Option<Lease> {
        if store.dialect() == Dialect::Sqlite {
            return Some(Lease {
                conn: None,
                key: key(chain_id),
            });
        }
        let mut announced = false;
        loop {
            match Self::try_acquire(&store, chain_id).await {
                Ok(Some(lease)) => {
                    tracing::info!(chain = %chain, "watcher lease taken: this replica follows the chain");
                    return Some(lease);
                }
                Ok(None) if !announced => {
                    tracing::info!(chain = %chain, "another replica follows this chain; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(chain = %chain, error = %e, "cannot reach the store for the watcher lease; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    async fn try_acquire(store: &Store, chain_id: u64) -> Result<Option<Lease>, sqlx::Error> {
        let mut conn = store.pool().acquire().await?.detach();
        let k = key(chain_id);
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(k)
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
        if got {
            Ok(Some(Lease {
                conn: Some(conn),
                key: k,
            }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Whether the lease is still held (its session is alive).
    pub async fn held(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        sqlx::query("SELECT 1").fetch_one(conn).await.is_ok()
    }

    /// Releases the lease at once.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}
