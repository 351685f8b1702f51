//! The embedded backend: the log in one SQLite file, for `steward up` with no server.
//!
//! Layout (all in the log's own file, apart from the store so appends never wait on
//! read-model writes):
//! - `log_events(seq, key UNIQUE, subject, body)`: the log. `seq` is the rowid, so appends
//!   are ordered and dense; the unique key makes dedup permanent, not windowed.
//! - `log_consumers(name, filters, delivered, floor)`: per durable consumer, the highest
//!   sequence handed out and the ack floor (every matching event at or below it is acked).
//! - `log_acked(consumer, seq)`: acks above the floor (out-of-order acks).
//! - `log_attempts(consumer, seq, attempts)`: delivery counts of events delivered more
//!   than once, so a consumer that crashes on an event every time still reaches its
//!   delivery limit and the event is dead-lettered instead of looping forever.
//!
//! In memory each consumer keeps its pending set (delivered, not acked) with the time each
//! becomes due for redelivery. After a restart the pending set is rebuilt from the floor,
//! `delivered` and the ack rows, and everything in it is due at once: the process that held
//! those deliveries is gone.
//!
//! Cost per batch on the happy path: one multi-row insert to append, one select and one
//! update to fetch, one update to ack. That is what makes 50k events/s possible on SQLite.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use steward_events::{subject_matches, type_pattern_to_subject, Envelope};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::time::Instant;

use crate::{
    AckInner, AckToken, Appended, Consumer, ConsumerSpec, DeliverFrom, EventLog, LogError,
    RawDelivery, Result, Stored,
};

/// Rows per multi-row insert: 3 parameters a row stays far below SQLite's variable limit.
const INSERT_CHUNK: usize = 2000;

/// How an embedded log is opened.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How long a call waits for a pooled connection (opening one included).
    pub acquire_timeout: Duration,
    /// Pages written to the WAL (estimated) after which it is checkpointed. SQLite's own
    /// default, 1000, unless a test wants it to happen sooner.
    pub checkpoint_pages: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_secs(30),
            checkpoint_pages: 1000,
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS log_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    body    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_consumers (
    name      TEXT PRIMARY KEY,
    filters   TEXT NOT NULL,
    delivered INTEGER NOT NULL,
    floor     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_acked (
    consumer TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_attempts (
    consumer TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
) WITHOUT ROWID;
"#;

/// Copies the WAL back into the database file on a connection of its own, so on its own
/// SQLite thread: an append only writes its pages to the WAL and returns. (With SQLite's
/// automatic checkpoint, the commit that crosses the threshold copies every page back and
/// syncs the file before it returns: about a quarter of the append path's time in a long
/// catch-up.) Commits report what they wrote; past `checkpoint_pages` the checkpointer is
/// woken. A passive checkpoint never blocks writers or readers; what it cannot copy yet (a
/// reader still needs it) is copied by the next one.
///
/// The WAL only starts again from its beginning when a write finds it wholly copied back,
/// which back-to-back appends never allow: each commits while the previous one's pages are
/// being copied (a 200,000-event catch-up left a 218 MB WAL). So SQLite's own automatic
/// checkpoint stays on as a backstop at [`WAL_GROWTH`] times the threshold: the append whose
/// commit crosses it checkpoints before it returns, with the append lock still held, so that
/// checkpoint finishes (little is left to copy: the checkpointer copied most of it) and the
/// next append starts the WAL afresh, its file cut back to `journal_size_limit`. Closing the
/// last connection checkpoints whatever is left; a WAL left by a crash is replayed on open.
struct Checkpointer {
    page_size: u64,
    threshold: u64,
    pages: Arc<AtomicU64>,
    wake: mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(pool: SqlitePool, page_size: u64, threshold: u64) -> Self {
        let pages = Arc::new(AtomicU64::new(0));
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let counted = pages.clone();
        let threshold = threshold.max(1);
        // Ends when the log is dropped (the sender with it) or closed.
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                if counted.swap(0, Ordering::Relaxed) < threshold {
                    continue;
                }
                let passive = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)");
                if let Err(e) = passive.execute(&pool).await {
                    if pool.is_closed() {
                        break;
                    }
                    // Counted as still due: the next commit wakes a new attempt.
                    counted.fetch_add(threshold, Ordering::Relaxed);
                    tracing::warn!(error = %e, "embedded log: WAL checkpoint failed; tried again after the next commit");
                }
            }
        });
        Self {
            page_size: page_size.max(512),
            threshold,
            pages,
            wake,
        }
    }

    /// A commit wrote about `bytes` of rows (plus index and bookkeeping pages).
    fn wrote(&self, bytes: u64) {
        let pages = bytes.div_ceil(self.page_size) + 2;
        if self.pages.fetch_add(pages, Ordering::Relaxed) + pages >= self.threshold {
            // Full: a wake-up is already pending.
            let _ = self.wake.try_send(());
        }
    }
}

