//! The sqlx store: one [`Store`] over PostgreSQL (production) and SQLite (embedded), the
//! event archive, and exactly-once projections.
//!
//! # One SQL for both databases
//!
//! [`Store`] wraps a `sqlx::AnyPool`; the URL scheme (`postgres://`, `postgresql://`,
//! `sqlite:`) picks the driver and the migration folder (`migrations/postgres/`,
//! `migrations/sqlite/`, embedded at compile time and run by [`Store::connect`]). Service
//! SQL is written once, in the common subset:
//! - placeholders `$1`, `$2`, ... (SQLite accepts them too; a number may repeat);
//! - column types `TEXT` and `BIGINT`/`INTEGER` only: the Any driver cannot decode UUID,
//!   JSONB or TIMESTAMPTZ, so ids are UUID text, times are milliseconds since the epoch
//!   and JSON is text; booleans are integers (SQLite has no boolean to decode);
//! - `INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE SET x = excluded.x` upserts.
//!
//! SQLite files are created when missing and switched to WAL; every connection gets
//! `foreign_keys = ON` and a busy timeout, and write transactions start with
//! `BEGIN IMMEDIATE` (see [`Store::begin`]) so concurrent writers wait for each other
//! instead of failing. `synchronous` stays at its default (`FULL`): a commit survives a
//! power loss, which the exactly-once guarantee below relies on.
//!
//! # Exactly-once projections
//!
//! The log delivers at least once: an event is redelivered when its handler crashes before
//! the ack, when the ack is lost, or after a nak; redeliveries may come after later events
//! (a nak'ed event comes back after its backoff, behind newer ones). A [`Projection`] turns
//! that into exactly-once for its read model. [`Store::project`] runs, in **one**
//! transaction:
//! 1. insert `(projection, event key)` into `projection_applied` if absent. If it was
//!    already there, roll back and return [`Applied::AlreadyApplied`] without calling
//!    `apply`;
//! 2. [`Projection::apply`], which writes the read model through the same transaction;
//! 3. advance `projection_positions.sequence` to `max(current, sequence)` and stamp it;
//! 4. commit.
//!
//! **Invariant:** for every projection `P` and event key `K`, the read-model changes of
//! `P` for `K` are committed if and only if the row `projection_applied(P, K)` is, and
//! that row is written at most once. Hence an event's effects exist exactly once, whatever
//! the number and order of its deliveries: a crash before the commit leaves nothing (the
//! redelivery applies the event), a crash after the commit but before the ack leaves the
//! marker (the redelivery is `AlreadyApplied`), a failing `apply` rolls back the marker too
//! (the retry applies it). An unknown commit outcome (connection lost during `COMMIT`) is
//! resolved the same way: nak, and the redelivery finds out.
//!
//! Deduplication is by event **key**, not by "sequence ≤ position": because redeliveries
//! arrive out of order, a projection at position 10 may still have to apply event 7 (naked
//! earlier), and the position alone cannot tell it from a duplicate. Keying on the event
//! key also makes the same fact appended twice (two sequences, one key) count once. The
//! position is kept for monitoring and for replays (`read(position + 1, ..)`), never for
//! deciding whether to apply.
//!
//! Two workers delivering the same event concurrently are serialised by the marker's
//! primary key: the second waits for the first transaction and then sees the marker (or,
//! if the first rolled back, applies the event itself).
//!
//! [`Store::project_batch`] does the same for many events in one transaction (per-event
//! dedup is still by key, including duplicates within the batch); if any `apply` fails the
//! whole batch rolls back.
//!
//! The archive of every event is itself a projection, [`Archiver`], so it is exactly-once
//! by the same mechanism.

mod archive;
mod error;
mod projection;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Transaction};

pub use archive::ArchivedEvent;
pub use error::{ApplyError, Result, StoreError};
pub use projection::{Applied, Archiver, Projection, ProjectionPosition};

