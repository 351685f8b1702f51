//! Contract state and balances on a real anvil: Multicall3 batching (RPC requests counted at
//! a proxy), reports on change, borrowers learned from events, Chainlink aggregators
//! re-resolved, schedules.

mod common;

use std::time::Duration;

use common::proxy::{Behaviour, Proxy};
use common::*;
use serde_json::{json, Value};
use steward_events::{ChainLogObserved, ChainStateObserved};
use steward_testkit::Anvil;
use tokio_util::sync::CancellationToken;

fn states(events: &[steward_events::Envelope]) -> Vec<ChainStateObserved> {
    events
        .iter()
        .filter(|e| e.event_type == "chain.state.observed")
        .map(|e| e.payload().unwrap())
        .collect()
}

fn aave_yaml(url: &str, multicall: &str, pool: &str, borrowers: &[String]) -> String {
    format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{url}\"}}]\n    multicall: {multicall}\n    blocks: false\n    watches:\n      - name: aave\n        pack: aave-v3-pool\n        address: \"{pool}\"\n        params:\n          borrowers: [{}]\n",
        borrowers.iter().map(|b| format!("\"{b}\"")).collect::<Vec<_>>().join(", ")
    )
}

fn set_account(anvil: &Anvil, pool: &str, user: &str, hf: &str) {
    send(
        anvil,
        pool,
        "setUserAccountData(address,uint256,uint256,uint256,uint256,uint256,uint256)",
        &[user, "1000000", "500000", "100000", "8250", "8000", hf],
    );
}

#[tokio::test]
async fn positions_are_polled_in_one_multicall_per_block_and_reported_when_they_change() {
    let anvil = Anvil::start();
    let multicall = anvil.deploy_fixture("Multicall3Compatible");
    let pool = anvil.deploy_fixture("MockLendingPool");
    let users: Vec<String> = (1..=3).map(|i| format!("0x{:040x}", 0xa000 + i)).collect();
    for (i, u) in users.iter().enumerate() {
        set_account(
            &anvil,
            &pool,
            u,
            &format!("{}", 1_100_000_000_000_000_000u128 + i as u128),
        );
    }
    let proxy = Proxy::start(&anvil.url(), Behaviour::default()).await;
    let h = Harness::new().await;
    let mut w = h
        .watcher(&aave_yaml(
            &proxy.url(),
            &format!("\"{multicall}\""),
            &pool,
            &users,
        ))
        .await;
    catch_up(&mut w).await;
    assert_eq!(
        proxy.count("eth_call"),
        1,
        "three positions, one aggregate3"
    );
    let s = states(&h.events().await);
    assert_eq!(s.len(), 3);
    for (i, u) in users.iter().enumerate() {
        let p = s
            .iter()
            .find(|p| p.args == vec![json!(checksum(u))])
            .unwrap();
        assert_eq!(p.watch, "aave");
        assert_eq!(p.address, checksum(&pool));
        assert_eq!(p.function, "getUserAccountData(address)");
        assert_eq!(
            p.value["healthFactor"],
            json!(format!("{}", 1_100_000_000_000_000_000u128 + i as u128))
        );
        assert_eq!(p.value["totalCollateralBase"], "1000000");
        assert_eq!(p.previous, None);
    }

    // One position changes: one report, with the previous value; still one call per block.
    send(
        &anvil,
        &pool,
        "setHealthFactor(address,uint256)",
        &[&users[1], "990000000000000000"],
    );
    let calls_before = proxy.count("eth_call");
    catch_up(&mut w).await;
    assert_eq!(proxy.count("eth_call") - calls_before, 1);
    let s = states(&h.events().await);
    assert_eq!(s.len(), 4);
    let last = &s[3];
    assert_eq!(last.args, vec![json!(checksum(&users[1]))]);
    assert_eq!(last.value["healthFactor"], "990000000000000000");
    assert_eq!(
        last.previous.as_ref().unwrap()["healthFactor"],
        "1100000000000000001"
    );

    // A borrower nobody configured borrows: learned from the Borrow event and polled in the
    // same block.
    let newcomer = format!("0x{:040x}", 0xb001);
    send(
        &anvil,
        &pool,
        "borrow(address,uint256,uint256,uint16,address)",
        &[
            "0x00000000000000000000000000000000000000cc",
            "777",
            "2",
            "0",
            &newcomer,
        ],
    );
    catch_up(&mut w).await;
    let events = h.events().await;
    let borrow: ChainLogObserved = events
        .iter()
        .find(|e| e.event_type == "chain.log.observed")
        .unwrap()
        .payload()
        .unwrap();
    assert_eq!(borrow.event, "Borrow");
    assert_eq!(borrow.args["onBehalfOf"], json!(checksum(&newcomer)));
    assert_eq!(borrow.args["amount"], "777");
    assert_eq!(borrow.args["interestRateMode"], "2");
    let s = states(&events);
    let learned = s
        .iter()
        .find(|p| p.args == vec![json!(checksum(&newcomer))])
        .unwrap();
    assert_eq!(learned.block_number, borrow.block_number);
    assert_eq!(learned.value["totalDebtBase"], "777");

    // Learned borrowers survive a restart.
    drop(w);
    let mut again = h
        .watcher(&aave_yaml(
            &proxy.url(),
            &format!("\"{multicall}\""),
            &pool,
            &users,
        ))
        .await;
    send(
        &anvil,
        &pool,
        "setHealthFactor(address,uint256)",
        &[&newcomer, "5"],
    );
    catch_up(&mut again).await;
    let s = states(&h.events().await);
    let last = s.last().unwrap();
    assert_eq!(last.args, vec![json!(checksum(&newcomer))]);
    assert_eq!(last.value["healthFactor"], "5");
}

