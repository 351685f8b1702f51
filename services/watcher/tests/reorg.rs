//! Reorgs on a real anvil (`anvil_reorg`, `evm_snapshot`/`evm_revert`): the abandoned
//! branch's events are announced and repeated as removed, the canonical ones emitted once.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::json;
use steward_events::{derive_key, ChainBlockObserved, ChainLogObserved, ChainReorgDetected};
use steward_testkit::Anvil;
use steward_watcher::Step;

const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";

fn yaml(anvil: &Anvil, token: &str) -> String {
    format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: disabled\n    start_block: 1\n    reorg_window: 16\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n",
        anvil.url()
    )
}

fn block_hash(anvil: &Anvil, n: u64) -> String {
    anvil.rpc("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_replaced_tip_is_retracted_and_the_canonical_blocks_ingested_once() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    for _ in 0..4 {
        send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
    }
    let tip = head(&anvil); // 5: deploy + 4 transactions
    let h = Harness::new().await;
    let mut w = h.watcher(&yaml(&anvil, &token)).await;
    catch_up(&mut w).await;
    let old: Vec<String> = (tip - 1..=tip).map(|n| block_hash(&anvil, n)).collect();
    let logs_before = h.events_of("chain.log.observed").await;
    assert_eq!(logs_before.len(), 8);

    // The last two blocks are replaced by empty ones: same height, other hashes.
    anvil.rpc("anvil_reorg", json!([2, []]));
    assert_eq!(head(&anvil), tip);
    assert_ne!(block_hash(&anvil, tip), old[1]);

    let step = w.step().await.unwrap();
    assert_eq!(step, Step::Reorg(tip - 2));
    catch_up(&mut w).await;

    let reorgs = h.events_of("chain.reorg.detected").await;
    assert_eq!(reorgs.len(), 1);
    let r: ChainReorgDetected = reorgs[0].payload().unwrap();
    assert_eq!(r.fork_block_number, tip - 2);
    assert_eq!(r.fork_block_hash, block_hash(&anvil, tip - 2));
    assert_eq!(r.depth, 2);
    assert_eq!(r.retracted_blocks, old);
    // What the abandoned blocks emitted: their block events and their four logs.
    let abandoned: Vec<_> = logs_before
        .iter()
        .filter(|e| {
            let p: ChainLogObserved = e.payload().unwrap();
            old.contains(&p.block_hash)
        })
        .collect();
    assert_eq!(abandoned.len(), 4);
    let listed: HashSet<&str> = r.retracted_events.iter().map(|e| e.key.as_str()).collect();
    for e in &abandoned {
        assert!(
            listed.contains(e.key.as_str()),
            "{} listed as retracted",
            e.key
        );
    }
    assert_eq!(
        r.retracted_events
            .iter()
            .filter(|e| e.event_type == "chain.block.observed")
            .count(),
        2
    );

    // Each retracted log is repeated with removed: true, in the original's story.
    let removed: Vec<_> = h
        .events_of("chain.log.observed")
        .await
        .into_iter()
        .filter(|e| e.payload::<ChainLogObserved>().unwrap().removed)
        .collect();
    assert_eq!(removed.len(), 4);
    for orig in &abandoned {
        let copy = removed
            .iter()
            .find(|e| e.key == derive_key(&orig.key, "retracted"))
            .unwrap_or_else(|| panic!("no retraction of {}", orig.key));
        assert_eq!(copy.correlation_id, orig.correlation_id);
        assert_eq!(copy.causation_id, Some(orig.id));
        let mut p: ChainLogObserved = copy.payload().unwrap();
        p.removed = false;
        assert_eq!(p, orig.payload::<ChainLogObserved>().unwrap());
    }

    // The canonical blocks: reported once each, with the chain's hashes; no new logs.
    let blocks: Vec<ChainBlockObserved> = h
        .events_of("chain.block.observed")
        .await
        .iter()
        .map(|e| e.payload().unwrap())
        .collect();
    for n in tip - 1..=tip {
        let now = block_hash(&anvil, n);
        assert_eq!(blocks.iter().filter(|b| b.hash == now).count(), 1);
    }
    assert_eq!(
        blocks.len() as u64,
        tip + 2,
        "{tip} blocks, 2 of them twice"
    );
    assert_eq!(h.events_of("chain.log.observed").await.len(), 8 + 4);

    // Nothing more on another look, nor after a restart.
    let n = h.events().await.len();
    assert_eq!(catch_up(&mut w).await, vec![Step::Idle]);
    drop(w);
    let mut again = h.watcher(&yaml(&anvil, &token)).await;
    assert_eq!(catch_up(&mut again).await, vec![Step::Idle]);
    assert_eq!(h.events().await.len(), n);
}

#[tokio::test]
async fn a_longer_branch_from_a_snapshot_is_found_through_the_parent_hash() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    send(&anvil, &token, "emitTransfers(uint256)", &["1"]);
    let fork = head(&anvil);
    let snapshot = anvil.rpc("evm_snapshot", json!([]));
    send(&anvil, &token, "emitTransfers(uint256)", &["3"]);
    send(&anvil, &token, "emitTransfers(uint256)", &["3"]);
    let h = Harness::new().await;
    let mut w = h.watcher(&yaml(&anvil, &token)).await;
    catch_up(&mut w).await;
    assert_eq!(h.events_of("chain.log.observed").await.len(), 7);

    // Back to the fork; a different, longer branch.
    assert_eq!(anvil.rpc("evm_revert", json!([snapshot])), json!(true));
    for _ in 0..3 {
        send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
    }
    assert_eq!(head(&anvil), fork + 3);
    let steps = catch_up(&mut w).await;
    assert!(steps.contains(&Step::Reorg(fork)), "{steps:?}");

    let r: ChainReorgDetected = h.events_of("chain.reorg.detected").await[0]
        .payload()
        .unwrap();
    assert_eq!(r.fork_block_number, fork);
    assert_eq!(r.depth, 2);
    assert_eq!(
        r.retracted_events
            .iter()
            .filter(|e| e.event_type == "chain.log.observed")
            .count(),
        6
    );
    let logs: Vec<ChainLogObserved> = h.logs().await;
    let live: Vec<&ChainLogObserved> = logs.iter().filter(|l| !l.removed).collect();
    // 1 before the fork, 6 abandoned, 6 canonical.
    assert_eq!(live.len(), 13);
    assert_eq!(logs.iter().filter(|l| l.removed).count(), 6);
    for n in fork + 1..=fork + 3 {
        let hash = block_hash(&anvil, n);
        assert_eq!(live.iter().filter(|l| l.block_hash == hash).count(), 2);
    }
    assert_eq!(w.cursor().map(|c| c.0), Some(fork + 3));
}
