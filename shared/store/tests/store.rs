//! The store against real databases: every test body runs on SQLite (a temp file) and on
//! PostgreSQL (a fresh database on the server `scripts/test` starts).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::{Any, Row, Transaction};
use steward_events::{Envelope, NotifyRequested};
use steward_store::{Applied, ApplyError, Archiver, Dialect, Projection, Store, StoreError};
use tempfile::TempDir;

// ------------------------------------------------------------------ fixtures

/// A database for one test: a temp SQLite file (not created yet) or a fresh PostgreSQL db.
struct Db {
    url: String,
    _dir: Option<TempDir>,
}

impl Db {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        Self {
            url,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Self {
        Self {
            url: steward_testkit::fresh_postgres().await,
            _dir: None,
        }
    }

    async fn connect(&self) -> Store {
        let store = Store::connect(&self.url, 4)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.url));
        // The test projections' read model: written in the common SQL subset, once.
        for ddl in [
            "CREATE TABLE IF NOT EXISTS test_counter (projection TEXT PRIMARY KEY, n BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS test_seen (projection TEXT NOT NULL, event_key TEXT NOT NULL, \
             times BIGINT NOT NULL, PRIMARY KEY (projection, event_key))",
        ] {
            sqlx::query(ddl).execute(store.pool()).await.unwrap();
        }
        store
    }
}

/// Counts the events it applies (`test_counter`) and how often it saw each key
/// (`test_seen`). Fails *after* writing, for the keys in `fail_keys`.
struct Counter {
    name: String,
    fail_keys: HashSet<String>,
}

impl Counter {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            fail_keys: HashSet::new(),
        }
    }

    fn failing_on<I: IntoIterator<Item = S>, S: Into<String>>(name: &str, keys: I) -> Self {
        Self {
            name: name.to_owned(),
            fail_keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}

#[async_trait]
impl Projection for Counter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Any>,
        event: &Envelope,
    ) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO test_counter (projection, n) VALUES ($1, 1) \
             ON CONFLICT (projection) DO UPDATE SET n = test_counter.n + 1",
        )
        .bind(&self.name)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO test_seen (projection, event_key, times) VALUES ($1, $2, 1) \
             ON CONFLICT (projection, event_key) DO UPDATE SET times = test_seen.times + 1",
        )
        .bind(&self.name)
        .bind(&event.key)
        .execute(&mut **tx)
        .await?;
        if self.fail_keys.contains(&event.key) {
            return Err(ApplyError::Retry(format!(
                "injected failure on {}",
                event.key
            )));
        }
        Ok(())
    }
}

async fn count(store: &Store, projection: &str) -> i64 {
    sqlx::query("SELECT n FROM test_counter WHERE projection = $1")
        .bind(projection)
        .fetch_optional(store.pool())
        .await
        .unwrap()
        .map(|r| r.get::<i64, _>(0))
        .unwrap_or(0)
}

/// Key -> times the read model saw it.
async fn seen(store: &Store, projection: &str) -> HashMap<String, i64> {
    sqlx::query("SELECT event_key, times FROM test_seen WHERE projection = $1")
        .bind(projection)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect()
}

fn event(key: &str) -> Envelope {
    Envelope::new("test", key, &NotifyRequested::example())
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// An event of any type at a given time (the payload does not matter to the store).
fn typed(event_type: &str, key: &str, time: DateTime<Utc>) -> Envelope {
    let mut e = event(key);
    e.event_type = event_type.to_owned();
    e.time = time;
    e
}

// ------------------------------------------------------------------ bodies

async fn migrations_are_idempotent(db: Db) {
    let first = db.connect().await;
    let dialect = if db.url.starts_with("sqlite") {
        Dialect::Sqlite
    } else {
        Dialect::Postgres
    };
    assert_eq!(first.dialect(), dialect);
    first
        .project(&Counter::new("p"), 1, &event("k1"))
        .await
        .unwrap();
    // A second store on the same database, while the first is still open: the migrations
    // are recorded, nothing is re-created, the data is there.
    let second = db.connect().await;
    assert_eq!(second.position("p").await.unwrap(), Some(1));
    drop(first);
    drop(second);
    let third = db.connect().await;
    assert_eq!(count(&third, "p").await, 1);
    let migrations: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(third.pool())
        .await
        .unwrap()
        .get(0);
    // One row per migration file (both dialects have the same list).
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert!(files >= 2);
    assert_eq!(migrations, files as i64);
}

/// Processes opening a fresh database at the same moment (`steward up` and a CLI command, or
/// pods starting together) all end up connected, each migration applied once.
async fn concurrent_first_connections_all_migrate(db: Db) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { Store::connect(&url, 2).await })
        })
        .collect();
    for t in tasks {
        let store = t.await.unwrap();
        assert!(store.is_ok(), "{:?}", store.err());
    }
    let store = db.connect().await;
    let migrations: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert_eq!(migrations, files as i64);
}

