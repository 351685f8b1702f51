//! The watcher against a real anvil: decoding, keys, blocks, checkpoints, restarts, bulk
//! catch-up with adaptive ranges.

mod common;

use common::*;
use serde_json::json;
use steward_events::{ChainBlockObserved, ChainLogObserved};
use steward_testkit::Anvil;
use steward_watcher::Step;

const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";

fn chain_yaml(anvil: &Anvil, extra: &str, watches: &str) -> String {
    format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: disabled\n{extra}    watches:\n{watches}",
        anvil.url()
    )
}

#[tokio::test]
async fn logs_are_decoded_keyed_once_and_blocks_reported() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    let sender = anvil.accounts()[0].clone();
    send(&anvil, &token, "emitTransfers(uint256)", &["3"]);
    send(
        &anvil,
        &token,
        "emitTransfer(address,address,uint256)",
        &[
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359",
            "123456789012345678901234567890",
        ],
    );
    let h = Harness::new().await;
    let yaml = chain_yaml(
        &anvil,
        "    start_block: 1\n",
        &format!("      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n"),
    );
    let mut w = h.watcher(&yaml).await;
    catch_up(&mut w).await;

    let head = head(&anvil);
    let blocks = h.events_of("chain.block.observed").await;
    assert_eq!(blocks.len() as u64, head, "one event per block 1..={head}");
    for (i, b) in blocks.iter().enumerate() {
        let p: ChainBlockObserved = b.payload().unwrap();
        assert_eq!(p.number, i as u64 + 1);
        assert_eq!(b.key, format!("block:31337:{:012}:{}", p.number, p.hash));
        assert_eq!(b.chain_id, Some(31337));
        assert_eq!(b.source, "watcher");
    }

    let logs = h.events_of("chain.log.observed").await;
    assert_eq!(logs.len(), 4);
    let decoded: Vec<ChainLogObserved> = logs.iter().map(|e| e.payload().unwrap()).collect();
    for (e, p) in logs.iter().zip(&decoded) {
        assert_eq!(
            e.key,
            format!(
                "log:31337:{:012}:{}:{}",
                p.block_number, p.block_hash, p.log_index
            )
        );
        assert_eq!(p.event, "Transfer");
        assert_eq!(p.signature, "Transfer(address,address,uint256)");
        assert_eq!(p.watch.as_deref(), Some("tokens"));
        assert_eq!(p.address, checksum(&token));
        assert!(!p.removed);
    }
    // emitTransfers(3): from the sender to 0x1000+i, value block*1000+i.
    for (i, p) in decoded[..3].iter().enumerate() {
        assert_eq!(p.args["from"], json!(checksum(&sender)));
        assert_eq!(
            p.args["to"],
            json!(checksum(&format!("0x{:040x}", 0x1000 + i)))
        );
        assert_eq!(
            p.args["value"],
            json!((p.block_number * 1000 + i as u64).to_string())
        );
        assert_eq!(p.log_index, i as u64);
    }
    // EIP-55 vectors, and a value beyond 2^53 as a decimal string.
    assert_eq!(
        decoded[3].args["from"],
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    );
    assert_eq!(
        decoded[3].args["to"],
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
    );
    assert_eq!(decoded[3].args["value"], "123456789012345678901234567890");

    // Again, and after a restart: nothing new, nothing doubled.
    let before = h.events().await.len();
    assert_eq!(catch_up(&mut w).await, vec![Step::Idle]);
    drop(w);
    let mut again = h.watcher(&yaml).await;
    assert_eq!(again.cursor().map(|c| c.0), Some(head));
    assert_eq!(catch_up(&mut again).await, vec![Step::Idle]);
    assert_eq!(h.events().await.len(), before);

    // New blocks continue from the cursor, with no gap.
    send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
    catch_up(&mut again).await;
    assert_eq!(h.events_of("chain.log.observed").await.len(), 6);
    let blocks = h.events_of("chain.block.observed").await;
    let numbers: Vec<u64> = blocks
        .iter()
        .map(|b| b.payload::<ChainBlockObserved>().unwrap().number)
        .collect();
    assert_eq!(numbers, (1..=head + 1).collect::<Vec<_>>());
}

#[tokio::test]
async fn confirmations_hold_back_the_newest_blocks() {
    let anvil = Anvil::start();
    mine(&anvil, 10);
    let h = Harness::new().await;
    let token = anvil.deploy_fixture("TransferEmitter");
    let yaml = chain_yaml(
        &anvil,
        "    start_block: 1\n    finality: 3\n",
        &format!("      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n"),
    );
    let mut w = h.watcher(&yaml).await;
    catch_up(&mut w).await;
    let head = head(&anvil);
    assert_eq!(w.cursor().map(|c| c.0), Some(head - 3));
    assert_eq!(
        h.events_of("chain.block.observed").await.len() as u64,
        head - 3
    );
}

