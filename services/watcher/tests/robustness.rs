//! Endpoints that die or lie, and logs that do not decode: the watcher carries on, loses its
//! position never, and says what happened.

mod common;

use std::collections::HashSet;

use common::proxy::{Behaviour, Proxy};
use common::*;
use steward_chain::EndpointState;
use steward_testkit::Anvil;
use steward_watcher::WatchError;

const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";

fn yaml(urls: &[String], token: &str, event: &str) -> String {
    // Earlier endpoints weigh more, so the first is preferred while it works.
    let rpc = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{{url: \"{u}\", weight: {}}}", 100 / (i + 1)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{rpc}]\n    rpc_timeout: 2s\n    rpc_cooldown: 1s\n    multicall: disabled\n    start_block: 1\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"{event}\"]\n"
    )
}

fn unique_logs(events: &[steward_events::Envelope]) -> usize {
    let keys: HashSet<&str> = events
        .iter()
        .filter(|e| e.event_type == "chain.log.observed")
        .map(|e| e.key.as_str())
        .collect();
    let all = events
        .iter()
        .filter(|e| e.event_type == "chain.log.observed")
        .count();
    assert_eq!(keys.len(), all, "no log event twice");
    all
}

#[tokio::test]
async fn an_endpoint_killed_mid_run_is_demoted_and_the_others_carry_on() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    let first = Proxy::start(&anvil.url(), Behaviour::default()).await;
    let second = Proxy::start(&anvil.url(), Behaviour::default()).await;
    let h = Harness::new().await;
    let mut w = h
        .watcher(&yaml(
            &[first.url(), second.url(), anvil.ws_url()],
            &token,
            TRANSFER,
        ))
        .await;
    for _ in 0..3 {
        send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
        catch_up(&mut w).await;
    }
    assert!(
        first.total() > 0 && second.total() == 0,
        "the heaviest endpoint carries the traffic"
    );
    first.kill();
    for _ in 0..3 {
        send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
        catch_up(&mut w).await;
    }
    assert!(second.total() > 0, "the next one took over");
    second.kill();
    for _ in 0..3 {
        send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
        catch_up(&mut w).await;
    }
    assert_eq!(unique_logs(&h.events().await), 18);
    assert_eq!(w.cursor().map(|c| c.0), Some(head(&anvil)));
    let status = w.pool().status();
    for dead in &status.endpoints[..2] {
        assert_eq!(dead.state, EndpointState::Demoted, "{status:?}");
        assert!(dead.last_error.is_some());
    }
    assert_eq!(
        status.endpoints[2].state,
        EndpointState::Healthy,
        "the WebSocket carries on"
    );
}

#[tokio::test]
async fn a_node_that_says_it_has_no_block_fails_the_step_and_loses_nothing() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
    let liar = Proxy::start(&anvil.url(), Behaviour::default()).await;
    let h = Harness::new().await;
    let mut w = h.watcher(&yaml(&[liar.url()], &token, TRANSFER)).await;
    catch_up(&mut w).await;
    let cursor = w.cursor().unwrap();

    // New blocks whose headers the node claims not to have (null), though it reports them as
    // the head.
    liar.set(Behaviour {
        null_blocks_above: Some(cursor.0),
        ..Behaviour::default()
    });
    send(&anvil, &token, "emitTransfers(uint256)", &["3"]);
    let err = w.step().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WatchError::Chain(_)), "{err:?}");
    assert!(text.contains("null"), "{text}");
    assert_eq!(w.cursor(), Some(cursor), "the position is kept");
    assert_eq!(
        unique_logs(&h.events().await),
        2,
        "nothing written for the failed step"
    );

    // The node recovers: after its cool-down it is probed, used again, and the blocks come
    // in, none missing.
    liar.set(Behaviour::default());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let _ = w.step().await; // the probe runs in the background
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    catch_up(&mut w).await;
    assert_eq!(unique_logs(&h.events().await), 5);
    assert_eq!(w.cursor().map(|c| c.0), Some(head(&anvil)));
}

#[tokio::test]
async fn a_log_that_does_not_fit_the_configured_abi_is_skipped_and_counted() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    send(&anvil, &token, "emitTransfers(uint256)", &["2"]);
    let h = Harness::new().await;
    // Same topic0 (the signature ignores `indexed`), but one indexed argument too few: the
    // logs have three topics where this ABI expects two.
    let wrong = "event Transfer(address indexed from, address to, uint256 value)";
    let mut w = h.watcher(&yaml(&[anvil.url()], &token, wrong)).await;
    catch_up(&mut w).await;
    assert_eq!(unique_logs(&h.events().await), 0);
    assert_eq!(
        w.stats()
            .undecodable
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // And the watcher carries on.
    send(&anvil, &token, "emitTransfers(uint256)", &["1"]);
    catch_up(&mut w).await;
    assert_eq!(w.cursor().map(|c| c.0), Some(head(&anvil)));
    let blocks = h.events_of("chain.block.observed").await;
    assert_eq!(blocks.len() as u64, head(&anvil));
}
