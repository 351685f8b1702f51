//! The anvil helper and the chain fixtures, against a real anvil node (installed by
//! `scripts/install-test-deps`). Calls are ABI-encoded by hand here: the project's alloy-based
//! client lives elsewhere, and these tests only prove the fixtures behave as documented.

use serde_json::{json, Value};
use steward_testkit::{fixture_artifact, fixture_names, Anvil};

const FIXTURES: [&str; 12] = [
    "MockAllocationManager",
    "MockCSModule",
    "MockERC20",
    "MockFeedProxy",
    "MockGovernor",
    "MockLendingPool",
    "MockNodeOperatorsRegistry",
    "MockPriceFeed",
    "MockStakingRouter",
    "Multicall3Compatible",
    "OperatorRegistry",
    "TransferEmitter",
];

/// $2,000, $3,000 and $3,100 with 8 decimals.
const USD_2000: u128 = 2_000 * 100_000_000;
const USD_3000: u128 = 3_000 * 100_000_000;
const USD_3100: u128 = 3_100 * 100_000_000;

// Mainnet topic0 of the Aave v3 Pool events and of ERC-20 Transfer.
const TOPIC_BORROW: &str = "0xb3d084820fb1a9decffb176436bd02558d15fac9b0ddfed8c465bc7359d7dce0";
const TOPIC_REPAY: &str = "0xa534c8dbe71f871f9f3530e97a74601fea17b426cae02e1c5aee42c96c784051";
const TOPIC_LIQUIDATION_CALL: &str =
    "0xe413a321e8681d831f4dbccbca790d2952b56f977908e45be37335533e005286";
const TOPIC_RESERVE_DATA_UPDATED: &str =
    "0x804c9b842b2748a22bb64b345453a3de7ca54a6ca45ce00d415894979e22897a";
const TOPIC_TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

// ---- hand-rolled ABI helpers ---------------------------------------------------------------

fn keccak_text(anvil: &Anvil, text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    anvil
        .rpc("web3_sha3", json!([format!("0x{hex}")]))
        .as_str()
        .unwrap()
        .to_string()
}

/// 4-byte selector of `sig` as 8 hex digits, no 0x.
fn selector(anvil: &Anvil, sig: &str) -> String {
    keccak_text(anvil, sig)[2..10].to_string()
}

fn w_u(n: u128) -> String {
    format!("{n:064x}")
}

fn w_addr(a: &str) -> String {
    format!("{:0>64}", a.trim_start_matches("0x").to_lowercase())
}

fn calldata(anvil: &Anvil, sig: &str, words: &[String]) -> String {
    format!("0x{}{}", selector(anvil, sig), words.concat())
}

fn send(anvil: &Anvil, to: &str, sig: &str, words: &[String]) -> Value {
    anvil.send_transaction(json!({ "to": to, "data": calldata(anvil, sig, words) }))
}

fn call(anvil: &Anvil, to: &str, sig: &str, words: &[String]) -> Vec<String> {
    let data = calldata(anvil, sig, words);
    let out = anvil.rpc("eth_call", json!([{ "to": to, "data": data }, "latest"]));
    split_words(out.as_str().unwrap())
}

fn split_words(hex: &str) -> Vec<String> {
    let hex = hex.trim_start_matches("0x");
    assert_eq!(hex.len() % 64, 0, "not whole words: {hex}");
    (0..hex.len() / 64)
        .map(|i| hex[i * 64..(i + 1) * 64].to_string())
        .collect()
}