/// Far behind the head, the watcher takes blocks in bulk (several eth_getLogs ranges in
/// flight, each range written in chunks as it is decoded); a provider that refuses large
/// ranges gets them split.
#[tokio::test]
async fn bulk_catch_up_is_complete_in_order_and_splits_refused_ranges() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    for _ in 0..30 {
        send(&anvil, &token, "emitTransfers(uint256)", &["5"]);
    }
    mine(&anvil, 40);
    let limit = common::proxy::RangeLimit::start(&anvil.url(), 7).await;
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: disabled\n    start_block: 1\n    reorg_window: 8\n    max_block_range: 50\n    concurrency: 3\n    blocks: true\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n",
        limit.url()
    );
    let mut w = h.watcher(&yaml).await;
    // A range's 5 to 35 events go to the log in several writes.
    w.set_write_chunk(4);
    catch_up(&mut w).await;
    assert!(limit.refused() > 0, "the proxy refused some ranges");
    // Block events too, every block once, each before its logs, all in chain order.
    let mut order = Vec::new();
    let mut blocks = 0;
    for e in h.events().await {
        match e.event_type.as_str() {
            "chain.block.observed" => {
                blocks += 1;
                order.push((e.payload::<ChainBlockObserved>().unwrap().number, 0));
            }
            "chain.log.observed" => {
                let l = e.payload::<ChainLogObserved>().unwrap();
                order.push((l.block_number, l.log_index + 1));
            }
            _ => {}
        }
    }
    assert_eq!(blocks, head(&anvil), "blocks 1..=head");
    assert!(
        order.windows(2).all(|p| p[0] < p[1]),
        "in chain order, no duplicate: {order:?}"
    );
    let logs: Vec<ChainLogObserved> = h.logs().await;
    assert_eq!(logs.len(), 150);
    let mut expected = Vec::new();
    for p in &logs {
        expected.push((p.block_number, p.log_index));
    }
    let mut sorted = expected.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(expected, sorted, "in chain order, no duplicate");
    for p in &logs {
        let i = p.log_index;
        assert_eq!(
            p.args["value"],
            json!((p.block_number * 1000 + i).to_string())
        );
    }
    assert_eq!(w.cursor().map(|c| c.0), Some(head(&anvil)));
}

/// anvil tags `safe` 32 blocks and `finalized` 64 blocks below its head.
#[tokio::test]
async fn safe_and_finalized_tags_follow_the_node() {
    let anvil = Anvil::start();
    mine(&anvil, 200);
    let token = anvil.deploy_fixture("TransferEmitter");
    for (tag, depth) in [("safe", 32), ("finalized", 64)] {
        let h = Harness::new().await;
        let yaml = chain_yaml(
            &anvil,
            &format!("    start_block: 1\n    finality: {tag}\n"),
            &format!("      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n"),
        );
        let mut w = h.watcher(&yaml).await;
        catch_up(&mut w).await;
        assert_eq!(w.cursor().map(|c| c.0), Some(head(&anvil) - depth), "{tag}");
    }
}

/// Asked to stop in the middle of a bulk catch-up, the watcher finishes the range in hand and
/// records it: the log holds exactly the logs of the blocks up to the recorded cursor, none
/// of a range cut short (written in chunks of 4 events here, so a range is several writes).
#[tokio::test]
async fn a_stop_during_bulk_catch_up_leaves_no_unrecorded_range() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    for _ in 0..80 {
        send(&anvil, &token, "emitTransfers(uint256)", &["4"]);
    }
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: disabled\n    start_block: 1\n    reorg_window: 8\n    max_block_range: 4\n    concurrency: 1\n    blocks: false\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n",
        anvil.url()
    );
    let mut w = h.watcher(&yaml).await;
    w.set_write_chunk(4);
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(w.run(stop.clone()));
    // Stop as soon as the first events are in the log.
    while h.events_of("chain.log.observed").await.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    stop.cancel();
    run.await.unwrap();

    let cursor = h
        .watcher(&yaml)
        .await
        .cursor()
        .expect("a range was recorded")
        .0;
    assert!(
        cursor < head(&anvil) - 8,
        "stopped part-way: cursor {cursor}"
    );
    let logs: Vec<ChainLogObserved> = h.logs().await;
    assert!(
        logs.iter().all(|l| l.block_number <= cursor),
        "no log beyond the recorded cursor {cursor}: {:?}",
        logs.iter().map(|l| l.block_number).max()
    );
    // The token was deployed in block 1; each later block up to the cursor has its 4 logs.
    assert_eq!(logs.len() as u64, 4 * (cursor - 1), "cursor {cursor}");
}