#[tokio::test]
async fn without_multicall_each_position_is_its_own_request() {
    let anvil = Anvil::start();
    let pool = anvil.deploy_fixture("MockLendingPool");
    let users: Vec<String> = (1..=4).map(|i| format!("0x{:040x}", 0xa000 + i)).collect();
    for u in &users {
        set_account(&anvil, &pool, u, "2000000000000000000");
    }
    let proxy = Proxy::start(&anvil.url(), Behaviour::default()).await;
    let h = Harness::new().await;
    let mut w = h
        .watcher(&aave_yaml(&proxy.url(), "disabled", &pool, &users))
        .await;
    catch_up(&mut w).await;
    assert_eq!(proxy.count("eth_call"), 4);
    assert_eq!(states(&h.events().await).len(), 4);
}

#[tokio::test]
async fn chainlink_aggregators_are_re_resolved_when_the_proxy_swaps_them() {
    let anvil = Anvil::start();
    let multicall = anvil.deploy_fixture("Multicall3Compatible");
    let a = anvil.deploy_fixture("MockPriceFeed");
    let b = anvil.deploy_fixture("MockPriceFeed");
    let feed = anvil.deploy_fixture("MockFeedProxy");
    send(&anvil, &feed, "setAggregator(address)", &[&a]);
    send(&anvil, &a, "setAnswer(int256)", &["100000000"]);
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: \"{multicall}\"\n    blocks: false\n    watches:\n      - name: eth-usd\n        pack: chainlink-feed\n        address: \"{feed}\"\n",
        anvil.url()
    );
    let mut w = h.watcher(&yaml).await;
    catch_up(&mut w).await;
    let s = states(&h.events().await);
    let agg = s.iter().find(|p| p.function == "aggregator()").unwrap();
    assert_eq!(agg.value["0"], json!(checksum(&a)));
    let round = s
        .iter()
        .find(|p| p.function == "latestRoundData()")
        .unwrap();
    assert_eq!(round.value["answer"], "100000000");
    assert_eq!(
        s.iter().find(|p| p.function == "decimals()").unwrap().value["0"],
        "8"
    );

    // A's answers are decoded while A is behind the proxy.
    send(&anvil, &a, "setAnswer(int256)", &["200000000"]);
    catch_up(&mut w).await;
    // The proxy swaps to B silently; A keeps answering, B takes over.
    send(&anvil, &feed, "setAggregator(address)", &[&b]);
    catch_up(&mut w).await;
    send(&anvil, &a, "setAnswer(int256)", &["999"]);
    send(&anvil, &b, "setAnswer(int256)", &["300000000"]);
    catch_up(&mut w).await;

    let events = h.events().await;
    let logs: Vec<ChainLogObserved> = events
        .iter()
        .filter(|e| e.event_type == "chain.log.observed")
        .map(|e| e.payload().unwrap())
        .collect();
    let answers: Vec<(String, Value)> = logs
        .iter()
        .filter(|l| l.event == "AnswerUpdated")
        .map(|l| (l.address.clone(), l.args["current"].clone()))
        .collect();
    assert_eq!(
        answers,
        vec![
            (checksum(&a), json!("200000000")),
            (checksum(&b), json!("300000000")),
        ],
        "A's answer after the swap is not the feed's"
    );
    assert!(logs
        .iter()
        .any(|l| l.event == "NewRound" && l.address == checksum(&b)));
    let s = states(&events);
    let swaps: Vec<&ChainStateObserved> =
        s.iter().filter(|p| p.function == "aggregator()").collect();
    assert_eq!(swaps.len(), 2);
    assert_eq!(swaps[1].value["0"], json!(checksum(&b)));
    assert_eq!(
        swaps[1].previous.as_ref().unwrap()["0"],
        json!(checksum(&a))
    );
    let last_round = s
        .iter()
        .rfind(|p| p.function == "latestRoundData()")
        .unwrap();
    assert_eq!(last_round.value["answer"], "300000000");
}

