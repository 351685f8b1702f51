//! `steward watch backfill` underneath: history ingested in ranges that split when refused,
//! and a run killed mid-way resumes with no gap and no duplicate.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::proxy::RangeLimit;
use common::*;
use steward_events::ChainLogObserved;
use steward_testkit::Anvil;
use steward_watcher::backfill::{Backfill, BackfillRequest};

const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";

#[tokio::test]
async fn a_backfill_killed_mid_way_resumes_with_no_gap_and_no_duplicate() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    for _ in 0..60 {
        send(&anvil, &token, "emitTransfers(uint256)", &["4"]);
    }
    let limit = RangeLimit::start(&anvil.url(), 16).await;
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: disabled\n    max_block_range: 20\n    concurrency: 2\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n",
        limit.url()
    );
    let config = config(&yaml, h.dir.path());
    let request = BackfillRequest {
        chain: "local".into(),
        from: 2,
        to: Some(61),
    };

    // First run: dies (a panic in its task) right after its third range is recorded.
    let job = Backfill::prepare(&config, &request, h.log.clone(), h.store.clone())
        .await
        .unwrap();
    assert_eq!((job.from, job.to, job.resume), (2, 61, 2));
    let ranges = Arc::new(AtomicU64::new(0));
    let seen = ranges.clone();
    let died = tokio::spawn(job.run(Arc::new(move |_, _| {
        assert!(
            seen.fetch_add(1, Ordering::SeqCst) + 1 < 3,
            "killed after 3 ranges"
        );
    })))
    .await;
    assert!(died.is_err(), "the first run died");
    let partial = h.events_of("chain.log.observed").await.len();
    assert!(partial > 0 && partial < 240, "stopped part-way: {partial}");

    // Second run: resumes where the first stopped.
    let job = Backfill::prepare(&config, &request, h.log.clone(), h.store.clone())
        .await
        .unwrap();
    assert!(
        job.resume > 2 && job.resume <= 61,
        "resumes at {}",
        job.resume
    );
    // Every log below the resume point is in the log; the range being written when the
    // run died may be there too, in part (its record was not yet written): it is fetched
    // again and the log drops the repeats (checked below: each log once).
    let below = h
        .logs()
        .await
        .iter()
        .filter(|l| l.block_number < job.resume)
        .count();
    assert_eq!(
        below as u64,
        (job.resume - 2) * 4,
        "everything before the resume point is in the log"
    );
    job.run(Arc::new(|_, _| {})).await.unwrap();
    assert_eq!(h.events_of("chain.log.observed").await.len(), 240);

    // A crash between an append and its progress record: the progress is behind what the
    // log holds. Rewound by hand to the start, the run appends everything again and the log
    // keeps one copy of each.
    steward_store::sqlx::query("UPDATE watcher_backfills SET next_block = 2")
        .execute(h.store.pool())
        .await
        .unwrap();
    let job = Backfill::prepare(&config, &request, h.log.clone(), h.store.clone())
        .await
        .unwrap();
    assert_eq!(job.resume, 2);
    job.run(Arc::new(|_, _| {})).await.unwrap();

    let logs: Vec<ChainLogObserved> = h.logs().await;
    assert_eq!(logs.len(), 240, "60 blocks x 4 logs, each once");
    let blocks: HashSet<u64> = logs.iter().map(|l| l.block_number).collect();
    assert_eq!(blocks, (2..=61).collect::<HashSet<u64>>(), "no gap");
    assert!(
        limit.refused() > 0,
        "ranges above 16 blocks were refused and split"
    );
    // A backfill writes logs only: no block events, and the live cursor is untouched.
    assert!(h.events_of("chain.block.observed").await.is_empty());
    let w = h.watcher(&yaml).await;
    assert_eq!(w.cursor(), None);

    // Done: running it again ingests nothing.
    let job = Backfill::prepare(&config, &request, h.log.clone(), h.store.clone())
        .await
        .unwrap();
    assert_eq!(job.resume, 62);
    job.run(Arc::new(|_, _| panic!("nothing left to do")))
        .await
        .unwrap();
    assert_eq!(h.events_of("chain.log.observed").await.len(), 240);
}

#[tokio::test]
async fn a_backfill_refuses_blocks_that_are_not_final_and_unknown_chains() {
    let anvil = Anvil::start();
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    finality: 5\n    watches:\n      - name: tokens\n        address: \"0x00000000000000000000000000000000000000aa\"\n        events: [\"{TRANSFER}\"]\n",
        anvil.url()
    );
    mine(&anvil, 10);
    let config = config(&yaml, h.dir.path());
    let too_far = BackfillRequest {
        chain: "local".into(),
        from: 1,
        to: Some(8),
    };
    let err = Backfill::prepare(&config, &too_far, h.log.clone(), h.store.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("beyond the chain's newest final block 5"),
        "{err}"
    );
    let unknown = BackfillRequest {
        chain: "mainnet".into(),
        from: 1,
        to: None,
    };
    let err = Backfill::prepare(&config, &unknown, h.log.clone(), h.store.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no chain named `mainnet`") && err.contains("local"),
        "{err}"
    );
}