fn word_u(w: &str) -> u128 {
    let w = w.trim_start_matches("0x");
    assert!(
        w.len() <= 32 || w[..w.len() - 32].chars().all(|c| c == '0'),
        "word {w} > u128"
    );
    u128::from_str_radix(&w[w.len().saturating_sub(32)..], 16).unwrap()
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn logs(receipt: &Value) -> &Vec<Value> {
    receipt["logs"].as_array().unwrap()
}

// ---- the node --------------------------------------------------------------------------------

#[test]
fn anvil_starts_and_answers_chain_id_and_block_number() {
    let anvil = Anvil::start();
    assert_eq!(anvil.rpc("eth_chainId", json!([])), "0x7a69"); // 31337
    assert_eq!(anvil.rpc("eth_blockNumber", json!([])), "0x0");
    assert_eq!(anvil.url(), format!("http://127.0.0.1:{}", anvil.port()));
    assert_eq!(anvil.ws_url(), format!("ws://127.0.0.1:{}", anvil.port()));
    assert_eq!(anvil.accounts().len(), 10);

    let custom = Anvil::builder().chain_id(4242).spawn();
    assert_eq!(custom.rpc("eth_chainId", json!([])), "0x1092");
}

#[test]
fn evm_mine_advances_the_block_number() {
    let anvil = Anvil::start();
    anvil.rpc("evm_mine", json!([]));
    assert_eq!(hex_u64(&anvil.rpc("eth_blockNumber", json!([]))), 1);
    anvil.rpc("anvil_mine", json!(["0x9"]));
    assert_eq!(hex_u64(&anvil.rpc("eth_blockNumber", json!([]))), 10);
}

#[test]
fn two_instances_get_different_ports_and_drop_stops_the_node() {
    let a = Anvil::start();
    let b = Anvil::start();
    assert_ne!(a.port(), b.port());
    a.rpc("evm_mine", json!([]));
    assert_eq!(
        b.rpc("eth_blockNumber", json!([])),
        "0x0",
        "the nodes share no state"
    );

    let url = a.url();
    drop(a);
    assert!(
        steward_testkit::json_rpc(&url, "eth_chainId", json!([])).is_err(),
        "the node still answers after drop"
    );
}

// ---- the fixtures ----------------------------------------------------------------------------

#[test]
fn every_fixture_artifact_parses_and_has_bytecode() {
    assert_eq!(
        fixture_names(),
        FIXTURES,
        "artifacts in shared/chain-fixtures/artifacts"
    );
    for name in FIXTURES {
        let (abi, bytecode) = fixture_artifact(name);
        assert!(!abi.as_array().unwrap().is_empty(), "{name}: empty abi");
        let hex = bytecode.strip_prefix("0x").expect("0x-prefixed bytecode");
        assert!(hex.len() > 100, "{name}: bytecode too short");
        assert!(
            hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: bytecode not hex"
        );
        assert!(
            abi.as_array()
                .unwrap()
                .iter()
                .all(|e| e["type"] != "constructor"
                    || e["inputs"].as_array().is_none_or(|i| i.is_empty())),
            "{name}: constructors take no arguments"
        );
    }
}

#[test]
fn every_fixture_deploys_on_anvil() {
    let anvil = Anvil::start();
    for name in FIXTURES {
        let (_, bytecode) = fixture_artifact(name);
        let from = anvil.accounts()[0].clone();
        let hash = anvil.rpc(
            "eth_sendTransaction",
            json!([{ "from": from, "data": bytecode }]),
        );
        let receipt = anvil.wait_for_receipt(hash.as_str().unwrap());
        assert_eq!(receipt["status"], "0x1", "{name}: deployment reverted");
        let address = receipt["contractAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no contractAddress in {receipt}"));
        let code = anvil.rpc("eth_getCode", json!([address, "latest"]));
        let code = code.as_str().unwrap();
        assert!(code.len() > 2, "{name}: no code at {address}");
    }
}