/// How many thresholds' worth of pages the WAL may hold before the committing append
/// checkpoints it itself (SQLite's automatic checkpoint as a backstop; see [`Checkpointer`]).
const WAL_GROWTH: u64 = 4;

fn db_err(e: sqlx::Error) -> LogError {
    LogError::Unavailable(format!("embedded log (SQLite): {e}"))
}

/// The event log in a SQLite file.
pub struct EmbeddedLog {
    pool: SqlitePool,
    prefix: String,
    /// SQLite has one writer; appends queue here instead of spinning on SQLITE_BUSY.
    write: Mutex<()>,
    appended: Arc<Notify>,
    consumers: StdMutex<HashMap<String, Arc<Shared>>>,
    checkpointer: Arc<Checkpointer>,
}

impl EmbeddedLog {
    /// Open (creating if needed) the log at `path`.
    pub async fn open(path: &Path, prefix: &str) -> Result<Self> {
        Self::open_with(path, prefix, EmbeddedOptions::default()).await
    }

    /// [`EmbeddedLog::open`] with how long a call waits for a pooled connection (opening one
    /// included) before failing. Tests in paused tokio time set it far beyond the time they
    /// advance: the wait is measured on tokio's clock, the connection opens in real time.
    pub async fn open_with_acquire_timeout(
        path: &Path,
        prefix: &str,
        acquire_timeout: Duration,
    ) -> Result<Self> {
        let options = EmbeddedOptions {
            acquire_timeout,
            ..EmbeddedOptions::default()
        };
        Self::open_with(path, prefix, options).await
    }

    /// [`EmbeddedLog::open`] with every option.
    pub async fn open_with(path: &Path, prefix: &str, options: EmbeddedOptions) -> Result<Self> {
        let EmbeddedOptions {
            acquire_timeout,
            checkpoint_pages,
        } = options;
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    LogError::Invalid(format!(
                        "cannot create the directory of the embedded log {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // 16 KiB pages for a new file (an existing file keeps its own): a log is written
            // in batches of rows of about 0.5–1 KB, and larger pages mean fewer B-tree splits
            // and WAL frames per event (about a quarter less time per batch than 4 KiB).
            .page_size(16384)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an append that returned is on disk even after a power cut. Batching
            // amortises the fsync.
            .synchronous(SqliteSynchronous::Full)
            // 32 MiB of page cache per connection (SQLite's default is 2 MiB): the key index
            // takes many keys in no particular order (the watcher's sort by block, others do
            // not), and a small cache turns each insert into page reads once the index
            // outgrows it.
            .pragma("cache_size", "-32768")
            // Checkpoints run on their own connection; SQLite's own only past a bound (see
            // `Checkpointer`).
            .pragma(
                "wal_autocheckpoint",
                (WAL_GROWTH * checkpoint_pages.max(1)).to_string(),
            )
            // A restarted WAL's file is cut back to that bound (in 16 KiB pages).
            .pragma(
                "journal_size_limit",
                (WAL_GROWTH * checkpoint_pages.max(1) * 16384).to_string(),
            )
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(acquire_timeout)
            .connect_with(opts)
            .await
            .map_err(|e| {
                LogError::Unavailable(format!(
                    "cannot open the embedded log at {}: {e}",
                    path.display()
                ))
            })?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(db_err)?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&pool)
            .await
            .map_err(db_err)?;
        let checkpointer = Arc::new(Checkpointer::start(
            pool.clone(),
            u64::try_from(page_size).unwrap_or(4096),
            checkpoint_pages,
        ));
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            write: Mutex::new(()),
            appended: Arc::new(Notify::new()),
            consumers: StdMutex::new(HashMap::new()),
            checkpointer,
        })
    }

    /// Close the pool; pending writes finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn subject_filters(&self, spec: &ConsumerSpec) -> Result<Vec<String>> {
        subject_filters(&self.prefix, &spec.filters)
    }
}

