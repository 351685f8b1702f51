//! Risk and rebalancing end to end, in the `steward` process against a real anvil: the
//! watcher's polls judged by the risk service, checked against the mock pool's own
//! liquidation rules; an operator pushed above its cap, assessed, planned and proposed as the
//! Safe calls that lower its target limit.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::U256;
use serde_json::{json, Value};
use steward_chain::abi::{coerce_args, parse_function_signature};
use steward_events::{
    Envelope, RebalancePlanned, RebalanceRequested, RiskOperatorSetAssessed,
    RiskPositionLiquidatable, SafeProposalRequested,
};
use steward_log::EventLog;
use steward_testkit::Anvil;

mod common;

use common::*;

fn calldata(signature: &str, args: &[&str]) -> String {
    let f = parse_function_signature(signature).unwrap();
    let values = coerce_args(&f.inputs, args).unwrap();
    format!(
        "0x{}",
        alloy::primitives::hex::encode(f.abi_encode_input(&values).unwrap())
    )
}

fn send_from(anvil: &Anvil, from: &str, to: &str, signature: &str, args: &[&str]) -> Value {
    anvil.send_transaction(json!({ "from": from, "to": to, "data": calldata(signature, args) }))
}

async fn wait_for(
    log: &dyn EventLog,
    event_type: &str,
    n: usize,
    within: Duration,
) -> Vec<Envelope> {
    let deadline = Instant::now() + within;
    loop {
        let found: Vec<Envelope> = log
            .read(1, &[event_type.to_owned()], 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.event)
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn up(dir: &Path, yaml: &str) -> (Running, std::net::SocketAddr) {
    let cfg = dir.join("steward.yaml");
    std::fs::write(
        &cfg,
        format!("data_dir: {}\n{yaml}", dir.join("data").display()),
    )
    .unwrap();
    let addr = free_addr();
    let mut run = spawn(&mut steward(&[
        "up",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ]));
    wait_ready(addr, &mut run.child);
    (run, addr)
}

#[tokio::test]
async fn liquidatable_positions_agree_with_the_pools_own_close_factor() {
    let anvil = Anvil::start();
    let multicall = anvil.deploy_fixture("Multicall3Compatible");
    let pool = anvil.deploy_fixture("MockLendingPool");
    let accounts = anvil.accounts();
    let (user, liquidator) = (accounts[2].clone(), accounts[3].clone());
    let (collateral, debt) = (
        "0x00000000000000000000000000000000000000c1",
        "0x00000000000000000000000000000000000000d1",
    );
    send_from(
        &anvil,
        &user,
        &pool,
        "supply(address,uint256,address,uint16)",
        &[collateral, "10000", &user, "0"],
    );
    send_from(
        &anvil,
        &user,
        &pool,
        "borrow(address,uint256,uint256,uint16,address)",
        &[debt, "4000", "2", "0", &user],
    );
    // Between 0.95 and 1: liquidatable, half the debt at most.
    send_from(
        &anvil,
        &user,
        &pool,
        "setHealthFactor(address,uint256)",
        &[&user, "970000000000000000"],
    );

    let dir = tempfile::tempdir().unwrap();
    let (mut run, _) = up(
        dir.path(),
        &format!(
            "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    poll_interval: 200ms\n    start_block: 1\n    multicall: \"{multicall}\"\n    watches:\n      - {{name: aave, pack: aave-v3-pool, address: \"{pool}\"}}\n",
            anvil.url()
        ),
    );
    let log =
        steward_log::embedded::EmbeddedLog::open(&dir.path().join("data/events.db"), "steward")
            .await
            .unwrap();
    let found = wait_for(
        &log,
        "risk.position.liquidatable",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(found.len(), 1, "{}", run.stderr());
    let f: RiskPositionLiquidatable = found[0].payload().unwrap();
    assert_eq!(f.user.to_ascii_lowercase(), user.to_ascii_lowercase());
    assert_eq!(f.close_factor_bps, 5000);
    assert_eq!(f.max_debt_to_cover_base, "2000");
    assert_eq!(f.expected_collateral_base.as_deref(), Some("2100"));

    // The pool, asked to cover far more, covers exactly what the finding said.
    let liquidation = |anvil: &Anvil| -> (U256, U256) {
        let receipt = send_from(
            anvil,
            &liquidator,
            &pool,
            "liquidationCall(address,address,address,uint256,bool)",
            &[collateral, debt, &user, "1000000", "false"],
        );
        let log = &receipt["logs"][0];
        let data =
            alloy::primitives::hex::decode(log["data"].as_str().unwrap().trim_start_matches("0x"))
                .unwrap();
        (
            U256::from_be_slice(&data[..32]),
            U256::from_be_slice(&data[32..64]),
        )
    };
    let (covered, seized) = liquidation(&anvil);
    assert_eq!(covered.to_string(), f.max_debt_to_cover_base);
    assert_eq!(Some(seized.to_string()), f.expected_collateral_base);

    // Below 0.95 the whole remaining debt may go: a new finding, and the pool agrees again.
    send_from(
        &anvil,
        &user,
        &pool,
        "setHealthFactor(address,uint256)",
        &[&user, "900000000000000000"],
    );
    let found = wait_for(
        &log,
        "risk.position.liquidatable",
        2,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(found.len(), 2, "{}", run.stderr());
    let g: RiskPositionLiquidatable = found[1].payload().unwrap();
    assert_eq!(g.close_factor_bps, 10_000);
    assert_eq!(g.max_debt_to_cover_base, "2000");
    let (covered, _) = liquidation(&anvil);
    assert_eq!(covered.to_string(), g.max_debt_to_cover_base);
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child, Duration::from_secs(30)).success());
}

#[tokio::test]
async fn an_operator_above_its_cap_is_planned_down_and_proposed_as_target_limits() {
    let anvil = Anvil::start();
    let registry = anvil.deploy_fixture("OperatorRegistry");
    let router = anvil.deploy_fixture("MockStakingRouter");
    let ops: Vec<String> = (1..=4).map(|i| format!("0x{:040x}", 0xa0 + i)).collect();
    for (op, stake) in ops.iter().zip(["20", "20", "10", "10"]) {
        send_from(
            &anvil,
            &anvil.accounts()[0],
            &registry,
            "addOperator(address,uint256)",
            &[op, stake],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut meta = String::from("operators:\n");
    for (i, op) in ops.iter().enumerate() {
        meta.push_str(&format!("  \"{op}\": {{node_operator_id: {i}}}\n"));
    }
    std::fs::write(dir.path().join("operators.yaml"), meta).unwrap();
    let safe = "0x00000000000000000000000000000000000005af";
    let (mut run, _) = up(
        dir.path(),
        &format!(
            "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{url}\"}}]\n    poll_interval: 200ms\n    multicall: disabled\n    watches:\n      - name: registry\n        address: \"{registry}\"\n        calls:\n          - function: \"function getOperators() view returns (address[] addrs, uint256[] stakes)\"\noperator_sets:\n  - name: curated\n    chain: local\n    source: {{watch: registry, function: \"getOperators()\", operators: addrs, stakes: stakes}}\n    cap_bps: 4000\n    metadata: operators.yaml\n    propose:\n      safe: \"{safe}\"\n      encoder: lido\n      staking_router: \"{router}\"\n      module_id: 1\n      target_limit_mode: 1\n",
            url = anvil.url()
        ),
    );
    let log =
        steward_log::embedded::EmbeddedLog::open(&dir.path().join("data/events.db"), "steward")
            .await
            .unwrap();
    let first = wait_for(
        &log,
        "risk.operator_set.assessed",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(first.len(), 1, "{}", run.stderr());
    assert!(first[0]
        .payload::<RiskOperatorSetAssessed>()
        .unwrap()
        .breaches
        .is_empty());

    // Operator 1 grows to 60 of 100: above the 40% cap.
    send_from(
        &anvil,
        &anvil.accounts()[0],
        &registry,
        "setStake(address,uint256)",
        &[&ops[0], "60"],
    );
    let assessed = wait_for(
        &log,
        "risk.operator_set.assessed",
        2,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(assessed.len(), 2, "{}", run.stderr());
    let a: RiskOperatorSetAssessed = assessed[1].payload().unwrap();
    assert_eq!(a.total_stake, "100");
    assert_eq!(a.breaches.len(), 1, "{:?}", a.breaches);
    assert!(
        a.breaches[0].contains("holds 60.00% of the stake, above its cap of 40.00%"),
        "{:?}",
        a.breaches
    );

    // What a playbook would do: ask for a rebalance, caused by the assessment.
    let request = assessed[1].derive(
        "runner",
        "playbook:lido-cap/request",
        &RebalanceRequested {
            operator_set: "curated".into(),
            policy: "default".into(),
            reason: Some("an operator is above the cap".into()),
        },
    );
    log.append(std::slice::from_ref(&request)).await.unwrap();
    let planned = wait_for(&log, "rebalance.planned", 1, Duration::from_secs(60)).await;
    assert_eq!(planned.len(), 1, "{}", run.stderr());
    let p: RebalancePlanned = planned[0].payload().unwrap();
    assert_eq!(
        planned[0].correlation_id, assessed[1].correlation_id,
        "one story"
    );
    assert_eq!(p.total_moved, "20");
    assert!(p.unmet.is_empty(), "{:?}", p.unmet);
    assert_eq!(p.method.as_deref(), Some("exact"));
    let target = |op: &str| {
        p.target
            .iter()
            .find(|t| t.operator.eq_ignore_ascii_case(op))
            .unwrap()
            .stake
            .clone()
    };
    assert_eq!(target(&ops[0]), "40");
    // The smallest grow first: both 10s to 20.
    assert_eq!(
        (target(&ops[2]).as_str(), target(&ops[3]).as_str()),
        ("20", "20")
    );

    let proposals = wait_for(&log, "safe.proposal.requested", 1, Duration::from_secs(30)).await;
    assert_eq!(proposals.len(), 1);
    let prop: SafeProposalRequested = proposals[0].payload().unwrap();
    assert_eq!(prop.safe, safe);
    assert_eq!(prop.calls.len(), 1);
    assert!(prop.calls[0].to.eq_ignore_ascii_case(&router));
    let f =
        Function::parse("updateTargetValidatorsLimits(uint256,uint256,uint256,uint256)").unwrap();
    let data = alloy::primitives::hex::decode(prop.calls[0].data.trim_start_matches("0x")).unwrap();
    assert_eq!(&data[..4], f.selector().as_slice());
    let args = f.abi_decode_input(&data[4..]).unwrap();
    assert_eq!(
        args,
        vec![
            DynSolValue::Uint(U256::from(1), 256),
            DynSolValue::Uint(U256::from(0), 256),
            DynSolValue::Uint(U256::from(1), 256),
            DynSolValue::Uint(U256::from(40), 256),
        ],
        "module 1, node operator 0, soft limit, 40 validators"
    );
    // The call works on the router as encoded (the Safe would send exactly this).
    let router_module = anvil.deploy_fixture("MockNodeOperatorsRegistry");
    send_from(
        &anvil,
        &anvil.accounts()[0],
        &router,
        "setStakingModule(uint256,address)",
        &["1", &router_module],
    );
    anvil.send_transaction(json!({ "to": router, "data": prop.calls[0].data }));
    signal(&run.child, "TERM");
    assert!(wait_exit(&mut run.child, Duration::from_secs(30)).success());
}