#[test]
fn multicall3_compatible_has_multicall3_selectors_and_aggregates() {
    let anvil = Anvil::start();
    let (abi, _) = fixture_artifact("Multicall3Compatible");
    let names: Vec<&str> = abi
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for (sig, sel) in [
        ("aggregate3((address,bool,bytes)[])", "82ad56cb"),
        ("aggregate((address,bytes)[])", "252dba42"),
        ("tryAggregate(bool,(address,bytes)[])", "bce38bd7"),
        ("getBlockNumber()", "42cbb15c"),
        ("getEthBalance(address)", "4d2301cc"),
    ] {
        assert_eq!(selector(&anvil, sig), sel, "{sig}");
        assert!(
            names.contains(&sig.split('(').next().unwrap()),
            "{sig} in abi"
        );
    }

    let mc = anvil.deploy_fixture("Multicall3Compatible");
    let feed = anvil.deploy_fixture("MockPriceFeed"); // no round yet: latestRoundData reverts
    anvil.rpc("anvil_mine", json!(["0x4"]));
    let block = hex_u64(&anvil.rpc("eth_blockNumber", json!([]))) as u128;

    // aggregate3([{mc, false, getBlockNumber()}, {feed, true, latestRoundData()}])
    let calls = [
        (mc.as_str(), false, selector(&anvil, "getBlockNumber()")),
        (feed.as_str(), true, selector(&anvil, "latestRoundData()")),
    ];
    let mut heads = Vec::new();
    let mut tails = Vec::new();
    let mut offset = calls.len() * 32;
    for (target, allow_failure, data) in calls {
        let padded = format!("{data:0<64}");
        let tuple = [
            w_addr(target),
            w_u(allow_failure as u128),
            w_u(0x60),
            w_u(data.len() as u128 / 2),
            padded,
        ]
        .concat();
        heads.push(w_u(offset as u128));
        offset += tuple.len() / 2;
        tails.push(tuple);
    }
    let args = [vec![w_u(0x20), w_u(heads.len() as u128)], heads, tails].concat();
    let out = call(&anvil, &mc, "aggregate3((address,bool,bytes)[])", &args);
    // Result[]: offset, length, element offsets, then (success, offset, len, data...) each.
    assert_eq!(word_u(&out[1]), 2);
    let first = 2 + word_u(&out[2]) as usize / 32;
    let second = 2 + word_u(&out[3]) as usize / 32;
    assert_eq!(word_u(&out[first]), 1, "getBlockNumber succeeded");
    assert_eq!(word_u(&out[first + 2]), 32);
    assert_eq!(word_u(&out[first + 3]), block);
    assert_eq!(
        word_u(&out[second]),
        0,
        "latestRoundData on an empty feed failed"
    );
}