#[tokio::test]
async fn native_and_token_balances_are_reported_on_change() {
    let anvil = Anvil::start();
    let multicall = anvil.deploy_fixture("Multicall3Compatible");
    let token = anvil.deploy_fixture("MockERC20");
    let treasury = "0x00000000000000000000000000000000000000f1";
    send(&anvil, &token, "mint(address,uint256)", &[treasury, "5000"]);
    anvil.rpc("anvil_setBalance", json!([treasury, "0x3e8"]));
    for multicall in [Some(multicall.as_str()), None] {
        let h = Harness::new().await;
        let yaml = format!(
            "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: {}\n    blocks: false\n    balances:\n      - name: treasury\n        accounts: [\"{treasury}\"]\n        tokens: [native, \"{token}\"]\n",
            anvil.url(),
            multicall.map_or("disabled".to_owned(), |m| format!("\"{m}\""))
        );
        let mut w = h.watcher(&yaml).await;
        catch_up(&mut w).await;
        let s = states(&h.events().await);
        assert_eq!(s.len(), 2, "{multicall:?}");
        let native = s.iter().find(|p| p.function == "eth_getBalance").unwrap();
        assert_eq!(native.address, checksum(treasury));
        assert_eq!(native.value["balance"], "1000");
        let erc20 = s
            .iter()
            .find(|p| p.function == "balanceOf(address)")
            .unwrap();
        assert_eq!(erc20.address, checksum(&token));
        assert_eq!(erc20.args, vec![json!(checksum(treasury))]);
        assert_eq!(erc20.value["balance"], "5000");
    }
    // A second watcher on a fresh store; a transfer in: one report, the token's.
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    blocks: false\n    multicall: \"{multicall}\"\n    balances:\n      - name: treasury\n        accounts: [\"{treasury}\"]\n        tokens: [native, \"{token}\"]\n",
        anvil.url()
    );
    let mut w = h.watcher(&yaml).await;
    catch_up(&mut w).await;
    send(&anvil, &token, "mint(address,uint256)", &[treasury, "1"]);
    catch_up(&mut w).await;
    let s = states(&h.events().await);
    assert_eq!(s.len(), 3);
    assert_eq!(s[2].value["balance"], "5001");
    assert_eq!(s[2].previous.as_ref().unwrap()["balance"], "5000");
}

#[tokio::test]
async fn scheduled_calls_run_on_their_schedule_not_on_blocks() {
    let anvil = Anvil::start();
    let pool = anvil.deploy_fixture("MockLendingPool");
    let user = "0x000000000000000000000000000000000000a001";
    set_account(&anvil, &pool, user, "3");
    let h = Harness::new().await;
    let yaml = format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: disabled\n    blocks: false\n    poll_interval: 100ms\n    watches:\n      - name: hf\n        address: \"{pool}\"\n        calls:\n          - function: \"function getUserAccountData(address user) view returns (uint256 totalCollateralBase, uint256 totalDebtBase, uint256 availableBorrowsBase, uint256 currentLiquidationThreshold, uint256 ltv, uint256 healthFactor)\"\n            args: [\"{user}\"]\n            schedule: \"* * * * * *\"\n            emit: always\n",
        anvil.url()
    );
    let mut w = h.watcher(&yaml).await;
    catch_up(&mut w).await;
    mine(&anvil, 3);
    catch_up(&mut w).await;
    assert!(
        states(&h.events().await).is_empty(),
        "blocks alone do not trigger a schedule"
    );

    let stop = CancellationToken::new();
    let run = tokio::spawn(w.run(stop.clone()));
    // A block every 400 ms, so that each firing reads a new block.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        mine(&anvil, 1);
    }
    stop.cancel();
    run.await.unwrap();
    let s = states(&h.events().await);
    assert!(s.len() >= 2, "fired about once a second: {}", s.len());
    assert!(
        s.len() <= 5,
        "not more often than the schedule: {}",
        s.len()
    );
    assert!(s.iter().all(|p| p.value["healthFactor"] == "3"));
    let blocks: std::collections::HashSet<u64> = s.iter().map(|p| p.block_number).collect();
    assert_eq!(blocks.len(), s.len(), "each firing at its own block");
}