/// Re-exported so projections need not depend on sqlx themselves.
pub use sqlx;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite's "database is locked" (SQLITE_BUSY, 5) or "table is locked" (SQLITE_LOCKED, 6),
/// extended codes included (their low byte is the primary code).
fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The dialect a URL names, from its scheme.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Size of the connection pool (forced to 1 for `sqlite::memory:`).
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a statement waits for another connection's lock.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// A pool of connections to PostgreSQL or SQLite, migrated. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// The URL with its password masked.
    url: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connect to `url` with a pool of `max_connections` and run the migrations.
    ///
    /// `url` is `postgres://user:password@host:port/db` or `sqlite://path/to/file.db`
    /// (`sqlite::memory:` for a throwaway in-memory database). A missing SQLite file is
    /// created. Errors never contain the URL's password.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(
            url,
            &StoreOptions {
                max_connections,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// [`Store::connect`] with every setting.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self> {
        let redacted = error::Redacted::new(url);
        let dialect = Dialect::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl {
            url: redacted.shown.clone(),
        })?;
        sqlx::any::install_default_drivers();

        let in_memory = dialect == Dialect::Sqlite && is_sqlite_memory(url);
        match dialect {
            // Create the file and switch it to WAL (a persistent property of the file) with a
            // typed connection: the Any driver only takes what the URL can say.
            Dialect::Sqlite if !in_memory => {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(|e| redacted.connect_error(e))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(options.busy_timeout);
                // Creating the file and switching it to WAL needs a moment alone with it: a
                // process opening it at the same instant is told "database is locked"
                // whatever the busy timeout, and tries again.
                let mut attempt = 0;
                let conn = loop {
                    match sqlx::SqliteConnection::connect_with(&opts).await {
                        Ok(conn) => break conn,
                        Err(e) if attempt < 5 && is_sqlite_busy(&e) => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt))
                                .await;
                        }
                        Err(e) => return Err(redacted.connect_error(e)),
                    }
                };
                conn.close().await.map_err(|e| redacted.connect_error(e))?;
            }
            Dialect::Sqlite => {}
            // One direct attempt first: the pool retries a refused connection until its
            // acquire timeout and then reports only "timed out".
            Dialect::Postgres => {
                let conn = AnyConnection::connect(url)
                    .await
                    .map_err(|e| redacted.connect_error(e))?;
                conn.close().await.map_err(|e| redacted.connect_error(e))?;
            }
        }

        let mut pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout);
        if dialect == Dialect::Sqlite {
            let busy_ms = options.busy_timeout.as_millis();
            pool = pool.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    sqlx::query(&format!("PRAGMA busy_timeout = {busy_ms}"))
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        if in_memory {
            // Every connection to `sqlite::memory:` would open its own empty database: keep
            // exactly one, for ever.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = pool
            .connect(url)
            .await
            .map_err(|e| redacted.connect_error(e))?;

        let migrator = match dialect {
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
        };
        // PostgreSQL migrations hold an advisory lock: concurrent migrators wait for each other.
        // sqlx takes no lock on SQLite, so a second process opening the same file while the
        // first migrates can try a migration the first is committing ("table … already
        // exists"). Each migration is one transaction, so the loser changed nothing: it tries
        // again, and then finds the migration applied.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if dialect == Dialect::Sqlite && attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(url = %redacted.shown, error = %e, attempt, "migration raced another process; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(redacted.migrate_error(e)),
            }
        }
        tracing::debug!(url = %redacted.shown, %dialect, "store connected and migrated");

        Ok(Self {
            pool,
            dialect,
            url: redacted.shown,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL this store connected to, password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for a service's own queries (write them in the common SQL subset).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begin a write transaction: `BEGIN IMMEDIATE` on SQLite (take the write lock now, so a
    /// concurrent writer waits through the busy timeout instead of failing at its first
    /// write), `BEGIN` on PostgreSQL.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// Close every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_sqlite_memory(url: &str) -> bool {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or("");
    let rest = rest.trim_start_matches("//");
    rest.starts_with(":memory:") || rest.split(['?', '&']).any(|p| p == "mode=memory")
}

/// `u64` to the `BIGINT` the database holds.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("{what} {value} does not fit a BIGINT")))
}

/// `BIGINT` read back to `u64`.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_scheme() {
        assert_eq!(
            Dialect::from_url("postgres://u@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("postgresql://u@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::from_url("sqlite://x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("sqlite::memory:"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("mysql://u@h/db"), None);
        assert_eq!(Dialect::from_url("nonsense"), None);
    }

    #[test]
    fn memory_urls() {
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(is_sqlite_memory("sqlite://:memory:"));
        assert!(is_sqlite_memory("sqlite://x?mode=memory"));
        assert!(!is_sqlite_memory("sqlite:///tmp/x.db"));
        assert!(!is_sqlite_memory("sqlite://x.db?mode=rwc"));
    }
}