#[test]
fn lending_pool_emits_aave_v3_events_and_enforces_the_close_factor() {
    let anvil = Anvil::start();
    let pool = anvil.deploy_fixture("MockLendingPool");
    let (user, coll, debt) = (
        "0x00000000000000000000000000000000000000aa",
        "0x00000000000000000000000000000000000000c0",
        "0x00000000000000000000000000000000000000d0",
    );

    // No position: HF is type(uint256).max, as in Aave.
    let data = call(
        &anvil,
        &pool,
        "getUserAccountData(address)",
        &[w_addr(user)],
    );
    assert_eq!(data.len(), 6);
    assert_eq!(data[5], "f".repeat(64));

    let r = send(
        &anvil,
        &pool,
        "setReserveData(address,uint256,uint256,uint256,uint256,uint256)",
        &[w_addr(debt), w_u(1), w_u(2), w_u(3), w_u(4), w_u(5)],
    );
    assert_eq!(logs(&r)[0]["topics"][0], TOPIC_RESERVE_DATA_UPDATED);

    let r = send(
        &anvil,
        &pool,
        "borrow(address,uint256,uint256,uint16,address)",
        &[w_addr(debt), w_u(1000), w_u(2), w_u(0), w_addr(user)],
    );
    assert_eq!(logs(&r)[0]["topics"][0], TOPIC_BORROW);
    let r = send(
        &anvil,
        &pool,
        "repay(address,uint256,uint256,address)",
        &[w_addr(debt), w_u(0), w_u(2), w_addr(user)],
    );
    assert_eq!(logs(&r)[0]["topics"][0], TOPIC_REPAY);

    send(
        &anvil,
        &pool,
        "setBalances(address,address,uint256,uint256)",
        &[w_addr(coll), w_addr(user), w_u(1_000_000), w_u(0)],
    );
    send(
        &anvil,
        &pool,
        "setBalances(address,address,uint256,uint256)",
        &[w_addr(debt), w_addr(user), w_u(0), w_u(1000)],
    );
    let liquidate = |anvil: &Anvil| {
        calldata(
            anvil,
            "liquidationCall(address,address,address,uint256,bool)",
            &[
                w_addr(coll),
                w_addr(debt),
                w_addr(user),
                w_u(1_000_000),
                w_u(0),
            ],
        )
    };
    let set_hf = |anvil: &Anvil, hf: u128| {
        send(
            anvil,
            &pool,
            "setHealthFactor(address,uint256)",
            &[w_addr(user), w_u(hf)],
        );
    };

    // HF >= 1: not liquidatable.
    set_hf(&anvil, 1_000_000_000_000_000_000);
    let from = anvil.accounts()[0].clone();
    // anvil either refuses it at gas estimation or mines it reverted.
    let sent = anvil.try_rpc(
        "eth_sendTransaction",
        json!([{ "from": from, "to": pool, "data": liquidate(&anvil) }]),
    );
    if let Ok(hash) = sent {
        let receipt = anvil.wait_for_receipt(hash.as_str().unwrap());
        assert_eq!(
            receipt["status"], "0x0",
            "liquidation at HF 1.0 went through"
        );
    }

    // 0.95 < HF < 1: at most half of the debt.
    set_hf(&anvil, 970_000_000_000_000_000);
    let r = anvil.send_transaction(json!({ "to": pool, "data": liquidate(&anvil) }));
    let log = &logs(&r)[0];
    assert_eq!(log["topics"][0], TOPIC_LIQUIDATION_CALL);
    assert_eq!(log["topics"][3], format!("0x{}", w_addr(user)));
    let words = split_words(log["data"].as_str().unwrap());
    assert_eq!(word_u(&words[0]), 500, "debtToCover capped at 50%");
    assert_eq!(word_u(&words[1]), 525, "collateral with a 5% bonus");

    // HF <= 0.95: all of the remaining debt.
    set_hf(&anvil, 900_000_000_000_000_000);
    let r = anvil.send_transaction(json!({ "to": pool, "data": liquidate(&anvil) }));
    let words = split_words(logs(&r)[0]["data"].as_str().unwrap());
    assert_eq!(word_u(&words[0]), 500, "the remaining 100%");
    let left = call(
        &anvil,
        &pool,
        "debtBalance(address,address)",
        &[w_addr(debt), w_addr(user)],
    );
    assert_eq!(word_u(&left[0]), 0);
}

#[test]
fn price_feed_proxy_forwards_and_switches_silently() {
    let anvil = Anvil::start();
    let feed_a = anvil.deploy_fixture("MockPriceFeed");
    let feed_b = anvil.deploy_fixture("MockPriceFeed");
    let proxy = anvil.deploy_fixture("MockFeedProxy");

    let r = send(&anvil, &feed_a, "setAnswer(int256)", &[w_u(USD_2000)]);
    assert_eq!(logs(&r).len(), 2, "NewRound and AnswerUpdated");
    send(&anvil, &feed_b, "setAnswer(int256)", &[w_u(USD_3000)]);
    send(&anvil, &feed_b, "setAnswer(int256)", &[w_u(USD_3100)]);

    let r = send(&anvil, &proxy, "setAggregator(address)", &[w_addr(&feed_a)]);
    assert!(logs(&r).is_empty(), "switching aggregators emits nothing");
    let round = call(&anvil, &proxy, "latestRoundData()", &[]);
    assert_eq!(round.len(), 5);
    assert_eq!(word_u(&round[0]), 1);
    assert_eq!(word_u(&round[1]), USD_2000);
    assert_eq!(word_u(&call(&anvil, &proxy, "decimals()", &[])[0]), 8);

    let r = send(&anvil, &proxy, "setAggregator(address)", &[w_addr(&feed_b)]);
    assert!(logs(&r).is_empty());
    let round = call(&anvil, &proxy, "latestRoundData()", &[]);
    assert_eq!(word_u(&round[0]), 2);
    assert_eq!(word_u(&round[1]), USD_3100);
    let agg = call(&anvil, &proxy, "aggregator()", &[]);
    assert_eq!(agg[0], w_addr(&feed_b));
}