fn subject_filters(prefix: &str, filters: &[String]) -> Result<Vec<String>> {
    filters
        .iter()
        .map(|f| type_pattern_to_subject(prefix, f).map_err(|e| LogError::Invalid(e.to_string())))
        .collect()
}

fn matches_any(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| subject_matches(f, subject))
}

fn seq_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventLog for EmbeddedLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn append(&self, events: &[Envelope]) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // Within one batch the first event with a key wins; later ones are duplicates of it.
        // `slot[i]`: the position among the unique keys of event `i`'s key.
        // foldhash, not std's SipHash: hashing the keys was 4% of a catch-up's appends.
        let mut position: HashMap<&str, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(events.len(), Default::default());
        let mut unique: Vec<usize> = Vec::with_capacity(events.len());
        let mut slot: Vec<usize> = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let next = unique.len();
            let p = *position.entry(e.key.as_str()).or_insert(next);
            if p == next {
                unique.push(i);
            }
            slot.push(p);
        }
        // Rows to insert, owned: sqlx copies borrowed arguments before handing them to its
        // SQLite thread, and a body is most of an event. One subject string per event type
        // (a batch holds a few types: found by a look along a short list).
        let mut subjects: Vec<(&str, String)> = Vec::new();
        for &i in &unique {
            let t = events[i].event_type.as_str();
            if !subjects.iter().any(|(s, _)| *s == t) {
                subjects.push((t, events[i].subject(&self.prefix)));
            }
        }
        let subject_of = |t: &str| -> String {
            let found = subjects.iter().find(|(s, _)| *s == t);
            found
                .map(|(_, subject)| subject.clone())
                .unwrap_or_default()
        };
        let encode = |chunk: &[usize]| -> Vec<(String, String, Vec<u8>)> {
            chunk
                .iter()
                .map(|&i| {
                    let e = &events[i];
                    (e.key.clone(), subject_of(&e.event_type), e.to_json())
                })
                .collect()
        };
        let chunks: Vec<&[usize]> = unique.chunks(INSERT_CHUNK).collect();
        let mut rows = encode(chunks[0]);

        let mut outcome: Vec<Appended> = Vec::with_capacity(unique.len());
        let mut written = 0u64;
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for (n, chunk) in chunks.iter().enumerate() {
            // The insert comes first: it takes the write lock (a read first would pin a
            // snapshot that another connection's commit makes stale, failing the write).
            written += rows
                .iter()
                .map(|(k, s, b)| (k.len() + s.len() + b.len()) as u64)
                .sum::<u64>();
            let mut qb: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("INSERT INTO log_events (key, subject, body) ");
            qb.push_values(std::mem::take(&mut rows), |mut b, (key, subject, body)| {
                b.push_bind(key).push_bind(subject).push_bind(body);
            });
            qb.push(" ON CONFLICT(key) DO NOTHING");
            // The next chunk is encoded on this thread while SQLite's thread inserts this one
            // (`join!` polls the insert first, which hands it over).
            let (done, next) = futures::join!(qb.build().execute(&mut *tx), async {
                chunks.get(n + 1).map(|c| encode(c))
            });
            let done = done.map_err(db_err)?;
            rows = next.unwrap_or_default();
            let inserted = done.rows_affected() as usize;
            if inserted == chunk.len() {
                // Every row is new: one statement under the write lock takes consecutive
                // sequence numbers, the last of which SQLite reports.
                let first = seq_of(done.last_insert_rowid()) + 1 - chunk.len() as u64;
                outcome.extend((first..).take(chunk.len()).map(|sequence| Appended {
                    sequence,
                    duplicate: false,
                }));
                continue;
            }
            // Some keys were already in the log: look the chunk's keys up. Every row this
            // statement inserted has a higher sequence than any row before it, so the new
            // ones are the `inserted` highest.
            let mut lookup: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("SELECT seq, key FROM log_events WHERE key IN (");
            let mut sep = lookup.separated(", ");
            for &i in *chunk {
                sep.push_bind(events[i].key.as_str());
            }
            lookup.push(")");
            let found: HashMap<String, i64> = lookup
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(|r| (r.get::<String, _>(1), r.get::<i64, _>(0)))
                .collect();
            let mut seqs: Vec<i64> = found.values().copied().collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            let lowest_new = inserted.checked_sub(1).and_then(|k| seqs.get(k)).copied();
            for &i in *chunk {
                let key = &events[i].key;
                let Some(&seq) = found.get(key) else {
                    return Err(LogError::Corrupt(format!(
                        "event key {key} neither stored nor found"
                    )));
                };
                outcome.push(Appended {
                    sequence: seq_of(seq),
                    duplicate: lowest_new.is_none_or(|low| seq < low),
                });
            }
        }
        tx.commit().await.map_err(db_err)?;
        drop(_guard);
        self.checkpointer.wrote(written);
        if outcome.iter().any(|a| !a.duplicate) {
            self.appended.notify_waiters();
        }

        Ok(events
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let first = outcome[slot[i]];
                Appended {
                    sequence: first.sequence,
                    // A later event with the same key in this batch is a duplicate of the first.
                    duplicate: first.duplicate || unique[slot[i]] != i,
                }
            })
            .collect())
    }

    async fn consumer(&self, spec: &ConsumerSpec) -> Result<Box<dyn Consumer>> {
        spec.validate()?;
        let filters = self.subject_filters(spec)?;
        let existing = self
            .consumers
            .lock()
            .map_err(|_| LogError::Corrupt("consumer registry poisoned".into()))?
            .get(&spec.name)
            .cloned();
        let shared = match existing {
            Some(s) => {
                // Same durable opened again in this process: share its state; take the new
                // definition (a changed filter applies to events not yet delivered).
                *s.spec.lock().await = (spec.clone(), filters.clone());
                s
            }
            None => {
                let s = Arc::new(Shared::load(&self.pool, spec.clone(), filters.clone()).await?);
                let mut reg = self
                    .consumers
                    .lock()
                    .map_err(|_| LogError::Corrupt("consumer registry poisoned".into()))?;
                reg.entry(spec.name.clone()).or_insert(s).clone()
            }
        };
        sqlx::query("UPDATE log_consumers SET filters = ? WHERE name = ?")
            .bind(filters.join(" "))
            .bind(&spec.name)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(Box::new(EmbeddedConsumer {
            pool: self.pool.clone(),
            checkpointer: self.checkpointer.clone(),
            appended: self.appended.clone(),
            shared,
            spec: spec.clone(),
        }))
    }

    async fn read(&self, from: u64, filters: &[String], max: usize) -> Result<Vec<Stored>> {
        let subject_filters = subject_filters(&self.prefix, filters)?;
        let mut out = Vec::new();
        let mut next = from.max(1);
        while out.len() < max {
            let page = (max - out.len()).clamp(64, 4096);
            let rows = sqlx::query(
                "SELECT seq, subject, body FROM log_events WHERE seq >= ? ORDER BY seq LIMIT ?",
            )
            .bind(to_i64(next))
            .bind(page as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
            let Some(last) = rows.last() else { break };
            next = seq_of(last.get::<i64, _>(0)) + 1;
            for r in rows {
                let subject: String = r.get(1);
                if !matches_any(&subject_filters, &subject) {
                    continue;
                }
                let sequence = seq_of(r.get::<i64, _>(0));
                let body: Vec<u8> = r.get(2);
                let event = Envelope::from_json(&body).map_err(|e| {
                    LogError::Corrupt(format!("event {sequence} cannot be decoded: {e}"))
                })?;
                out.push(Stored {
                    sequence,
                    subject,
                    event,
                });
                if out.len() == max {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn last_sequence(&self) -> Result<u64> {
        let v: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM log_events")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(seq_of(v))
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    attempt: u32,
    due: Instant,
}

struct State {
    /// Highest sequence handed out (or skipped as not matching).
    delivered: u64,
    /// Delivered, not acked. Ordered, so the ack floor is `first - 1`.
    pending: BTreeMap<u64, Pending>,
}

/// State of one durable consumer, shared by every handle on it in this process.
struct Shared {
    name: String,
    spec: Mutex<(ConsumerSpec, Vec<String>)>,
    state: Mutex<State>,
}

impl Shared {
    async fn load(pool: &SqlitePool, spec: ConsumerSpec, filters: Vec<String>) -> Result<Self> {
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM log_events")
            .fetch_one(pool)
            .await
            .map_err(db_err)?;
        let start = match spec.deliver_from {
            DeliverFrom::All => 0,
            DeliverFrom::Sequence(s) => to_i64(s.saturating_sub(1)),
            DeliverFrom::New => last,
        };
        sqlx::query("INSERT INTO log_consumers (name, filters, delivered, floor) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(&spec.name)
            .bind(filters.join(" "))
            .bind(start)
            .bind(start)
            .execute(pool)
            .await
            .map_err(db_err)?;
        let row = sqlx::query("SELECT delivered, floor FROM log_consumers WHERE name = ?")
            .bind(&spec.name)
            .fetch_one(pool)
            .await
            .map_err(db_err)?;
        let delivered = seq_of(row.get(0));
        let floor = seq_of(row.get(1));
        let acked: HashSet<u64> =
            sqlx::query_scalar::<_, i64>("SELECT seq FROM log_acked WHERE consumer = ?")
                .bind(&spec.name)
                .fetch_all(pool)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(seq_of)
                .collect();
        let attempts: HashMap<u64, u32> =
            sqlx::query("SELECT seq, attempts FROM log_attempts WHERE consumer = ?")
                .bind(&spec.name)
                .fetch_all(pool)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(|r| {
                    (
                        seq_of(r.get(0)),
                        u32::try_from(r.get::<i64, _>(1)).unwrap_or(u32::MAX),
                    )
                })
                .collect();
        // Everything delivered before the restart and not acked is due again now.
        let now = Instant::now();
        let mut pending = BTreeMap::new();
        if delivered > floor {
            let rows = sqlx::query(
                "SELECT seq, subject FROM log_events WHERE seq > ? AND seq <= ? ORDER BY seq",
            )
            .bind(to_i64(floor))
            .bind(to_i64(delivered))
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
            for r in rows {
                let seq = seq_of(r.get(0));
                let subject: String = r.get(1);
                if acked.contains(&seq) || !matches_any(&filters, &subject) {
                    continue;
                }
                let attempt = attempts.get(&seq).copied().unwrap_or(1);
                pending.insert(seq, Pending { attempt, due: now });
            }
        }
        Ok(Self {
            name: spec.name.clone(),
            spec: Mutex::new((spec, filters)),
            state: Mutex::new(State { delivered, pending }),
        })
    }
}

struct EmbeddedConsumer {
    pool: SqlitePool,
    checkpointer: Arc<Checkpointer>,
    appended: Arc<Notify>,
    shared: Arc<Shared>,
    spec: ConsumerSpec,
}

fn token_seq(t: &AckToken) -> Result<u64> {
    match &t.0 {
        AckInner::Embedded { sequence } => Ok(*sequence),
        #[allow(unreachable_patterns)]
        _ => Err(LogError::Invalid("ack token from another backend".into())),
    }
}

impl EmbeddedConsumer {
    /// One attempt to collect deliveries without waiting. Returns the deliveries and, when
    /// there are none, the earliest time a pending one becomes due.
    async fn collect(&self, max: usize) -> Result<(Vec<RawDelivery>, Option<Instant>)> {
        let (spec, filters) = self.shared.spec.lock().await.clone();
        let mut st = self.shared.state.lock().await;
        let now = Instant::now();

        // 1. Redeliveries that are due, lowest sequence first.
        let mut redeliver: Vec<(u64, u32)> = Vec::new();
        for (&seq, p) in st.pending.iter_mut() {
            if redeliver.len() >= max {
                break;
            }
            if p.due <= now {
                p.attempt += 1;
                p.due = now + spec.ack_wait;
                redeliver.push((seq, p.attempt));
            }
        }

        // 2. New events after `delivered`.
        let mut fresh: Vec<RawDelivery> = Vec::new();
        let mut delivered = st.delivered;
        let want = max - redeliver.len();
        if want > 0 {
            loop {
                let page = want.max(256) as i64;
                let rows = sqlx::query(
                    "SELECT seq, subject, body FROM log_events WHERE seq > ? ORDER BY seq LIMIT ?",
                )
                .bind(to_i64(delivered))
                .bind(page)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                let exhausted = (rows.len() as i64) < page;
                for r in rows {
                    let seq = seq_of(r.get(0));
                    let subject: String = r.get(1);
                    delivered = seq;
                    if matches_any(&filters, &subject) {
                        fresh.push(RawDelivery {
                            sequence: seq,
                            attempt: 1,
                            subject,
                            payload: r.get(2),
                            token: AckToken(AckInner::Embedded { sequence: seq }),
                        });
                        if fresh.len() == want {
                            break;
                        }
                    }
                }
                if exhausted || fresh.len() == want {
                    break;
                }
            }
        }

        if redeliver.is_empty() && delivered == st.delivered {
            let next_due = st.pending.values().map(|p| p.due).min();
            return Ok((Vec::new(), next_due));
        }

        // Persist what was handed out before handing it out: `delivered` so a restart
        // knows these were delivered, attempts so a crash loop reaches the limit.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if delivered != st.delivered {
            sqlx::query("UPDATE log_consumers SET delivered = ? WHERE name = ?")
                .bind(to_i64(delivered))
                .bind(&self.shared.name)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for &(seq, attempt) in &redeliver {
            sqlx::query("INSERT INTO log_attempts (consumer, seq, attempts) VALUES (?, ?, ?) ON CONFLICT(consumer, seq) DO UPDATE SET attempts = excluded.attempts")
                .bind(&self.shared.name)
                .bind(to_i64(seq))
                .bind(i64::from(attempt))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        self.checkpointer.wrote(0);

        let mut out = Vec::with_capacity(redeliver.len() + fresh.len());
        if !redeliver.is_empty() {
            let mut qb: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("SELECT seq, subject, body FROM log_events WHERE seq IN (");
            let mut sep = qb.separated(", ");
            for (seq, _) in &redeliver {
                sep.push_bind(to_i64(*seq));
            }
            qb.push(") ORDER BY seq");
            let attempts: HashMap<u64, u32> = redeliver.iter().copied().collect();
            for r in qb.build().fetch_all(&self.pool).await.map_err(db_err)? {
                let seq = seq_of(r.get(0));
                out.push(RawDelivery {
                    sequence: seq,
                    attempt: attempts.get(&seq).copied().unwrap_or(2),
                    subject: r.get(1),
                    payload: r.get(2),
                    token: AckToken(AckInner::Embedded { sequence: seq }),
                });
            }
        }
        let due = now + spec.ack_wait;
        for d in &fresh {
            st.pending.insert(d.sequence, Pending { attempt: 1, due });
        }
        st.delivered = delivered;
        out.extend(fresh);
        Ok((out, None))
    }

    /// Remove acked sequences and persist the new floor and out-of-order acks.
    async fn settle(&self, seqs: &[u64]) -> Result<()> {
        let mut st = self.shared.state.lock().await;
        let removed: BTreeSet<u64> = seqs
            .iter()
            .copied()
            .filter(|s| st.pending.remove(s).is_some())
            .collect();
        if removed.is_empty() {
            return Ok(());
        }
        let floor = st
            .pending
            .keys()
            .next()
            .map(|s| s - 1)
            .unwrap_or(st.delivered);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("UPDATE log_consumers SET floor = ? WHERE name = ?")
            .bind(to_i64(floor))
            .bind(&self.shared.name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let above: Vec<u64> = removed.range(floor + 1..).copied().collect();
        for chunk in above.chunks(INSERT_CHUNK) {
            let mut qb: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("INSERT OR IGNORE INTO log_acked (consumer, seq) ");
            qb.push_values(chunk, |mut b, seq| {
                b.push_bind(&self.shared.name).push_bind(to_i64(*seq));
            });
            qb.build().execute(&mut *tx).await.map_err(db_err)?;
        }
        sqlx::query("DELETE FROM log_acked WHERE consumer = ? AND seq <= ?")
            .bind(&self.shared.name)
            .bind(to_i64(floor))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM log_attempts WHERE consumer = ? AND seq <= ?")
            .bind(&self.shared.name)
            .bind(to_i64(floor))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.checkpointer.wrote(8 * above.len() as u64);
        Ok(())
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so an append between the look and
            // the wait is not missed.
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let (out, next_due) = self.collect(max).await?;
            if !out.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_due.map_or(deadline, |d| d.min(deadline));
            tokio::select! {
                _ = &mut appended => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, tokens: &[AckToken]) -> Result<()> {
        let seqs = tokens.iter().map(token_seq).collect::<Result<Vec<_>>>()?;
        self.settle(&seqs).await
    }

    async fn nak(&self, token: &AckToken, delay: Duration) -> Result<()> {
        let seq = token_seq(token)?;
        let mut st = self.shared.state.lock().await;
        if let Some(p) = st.pending.get_mut(&seq) {
            p.due = Instant::now() + delay;
        }
        drop(st);
        // Wake fetchers so a zero-delay nak is redelivered at once.
        self.appended.notify_waiters();
        Ok(())
    }

    async fn term(&self, token: &AckToken) -> Result<()> {
        let seq = token_seq(token)?;
        self.settle(&[seq]).await
    }

    async fn lag(&self) -> Result<u64> {
        let (_, filters) = self.shared.spec.lock().await.clone();
        let delivered = self.shared.state.lock().await.delivered;
        if filters.is_empty() {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_events WHERE seq > ?")
                .bind(to_i64(delivered))
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
            return Ok(seq_of(n));
        }
        let subjects: Vec<String> =
            sqlx::query_scalar("SELECT subject FROM log_events WHERE seq > ?")
                .bind(to_i64(delivered))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(subjects.iter().filter(|s| matches_any(&filters, s)).count() as u64)
    }
}