async fn archive_inserts_dedups_and_queries(db: Db) {
    let store = db.connect().await;
    let t = t0();
    let root = typed("chain.block.observed", "blk-1", t).with_chain(1);
    let mut child = root.derive("risk", "rule/hf", &NotifyRequested::example());
    child.event_type = "risk.position.liquidatable".into();
    child.time = t + Duration::seconds(1);
    let mut grandchild = child.derive("safe", "propose", &NotifyRequested::example());
    grandchild.event_type = "safe.tx.proposed".into();
    grandchild.time = t + Duration::seconds(2);
    let other = typed("safe.tx.executed", "other", t + Duration::seconds(3));
    let dead = typed("log.event.dead_lettered", "dead", t + Duration::seconds(4));
    let lookalike = typed(
        "logxevent.dead_lettered",
        "lookalike",
        t + Duration::seconds(4),
    );

    // Within one batch, a repeated key is stored once.
    let n = store
        .archive(&[(1, &root), (2, &child), (2, &child), (3, &grandchild)])
        .await
        .unwrap();
    assert_eq!(n, 3);
    // Already archived keys are ignored, even under another sequence; new ones are added.
    let n = store
        .archive(&[
            (3, &grandchild),
            (9, &root),
            (4, &other),
            (5, &dead),
            (6, &lookalike),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(store.archive(&[]).await.unwrap(), 0);

    // A whole story, in order, with every field intact.
    let story = store
        .archived_by_correlation(root.correlation_id)
        .await
        .unwrap();
    let events: Vec<&Envelope> = story.iter().map(|a| &a.event).collect();
    assert_eq!(events, vec![&root, &child, &grandchild]);
    assert_eq!(
        story.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(story[1].event.causation_id, Some(root.id));
    assert_eq!(story[2].event.chain_id, Some(1));
    assert!(store
        .archived_by_correlation(uuid::Uuid::now_v7())
        .await
        .unwrap()
        .is_empty());

    let by_id = store.archived_by_id(child.id).await.unwrap().unwrap();
    assert_eq!((by_id.sequence, &by_id.event), (2, &child));
    assert!(store
        .archived_by_id(uuid::Uuid::now_v7())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.archived_by_key("other").await.unwrap().unwrap().event,
        other
    );
    assert!(store.archived_by_key("nope").await.unwrap().is_none());

    let types = |v: Vec<steward_store::ArchivedEvent>| {
        v.into_iter().map(|a| a.event.key).collect::<Vec<_>>()
    };
    assert_eq!(
        types(store.archived_by_type(">", .., 100).await.unwrap()).len(),
        6
    );
    assert_eq!(
        types(store.archived_by_type("safe.tx.*", .., 100).await.unwrap()),
        vec![grandchild.key.clone(), "other".into()]
    );
    assert_eq!(
        types(store.archived_by_type("safe.>", .., 100).await.unwrap()),
        vec![grandchild.key.clone(), "other".into()]
    );
    assert_eq!(
        types(store.archived_by_type("safe.*", .., 100).await.unwrap()),
        Vec::<String>::new(),
        "`*` is one token"
    );
    assert_eq!(
        types(
            store
                .archived_by_type("chain.block.observed", .., 100)
                .await
                .unwrap()
        ),
        vec!["blk-1"]
    );
    // `_` is a literal, not a LIKE wildcard.
    assert_eq!(
        types(
            store
                .archived_by_type("log.event.dead_lettered", .., 100)
                .await
                .unwrap()
        ),
        vec!["dead"]
    );
    assert_eq!(
        types(
            store
                .archived_by_type("*.*.dead_lettered", .., 100)
                .await
                .unwrap()
        ),
        vec!["dead"]
    );
    // `*` then a literal then `>`: the SQL prefilter over-selects, the result is exact.
    assert_eq!(
        types(store.archived_by_type("*.tx.>", .., 100).await.unwrap()),
        vec![grandchild.key.clone(), "other".into()]
    );
    assert_eq!(
        types(
            store
                .archived_by_type("*.position.>", .., 100)
                .await
                .unwrap()
        ),
        vec![child.key.clone()]
    );
    // Time ranges (bounds as given) and limits.
    let s = Duration::seconds;
    assert_eq!(
        types(
            store
                .archived_by_type(">", t + s(1)..t + s(3), 100)
                .await
                .unwrap()
        ),
        vec![child.key.clone(), grandchild.key.clone()]
    );
    assert_eq!(
        types(
            store
                .archived_by_type(">", t + s(1)..=t + s(3), 100)
                .await
                .unwrap()
        )
        .len(),
        3
    );
    assert_eq!(
        types(
            store
                .archived_by_type(
                    ">",
                    t + s(4).checked_add(&Duration::microseconds(1)).unwrap()..,
                    100
                )
                .await
                .unwrap()
        )
        .len(),
        0
    );
    assert_eq!(
        types(store.archived_by_type(">", ..t + s(1), 100).await.unwrap()),
        vec!["blk-1"]
    );
    assert_eq!(
        types(store.archived_by_type(">", .., 2).await.unwrap()),
        vec!["blk-1".to_owned(), child.key.clone()]
    );
    assert!(store.archived_by_type(">", .., 0).await.unwrap().is_empty());
    let err = store
        .archived_by_type("chain.>.x", .., 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(!err.is_retryable());
}

async fn archive_limit_pages_through_false_positives(db: Db) {
    // `*.b.>` prefilters as "*.b.*" with at least two dots, which also selects `x.y.b.z`;
    // with many such rows first, the query must page on until it has `limit` real matches.
    let store = db.connect().await;
    let t = t0();
    let mut events = Vec::new();
    for i in 0..1200 {
        events.push(typed(
            "x.y.b.z",
            &format!("fp-{i}"),
            t + Duration::milliseconds(i),
        ));
    }
    for i in 0..3 {
        events.push(typed(
            "a.b.c",
            &format!("hit-{i}"),
            t + Duration::seconds(10 + i),
        ));
    }
    let batch: Vec<(u64, &Envelope)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    assert_eq!(store.archive(&batch).await.unwrap(), 1203);
    let hits = store.archived_by_type("*.b.>", .., 2).await.unwrap();
    assert_eq!(
        hits.iter()
            .map(|a| a.event.key.as_str())
            .collect::<Vec<_>>(),
        vec!["hit-0", "hit-1"]
    );
    assert_eq!(
        store.archived_by_type("x.>", .., 5000).await.unwrap().len(),
        1200
    );
}

async fn projection_applies_once(db: Db) {
    let store = db.connect().await;
    let p = Counter::new("counter");
    let e = event("k1");
    assert_eq!(store.position("counter").await.unwrap(), None);
    assert_eq!(store.project(&p, 7, &e).await.unwrap(), Applied::Applied);
    assert!(store.is_applied("counter", "k1").await.unwrap());
    // Redelivered (same key, same or another sequence): nothing changes.
    assert_eq!(
        store.project(&p, 7, &e).await.unwrap(),
        Applied::AlreadyApplied
    );
    assert_eq!(
        store.project(&p, 8, &e).await.unwrap(),
        Applied::AlreadyApplied
    );
    assert_eq!(count(&store, "counter").await, 1);
    assert_eq!(store.position("counter").await.unwrap(), Some(7));
    // Another projection is independent.
    assert_eq!(
        store.project(&Counter::new("other"), 7, &e).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(count(&store, "other").await, 1);
    let positions = store.positions().await.unwrap();
    assert_eq!(
        positions
            .iter()
            .map(|p| (p.projection.as_str(), p.sequence))
            .collect::<Vec<_>>(),
        vec![("counter", 7), ("other", 7)]
    );
    assert!(positions[0].updated_at <= Utc::now());
}

async fn out_of_order_redelivery_applies_once(db: Db) {
    let store = db.connect().await;
    let ok = Counter::new("c");
    let e: Vec<Envelope> = (1..=4).map(|i| event(&format!("k{i}"))).collect();
    store.project(&ok, 1, &e[0]).await.unwrap();
    // Event 2 fails (nak), 3 and 4 go through: the position passes 2.
    let err = store
        .project(&Counter::failing_on("c", ["k2"]), 2, &e[1])
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    store.project(&ok, 3, &e[2]).await.unwrap();
    store.project(&ok, 4, &e[3]).await.unwrap();
    assert_eq!(store.position("c").await.unwrap(), Some(4));
    // The redelivery of 2 arrives after 4: applied, though below the position.
    assert_eq!(
        store.project(&ok, 2, &e[1]).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        store.position("c").await.unwrap(),
        Some(4),
        "the position never goes back"
    );
    // Late duplicates of 3 and 1: skipped.
    assert_eq!(
        store.project(&ok, 3, &e[2]).await.unwrap(),
        Applied::AlreadyApplied
    );
    assert_eq!(
        store.project(&ok, 1, &e[0]).await.unwrap(),
        Applied::AlreadyApplied
    );
    assert_eq!(count(&store, "c").await, 4);
    assert!(seen(&store, "c").await.values().all(|&n| n == 1));
}

async fn failing_apply_rolls_back_everything(db: Db) {
    let store = db.connect().await;
    let e = event("k1");
    let err = store
        .project(&Counter::failing_on("c", ["k1"]), 5, &e)
        .await
        .unwrap_err();
    match &err {
        StoreError::Apply {
            projection,
            sequence,
            key,
            source,
        } => {
            assert_eq!(
                (projection.as_str(), *sequence, key.as_str()),
                ("c", 5, "k1")
            );
            assert!(matches!(source, ApplyError::Retry(_)));
        }
        other => panic!("unexpected error {other}"),
    }
    // The counter was incremented inside the transaction, then rolled back with the marker.
    assert_eq!(count(&store, "c").await, 0);
    assert!(seen(&store, "c").await.is_empty());
    assert!(!store.is_applied("c", "k1").await.unwrap());
    assert_eq!(store.position("c").await.unwrap(), None);
    // The retry applies it.
    assert_eq!(
        store.project(&Counter::new("c"), 5, &e).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(count(&store, "c").await, 1);
    // Converted for the log: retryable, so the event is naked, not dead-lettered.
    let handler: steward_log::HandlerError = err.into();
    assert!(matches!(handler, steward_log::HandlerError::Retry(_)));
    let fatal = StoreError::Apply {
        projection: "c".into(),
        sequence: 1,
        key: "k".into(),
        source: ApplyError::Fatal("bad payload".into()),
    };
    assert!(matches!(
        steward_log::HandlerError::from(fatal),
        steward_log::HandlerError::Fatal(_)
    ));
}

async fn batch_projection_is_exact(db: Db) {
    let store = db.connect().await;
    let p = Counter::new("b");
    let e: Vec<Envelope> = (1..=5).map(|i| event(&format!("k{i}"))).collect();
    store.project(&p, 2, &e[1]).await.unwrap();
    // k2 applied before, k3 twice in the batch, out of order sequences.
    let out = store
        .project_batch(
            &p,
            &[(3, &e[2]), (2, &e[1]), (1, &e[0]), (3, &e[2]), (5, &e[4])],
        )
        .await
        .unwrap();
    let (new, dup) = (Applied::Applied, Applied::AlreadyApplied);
    assert_eq!(out, vec![new, dup, new, dup, new]);
    assert_eq!(count(&store, "b").await, 4);
    assert_eq!(store.position("b").await.unwrap(), Some(5));
    // A batch with nothing new changes nothing, not even the position's timestamp.
    let before = store.positions().await.unwrap();
    let out = store
        .project_batch(&p, &[(1, &e[0]), (5, &e[4])])
        .await
        .unwrap();
    assert_eq!(out, vec![dup, dup]);
    assert_eq!(store.positions().await.unwrap(), before);
    assert!(store.project_batch(&p, &[]).await.unwrap().is_empty());
    // One failure rolls back the whole batch, earlier events included.
    let err = store
        .project_batch(&Counter::failing_on("b", ["k4"]), &[(6, &e[3]), (4, &e[3])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Apply { sequence: 6, .. }),
        "{err}"
    );
    let extra = event("k6");
    let err = store
        .project_batch(
            &Counter::failing_on("b", ["k4"]),
            &[(7, &extra), (4, &e[3])],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Apply { sequence: 4, .. }),
        "{err}"
    );
    assert!(!store.is_applied("b", "k6").await.unwrap());
    assert_eq!(count(&store, "b").await, 4);
    assert_eq!(store.position("b").await.unwrap(), Some(5));
    // The retry of the batch applies both.
    assert_eq!(
        store
            .project_batch(&p, &[(7, &extra), (4, &e[3])])
            .await
            .unwrap(),
        vec![new, new]
    );
    assert_eq!(count(&store, "b").await, 6);
    assert_eq!(store.position("b").await.unwrap(), Some(7));
    assert!(seen(&store, "b").await.values().all(|&n| n == 1));
}

async fn crash_between_apply_and_ack(db: Db) {
    let e = event("k1");
    {
        let store = db.connect().await;
        assert_eq!(
            store.project(&Counter::new("c"), 1, &e).await.unwrap(),
            Applied::Applied
        );
        // The process dies here: no ack, no orderly close. Dropping the store drops the pool.
    }
    let store = db.connect().await;
    assert_eq!(
        store.project(&Counter::new("c"), 1, &e).await.unwrap(),
        Applied::AlreadyApplied
    );
    assert_eq!(count(&store, "c").await, 1);
    assert_eq!(store.position("c").await.unwrap(), Some(1));
}

async fn archiver_is_exactly_once(db: Db) {
    let store = db.connect().await;
    let a = event("a");
    let b = event("b").with_chain(10);
    assert_eq!(
        store.project(&Archiver, 11, &a).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        store.project(&Archiver, 11, &a).await.unwrap(),
        Applied::AlreadyApplied
    );
    // The same fact appended again under a new sequence is still archived once.
    assert_eq!(
        store.project(&Archiver, 15, &a).await.unwrap(),
        Applied::AlreadyApplied
    );
    let got = store.archived_by_key("a").await.unwrap().unwrap();
    assert_eq!((got.sequence, &got.event), (11, &a));
    // Batch, including an event archived directly before.
    store.archive(&[(12, &b)]).await.unwrap();
    let c = event("c");
    let out = store
        .project_batch(&Archiver, &[(12, &b), (13, &c), (11, &a)])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![Applied::Applied, Applied::Applied, Applied::AlreadyApplied]
    );
    assert_eq!(
        store.archived_by_key("c").await.unwrap().unwrap().sequence,
        13
    );
    assert_eq!(store.archived_by_type(">", .., 10).await.unwrap().len(), 3);
    assert_eq!(store.position(Archiver::NAME).await.unwrap(), Some(13));
    // Called outside `Store::project` it has no sequence to archive under: refused.
    let mut tx = store.begin().await.unwrap();
    let err = Archiver.apply(&mut tx, &event("d")).await.unwrap_err();
    assert!(matches!(err, ApplyError::Fatal(_)), "{err}");
    tx.rollback().await.unwrap();
}

async fn concurrent_deliveries_apply_once(db: Db) {
    let store = db.connect().await;
    let p = Arc::new(Counter::new("c"));
    let e = Arc::new(event("k1"));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, p, e) = (store.clone(), p.clone(), e.clone());
            tokio::spawn(async move { store.project(&*p, 1, &e).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        if t.await.unwrap().is_applied() {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(count(&store, "c").await, 1);
}

/// Random deliveries: keys repeated, reordered, delivered alone or in batches, some
/// attempts failing. Checked against a model; the counter always equals the number of
/// distinct keys applied.
fn random_deliveries_count_distinct_keys(runtime: tokio::runtime::Runtime, db: Db) {
    let store = runtime.block_on(db.connect());
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (1usize..8).prop_flat_map(|keys| {
        let delivery = (0..keys, any::<bool>(), prop::bool::weighted(0.15));
        (
            prop::collection::vec(delivery, 1..40),
            prop::collection::vec(1usize..5, 1..10),
        )
    });
    let case = std::cell::Cell::new(0);
    runner
        .run(&strategy, |(deliveries, batch_sizes)| {
            case.set(case.get() + 1);
            let name = format!("prop-{}", case.get());
            runtime.block_on(check_deliveries(&store, &name, &deliveries, &batch_sizes))
        })
        .unwrap();
}

/// `deliveries`: (key index, re-appended under a second sequence?, this attempt fails?).
async fn check_deliveries(
    store: &Store,
    name: &str,
    deliveries: &[(usize, bool, bool)],
    batch_sizes: &[usize],
) -> Result<(), TestCaseError> {
    let events: Vec<Envelope> = (0..8).map(|i| event(&format!("{name}-k{i}"))).collect();
    let mut applied: HashSet<usize> = HashSet::new();
    let mut position: Option<u64> = None;
    let mut rest = deliveries;
    let mut sizes = batch_sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).min(rest.len());
        let (batch, tail) = rest.split_at(size);
        rest = tail;
        let seq =
            |(k, dup, _): &(usize, bool, bool)| if *dup { *k as u64 + 101 } else { *k as u64 + 1 };
        let fail_keys: HashSet<usize> = batch.iter().filter(|d| d.2).map(|d| d.0).collect();
        let projection =
            Counter::failing_on(name, fail_keys.iter().map(|k| events[*k].key.clone()));
        let input: Vec<(u64, &Envelope)> = batch.iter().map(|d| (seq(d), &events[d.0])).collect();
        // Model: apply is called on the first occurrence of each key not applied before;
        // if it fails for any of them, the batch changes nothing.
        let fails = fail_keys.iter().any(|k| !applied.contains(k));
        let result = if input.len() == 1 {
            store
                .project(&projection, input[0].0, input[0].1)
                .await
                .map(|a| vec![a])
        } else {
            store.project_batch(&projection, &input).await
        };
        if fails {
            prop_assert!(
                matches!(result, Err(StoreError::Apply { .. })),
                "{result:?}"
            );
            continue;
        }
        let mut expected = Vec::new();
        for d in batch {
            if applied.insert(d.0) {
                expected.push(Applied::Applied);
                position = position.max(Some(seq(d)));
            } else {
                expected.push(Applied::AlreadyApplied);
            }
        }
        prop_assert_eq!(result.unwrap(), expected);
    }
    prop_assert_eq!(count(store, name).await, applied.len() as i64);
    let seen = seen(store, name).await;
    prop_assert_eq!(seen.len(), applied.len());
    prop_assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    for (i, e) in events.iter().enumerate() {
        prop_assert_eq!(
            store.is_applied(name, &e.key).await.unwrap(),
            applied.contains(&i)
        );
    }
    prop_assert_eq!(store.position(name).await.unwrap(), position);
    Ok(())
}

// ------------------------------------------------------------------ both dialects

macro_rules! on_both {
    ($($body:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    super::$body(super::Db::sqlite()).await
                }
            )*

            #[test]
            fn random_deliveries_count_distinct_keys() {
                super::random_deliveries_count_distinct_keys(super::runtime(), super::Db::sqlite());
            }
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    super::$body(super::Db::postgres().await).await
                }
            )*

            #[test]
            fn random_deliveries_count_distinct_keys() {
                let runtime = super::runtime();
                let db = runtime.block_on(super::Db::postgres());
                super::random_deliveries_count_distinct_keys(runtime, db);
            }
        }
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

on_both!(
    migrations_are_idempotent,
    concurrent_first_connections_all_migrate,
    archive_inserts_dedups_and_queries,
    archive_limit_pages_through_false_positives,
    projection_applies_once,
    out_of_order_redelivery_applies_once,
    failing_apply_rolls_back_everything,
    batch_projection_is_exact,
    crash_between_apply_and_ack,
    archiver_is_exactly_once,
    concurrent_deliveries_apply_once,
);

// ------------------------------------------------------------------ connection errors

#[tokio::test]
async fn connection_errors_do_not_reveal_the_password() {
    let err = Store::connect("postgres://u:hunter2@127.0.0.1:1/x", 1)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres://u:***@127.0.0.1:1/x"), "{shown}");

    let err = Store::connect("postgres://u@127.0.0.1:1/x?password=hunter2", 1)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let err = Store::connect("mysql://u:hunter2@127.0.0.1:1/x", 1)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn wrong_password_on_a_real_server_is_not_revealed() {
    // The test server trusts local connections, so ask for a user that does not exist:
    // the server's refusal comes back, without the password we sent.
    let admin = steward_testkit::postgres_admin_url();
    let after_scheme = &admin[admin.find("://").unwrap() + 3..];
    let host_and_db = after_scheme
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(after_scheme);
    let url = format!("postgres://no_such_user_x:hunter2%40x@{host_and_db}");
    let err = Store::connect(&url, 1).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("no_such_user_x"),
        "the reason is kept: {shown}"
    );
}

#[tokio::test]
async fn sqlite_file_is_created_and_in_memory_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested.db");
    assert!(!path.exists());
    let store = Store::connect(&format!("sqlite://{}", path.display()), 2)
        .await
        .unwrap();
    assert!(path.exists());
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(fk, 1);

    let mem = Store::connect("sqlite::memory:", 4).await.unwrap();
    assert_eq!(
        mem.project(&Archiver, 1, &event("m")).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(mem.archived_by_key("m").await.unwrap().unwrap().sequence, 1);
}

#[test]
fn both_dialects_have_the_same_migrations() {
    let names = |dialect: &str| -> Vec<String> {
        let dir = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("postgres"), names("sqlite"));
}

/// The test PostgreSQL serves TLS with a certificate from a throwaway CA (`scripts/test-servers`
/// makes it): `sslmode=verify-full` with that CA connects encrypted; with another CA the
/// connection is refused, saying why; `sslmode=disable` connects in the clear.
#[tokio::test]
async fn postgres_tls_verifies_the_server_against_the_given_ca() {
    let dir = std::env::var("STEWARD_TEST_SERVERS_DIR")
        .expect("STEWARD_TEST_SERVERS_DIR: run the tests through scripts/test");
    let tls = std::path::Path::new(&dir).join("tls");
    let base = steward_testkit::fresh_postgres().await;
    let with = |query: String| {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{query}")
    };
    async fn encrypted(store: &Store) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    let url = with(format!(
        "sslmode=verify-full&sslrootcert={}",
        tls.join("ca.pem").display()
    ));
    let store = Store::connect(&url, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(encrypted(&store).await, "verify-full without TLS");
    store.close().await;

    let url = with(format!(
        "sslmode=verify-full&sslrootcert={}",
        tls.join("other-ca.pem").display()
    ));
    let Err(err) = Store::connect(&url, 2).await else {
        panic!("a server certificate the CA did not sign was accepted");
    };
    let msg = err.to_string();
    assert!(msg.starts_with("cannot connect to"), "{msg}");
    assert!(msg.to_ascii_lowercase().contains("certificate"), "{msg}");

    let store = Store::connect(&with("sslmode=disable".into()), 2)
        .await
        .unwrap();
    assert!(!encrypted(&store).await, "sslmode=disable encrypted");
    store.close().await;
}