#[test]
fn operator_registry_lists_operators_and_stakes() {
    let anvil = Anvil::start();
    let reg = anvil.deploy_fixture("OperatorRegistry");
    let (op1, op2) = (
        "0x0000000000000000000000000000000000000001",
        "0x0000000000000000000000000000000000000002",
    );
    send(
        &anvil,
        &reg,
        "addOperator(address,uint256)",
        &[w_addr(op1), w_u(100)],
    );
    send(
        &anvil,
        &reg,
        "addOperator(address,uint256)",
        &[w_addr(op2), w_u(300)],
    );
    let r = send(
        &anvil,
        &reg,
        "setStake(address,uint256)",
        &[w_addr(op1), w_u(50)],
    );
    assert_eq!(logs(&r).len(), 1);
    assert_eq!(
        logs(&r)[0]["topics"][0],
        keccak_text(&anvil, "StakeChanged(address,uint256,uint256)")
    );
    let out = call(&anvil, &reg, "getOperators()", &[]);
    // (address[], uint256[]): two offsets, then each array as length + items.
    assert_eq!(word_u(&out[2]), 2);
    assert_eq!(out[3], w_addr(op1));
    assert_eq!(out[4], w_addr(op2));
    assert_eq!(word_u(&out[5]), 2);
    assert_eq!((word_u(&out[6]), word_u(&out[7])), (50, 300));
    assert_eq!(word_u(&call(&anvil, &reg, "totalStake()", &[])[0]), 350);
}

#[test]
fn lido_target_limit_events_share_topic0_with_opposite_data_order() {
    let anvil = Anvil::start();
    let nor = anvil.deploy_fixture("MockNodeOperatorsRegistry");
    let csm = anvil.deploy_fixture("MockCSModule");
    let sig = "updateTargetValidatorsLimits(uint256,uint256,uint256)";
    // operator 7, mode 2 (forced), limit 100
    let args = [w_u(7), w_u(2), w_u(100)];
    let from_nor = send(&anvil, &nor, sig, &args);
    let from_csm = send(&anvil, &csm, sig, &args);
    let (a, b) = (&logs(&from_nor)[0], &logs(&from_csm)[0]);

    let topic0 = keccak_text(
        &anvil,
        "TargetValidatorsCountChanged(uint256,uint256,uint256)",
    );
    assert_eq!(a["topics"][0], topic0);
    assert_eq!(b["topics"][0], topic0);
    assert_eq!(a["topics"][1], format!("0x{}", w_u(7)));
    assert_eq!(b["topics"][1], format!("0x{}", w_u(7)));
    let nor_data = split_words(a["data"].as_str().unwrap());
    let csm_data = split_words(b["data"].as_str().unwrap());
    assert_eq!(
        (word_u(&nor_data[0]), word_u(&nor_data[1])),
        (100, 2),
        "NOR: (count, mode)"
    );
    assert_eq!(
        (word_u(&csm_data[0]), word_u(&csm_data[1])),
        (2, 100),
        "CSM: (mode, count)"
    );
}

#[test]
fn transfer_emitter_emits_n_erc20_transfers_in_one_transaction() {
    let anvil = Anvil::start();
    let emitter = anvil.deploy_fixture("TransferEmitter");
    let r = send(&anvil, &emitter, "emitTransfers(uint256)", &[w_u(20)]);
    let logs = logs(&r);
    assert_eq!(logs.len(), 20);
    let block = hex_u64(&r["blockNumber"]) as u128;
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log["topics"][0], TOPIC_TRANSFER);
        assert_eq!(log["topics"][2], format!("0x{}", w_u(0x1000 + i as u128)));
        assert_eq!(
            word_u(log["data"].as_str().unwrap()),
            block * 1000 + i as u128
        );
    }
}
