//! The risk rules on recorded observations: transitions reported once, resolutions reported,
//! numbers checked by hand, redeliveries and restarts change nothing.

use std::sync::Arc;

use serde_json::{json, Value};
use steward_config::{Config, Document, MapEnv};
use steward_events::{
    ChainStateObserved, Envelope, RiskOperatorSetAssessed, RiskOracleAggregatorChanged,
    RiskOracleDeviation, RiskOracleSequencerDown, RiskOracleStale, RiskPositionLiquidatable,
    RiskPositionNearLiquidation, RiskSafeDrift, Severity,
};
use steward_risk::Engine;

const POOL: &str = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2";
const USER: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const WAD: u128 = 1_000_000_000_000_000_000;

fn config(yaml: &str, dir: &std::path::Path) -> Arc<Config> {
    let base = format!(
        "chains:\n  - name: mainnet\n    chain_id: 1\n    rpc: [{{url: \"http://127.0.0.1:1\"}}]\n    watches:\n      - {{name: aave, pack: aave-v3-pool, address: \"{POOL}\"}}\n      - {{name: eth-a, pack: chainlink-feed, address: \"0x0000000000000000000000000000000000000a0a\"}}\n      - {{name: eth-b, pack: chainlink-feed, address: \"0x0000000000000000000000000000000000000b0b\"}}\n      - {{name: seq, pack: chainlink-feed, address: \"0x0000000000000000000000000000000000000c0c\"}}\n      - {{name: treasury, pack: safe, address: \"0x0000000000000000000000000000000000000d0d\"}}\n      - name: registry\n        address: \"0x0000000000000000000000000000000000000e0e\"\n        calls: [{{function: \"function getOperators() view returns (address[] addrs, uint256[] stakes)\"}}]\n{yaml}"
    );
    let doc = Document::parse(&base, "risk.yaml", &MapEnv::new()).unwrap();
    let check = |c: &Config, v: &mut steward_config::Validator<'_>| {
        steward_watcher::check_config(c, v);
        steward_risk::check_config(c, v);
    };
    Arc::new(
        Config::from_document_checked(&doc, dir.to_path_buf(), &check)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn observed(
    block: u64,
    watch: &str,
    address: &str,
    function: &str,
    args: Vec<Value>,
    value: Value,
) -> Envelope {
    let Value::Object(value) = value else {
        panic!()
    };
    Envelope::new(
        "watcher",
        format!("state:1:{block}:{watch}:{function}:{args:?}"),
        &ChainStateObserved {
            block_number: block,
            block_hash: format!("0x{block:064x}"),
            watch: watch.into(),
            address: address.into(),
            function: function.into(),
            args,
            value,
            previous: None,
        },
    )
    .with_chain(1)
}

fn account(block: u64, hf: u128, collateral: u128, debt: u128) -> Envelope {
    observed(
        block,
        "aave",
        POOL,
        "getUserAccountData(address)",
        vec![json!(USER)],
        json!({
            "totalCollateralBase": collateral.to_string(),
            "totalDebtBase": debt.to_string(),
            "availableBorrowsBase": "0",
            "currentLiquidationThreshold": "8250",
            "ltv": "8000",
            "healthFactor": hf.to_string(),
        }),
    )
}

fn of<T: serde::de::DeserializeOwned + steward_events::Payload>(e: &[Envelope]) -> Vec<T> {
    e.iter()
        .filter(|x| x.event_type == T::TYPE)
        .map(|x| x.payload().unwrap())
        .collect()
}

#[test]
fn a_position_goes_near_liquidatable_deeper_and_back_each_step_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "risk:\n  positions: {near_liquidation: 1.1, liquidation_bonus_bps: 10500}\n",
        dir.path(),
    );
    let mut e = Engine::new(cfg.clone()).unwrap();
    assert!(
        e.on_event(&account(10, 12 * WAD / 10, 1_000_000, 500_000))
            .is_empty(),
        "healthy"
    );

    // Into the warning band.
    let near_cause = account(11, 105 * WAD / 100, 1_000_000, 500_000);
    let out = e.on_event(&near_cause);
    let near: Vec<RiskPositionNearLiquidation> = of(&out);
    assert_eq!(near.len(), 1);
    assert!(near[0].active);
    assert_eq!(near[0].threshold, (11 * WAD / 10).to_string());
    assert_eq!(
        out[0].correlation_id, near_cause.correlation_id,
        "the story continues"
    );
    assert_eq!(out[0].causation_id, Some(near_cause.id));
    assert_eq!(out[0].chain_id, Some(1));
    // Persisting: nothing new, even redelivered.
    assert!(e
        .on_event(&account(12, 104 * WAD / 100, 1_000_000, 500_000))
        .is_empty());
    assert!(e.on_event(&near_cause).is_empty());

    // Liquidatable above 0.95: near resolved, liquidatable with a 50% close factor.
    let out = e.on_event(&account(13, 97 * WAD / 100, 1_000_000, 500_000));
    let near: Vec<RiskPositionNearLiquidation> = of(&out);
    assert_eq!(near.len(), 1);
    assert!(!near[0].active, "the warning ends");
    let liq: Vec<RiskPositionLiquidatable> = of(&out);
    assert_eq!(liq.len(), 1);
    assert!(liq[0].active);
    assert_eq!(liq[0].close_factor_bps, 5000);
    assert_eq!(liq[0].max_debt_to_cover_base, "250000");
    // 250000 × 1.05
    assert_eq!(liq[0].expected_collateral_base.as_deref(), Some("262500"));
    assert_eq!(liq[0].severity, Severity::High);
    let first_key = out
        .iter()
        .find(|x| x.event_type == "risk.position.liquidatable")
        .unwrap()
        .key
        .clone();

    // Below 0.95: the whole debt may be covered; reported again, critical.
    let out = e.on_event(&account(14, 90 * WAD / 100, 1_000_000, 500_000));
    let liq: Vec<RiskPositionLiquidatable> = of(&out);
    assert_eq!(liq.len(), 1);
    assert_eq!(liq[0].close_factor_bps, 10_000);
    assert_eq!(liq[0].max_debt_to_cover_base, "500000");
    assert_eq!(liq[0].expected_collateral_base.as_deref(), Some("525000"));
    assert_eq!(liq[0].severity, Severity::Critical);
    assert_ne!(out[0].key, first_key);
    assert!(e
        .on_event(&account(15, 89 * WAD / 100, 1_000_000, 500_000))
        .is_empty());

    // An older observation arriving late changes nothing.
    assert!(e
        .on_event(&account(12, 2 * WAD, 1_000_000, 500_000))
        .is_empty());

    // Healthy again: resolved.
    let out = e.on_event(&account(16, 2 * WAD, 1_000_000, 100_000));
    let liq: Vec<RiskPositionLiquidatable> = of(&out);
    assert_eq!(liq.len(), 1);
    assert!(!liq[0].active);

    // A restart: state written and read back, nothing reported again.
    let saved = e.take_dirty();
    let mut again = Engine::new(cfg).unwrap();
    for (k, v) in saved {
        again.restore(&k, v).unwrap();
    }
    assert!(again
        .on_event(&account(16, 2 * WAD, 1_000_000, 100_000))
        .is_empty());
    // Liquidatable again later: a new episode, a new key.
    let out = again.on_event(&account(20, 99 * WAD / 100, 1_000_000, 100_000));
    assert_eq!(of::<RiskPositionLiquidatable>(&out).len(), 1);
    assert!(out[0].key.contains(":20:"), "{}", out[0].key);
}

fn round(
    block: u64,
    watch: &str,
    address: &str,
    round: u64,
    answer: i128,
    updated: u64,
) -> Envelope {
    observed(
        block,
        watch,
        address,
        "latestRoundData()",
        vec![],
        json!({"roundId": round.to_string(), "answer": answer.to_string(), "startedAt": updated.to_string(), "updatedAt": updated.to_string(), "answeredInRound": round.to_string()}),
    )
}

const A: &str = "0x0000000000000000000000000000000000000a0a";
const B: &str = "0x0000000000000000000000000000000000000b0b";

#[test]
fn oracles_stale_deviating_jumping_and_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "risk:\n  oracles:\n    - {asset: ETH/USD, chain: mainnet, feeds: [eth-a, eth-b], heartbeat: 1h, max_deviation_bps: 100, max_round_change_bps: 1000, sequencer: seq, sequencer_grace: 30m}\n",
        dir.path(),
    );
    let mut e = Engine::new(cfg).unwrap();
    let t0 = 1_700_000_000u64;
    // Feed B reports 18 decimals, A the default 8: compared at the same scale.
    e.on_event(&observed(
        1,
        "eth-b",
        B,
        "decimals()",
        vec![],
        json!({"0": "18"}),
    ));
    assert!(e
        .on_event(&round(1, "eth-a", A, 1, 2000_00000000, t0))
        .is_empty());
    assert!(
        e.on_event(&round(1, "eth-b", B, 1, 2001 * 10i128.pow(18), t0))
            .is_empty(),
        "0.05% apart"
    );

    // B drifts 3% away: a deviation, once.
    let out = e.on_event(&round(2, "eth-b", B, 2, 2060 * 10i128.pow(18), t0 + 60));
    let d: Vec<RiskOracleDeviation> = of(&out);
    assert_eq!(d.len(), 1);
    assert!(d[0].active);
    assert_eq!(d[0].kind.as_deref(), Some("sources"));
    // median of 2000 and 2060 is 2030; each is 30/2030 = 147 bps away.
    assert_eq!(d[0].deviation_bps, 147);
    assert_eq!(d[0].median, (2030 * 10i128.pow(18)).to_string());
    assert!(e
        .on_event(&round(3, "eth-b", B, 3, 2061 * 10i128.pow(18), t0 + 120))
        .is_empty());
    // Back together: resolved.
    let out = e.on_event(&round(4, "eth-b", B, 4, 2002 * 10i128.pow(18), t0 + 180));
    let d: Vec<RiskOracleDeviation> = of(&out);
    assert_eq!(d.len(), 1);
    assert!(!d[0].active);

    // A jumps 15% in one round.
    let out = e.on_event(&round(5, "eth-a", A, 2, 2300_00000000, t0 + 240));
    let jumps: Vec<RiskOracleDeviation> = of(&out)
        .into_iter()
        .filter(|x: &RiskOracleDeviation| x.kind.as_deref() == Some("round"))
        .collect();
    assert_eq!(jumps.len(), 1);
    assert_eq!(jumps[0].deviation_bps, 1500);

    // Stale: no new round within the heartbeat.
    // B's last round is at t0 + 180, A's at t0 + 240.
    assert!(e
        .on_tick(t0 + 180 + 3599)
        .iter()
        .all(|x| x.event_type != "risk.oracle.stale"));
    let out = e.on_tick(t0 + 240 + 3601);
    let stale: Vec<RiskOracleStale> = of(&out);
    assert_eq!(stale.len(), 2, "both feeds");
    assert!(stale.iter().all(|s| s.active && s.heartbeat_secs == 3600));
    assert!(
        e.on_tick(t0 + 240 + 4000)
            .iter()
            .all(|x| x.event_type != "risk.oracle.stale"),
        "once"
    );
    let out = e.on_event(&round(6, "eth-a", A, 3, 2300_00000000, t0 + 5000));
    let stale: Vec<RiskOracleStale> = of(&out);
    assert_eq!(stale.len(), 1);
    assert!(!stale[0].active);

    // The proxy swaps its aggregator.
    e.on_event(&observed(
        7,
        "eth-a",
        A,
        "aggregator()",
        vec![],
        json!({"0": "0x00000000000000000000000000000000000000F1"}),
    ));
    let out = e.on_event(&observed(
        8,
        "eth-a",
        A,
        "aggregator()",
        vec![],
        json!({"0": "0x00000000000000000000000000000000000000F2"}),
    ));
    let swap: Vec<RiskOracleAggregatorChanged> = of(&out);
    assert_eq!(swap.len(), 1);
    assert_eq!(
        swap[0].current,
        "0x00000000000000000000000000000000000000F2"
    );

    // The sequencer goes down, comes back, and is trusted after its grace period.
    let seq = "0x0000000000000000000000000000000000000c0c";
    let now = chrono::Utc::now().timestamp() as u64;
    let out = e.on_event(&round(9, "seq", seq, 1, 1, now - 10));
    let s: Vec<RiskOracleSequencerDown> = of(&out);
    assert_eq!(
        s.len(),
        1,
        "{:?}",
        out.iter()
            .map(|x| (&x.event_type, x.data.get()))
            .collect::<Vec<_>>()
    );
    assert!(!s[0].up && s[0].active);
    assert_eq!(s[0].severity, Severity::Critical);
    let out = e.on_event(&round(10, "seq", seq, 2, 0, now - 5));
    let s: Vec<RiskOracleSequencerDown> = of(&out);
    assert_eq!(s.len(), 2, "down resolved, up-in-grace reported");
    assert!(s.iter().any(|x| x.up && x.active));
    assert!(e
        .on_tick(now + 60)
        .iter()
        .all(|x| x.event_type != "risk.oracle.sequencer_down"));
    let out = e.on_tick(now - 5 + 1801);
    let s: Vec<RiskOracleSequencerDown> = of(&out);
    assert_eq!(s.len(), 1);
    assert!(!s[0].active, "grace over");
}

#[test]
fn operator_set_metrics_breaches_and_their_end() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ops.yaml"),
        "operators:\n  \"0x00000000000000000000000000000000000000a1\": {attributes: {jurisdiction: DE}, performance: 0.99}\n  \"0x00000000000000000000000000000000000000a2\": {attributes: {jurisdiction: DE}}\n  \"0x00000000000000000000000000000000000000a3\": {attributes: {jurisdiction: FR}, performance: 0.5}\n",
    )
    .unwrap();
    let cfg = config(
        "operator_sets:\n  - name: curated\n    chain: mainnet\n    source: {watch: registry, function: \"getOperators()\", operators: addrs, stakes: stakes}\n    cap_bps: 4000\n    attribute_caps_bps: {jurisdiction: 6000}\n    metadata: ops.yaml\n    min_performance: 0.9\n",
        dir.path(),
    );
    let mut e = Engine::new(cfg).unwrap();
    let ops = |block: u64, stakes: [u64; 3]| {
        observed(
            block,
            "registry",
            "0x0000000000000000000000000000000000000e0e",
            "getOperators()",
            vec![],
            json!({
                "addrs": ["0x00000000000000000000000000000000000000A1", "0x00000000000000000000000000000000000000a2", "0x00000000000000000000000000000000000000a3"],
                "stakes": stakes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            }),
        )
    };
    let out = e.on_event(&ops(1, [50, 20, 30]));
    let a: Vec<RiskOperatorSetAssessed> = of(&out);
    assert_eq!(a.len(), 1);
    let a = &a[0];
    assert_eq!(a.total_stake, "100");
    assert_eq!(a.hhi, 3800.0);
    assert_eq!(a.nakamoto, [1, 2, 2]);
    assert_eq!(a.operators[0].share_bps, 5000);
    assert_eq!(a.attribute_shares_bps["jurisdiction=DE"], 7000);
    assert_eq!(a.breaches.len(), 3, "{:?}", a.breaches);
    assert!(a
        .breaches
        .iter()
        .any(|b| b.contains("0x00000000000000000000000000000000000000A1 holds 50.00%")));
    assert!(a
        .breaches
        .iter()
        .any(|b| b.contains("jurisdiction=DE holds 70.00% of the stake, above its cap of 60.00%")));
    assert!(a
        .breaches
        .iter()
        .any(|b| b.contains("performs at 0.500, below 0.900")));
    assert_eq!(a.severity, Severity::High);
    // The same breaches later: nothing.
    assert!(e.on_event(&ops(2, [51, 20, 29])).is_empty());
    // Fixed: reported, with no breach.
    let out = e.on_event(&ops(3, [35, 25, 40]));
    let a: Vec<RiskOperatorSetAssessed> = of(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].breaches.len(),
        1,
        "only the underperformer: {:?}",
        a[0].breaches
    );
}

#[test]
fn a_safe_that_drifts_is_reported_until_it_is_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let o1 = "0x00000000000000000000000000000000000000a1";
    let o2 = "0x00000000000000000000000000000000000000a2";
    let cfg = config(
        &format!("risk:\n  safes:\n    - {{chain: mainnet, watch: treasury, owners: [\"{o1}\", \"{o2}\"], threshold: 2, guard: \"0x0000000000000000000000000000000000000000\"}}\n"),
        dir.path(),
    );
    let mut e = Engine::new(cfg).unwrap();
    let safe = "0x0000000000000000000000000000000000000d0d";
    let owners = |b: u64, v: Vec<&str>| {
        observed(b, "treasury", safe, "getOwners()", vec![], json!({"0": v}))
    };
    assert!(
        e.on_event(&owners(1, vec![o2, o1])).is_empty(),
        "order does not matter"
    );
    let out = e.on_event(&owners(
        2,
        vec![o1, o2, "0x00000000000000000000000000000000000000ee"],
    ));
    let d: Vec<RiskSafeDrift> = of(&out);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].field, "owners");
    assert!(d[0].active);
    assert_eq!(d[0].severity, Severity::Critical);
    assert!(e
        .on_event(&owners(
            3,
            vec![o1, o2, "0x00000000000000000000000000000000000000ee"]
        ))
        .is_empty());
    let out = e.on_event(&owners(4, vec![o1, o2]));
    let d: Vec<RiskSafeDrift> = of(&out);
    assert_eq!(d.len(), 1);
    assert!(!d[0].active);
    let threshold = e.on_event(&observed(
        5,
        "treasury",
        safe,
        "getThreshold()",
        vec![],
        json!({"0": "1"}),
    ));
    assert_eq!(of::<RiskSafeDrift>(&threshold)[0].field, "threshold");
    let guard = e.on_event(&observed(
        5,
        "treasury",
        safe,
        "getStorageAt(uint256,uint256)",
        vec![],
        json!({"0": format!("0x{:0>64}", "dead")}),
    ));
    let g: Vec<RiskSafeDrift> = of(&guard);
    assert_eq!(g[0].field, "guard");
    assert_eq!(
        g[0].actual,
        json!("0x000000000000000000000000000000000000dead")
    );
}

#[test]
fn references_to_unknown_chains_watches_and_packs_are_refused_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let base = "chains:\n  - name: mainnet\n    chain_id: 1\n    rpc: [{url: \"http://127.0.0.1:1\"}]\n    watches:\n      - {name: aave, pack: aave-v3-pool, address: \"0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2\"}\n";
    let load = |extra: &str| {
        let text = format!("{base}{extra}");
        let doc = Document::parse(&text, "risk.yaml", &MapEnv::new()).unwrap();
        Config::from_document_checked(&doc, dir.path().to_path_buf(), &steward_risk::check_config)
            .unwrap_err()
            .to_string()
    };
    let e =
        load("risk:\n  oracles:\n    - {asset: X, chain: mainnet, feeds: [aave], heartbeat: 1h}\n");
    assert!(
        e.contains("risk.oracles[0].feeds[0]: watch `aave` must use the `chainlink-feed` pack"),
        "{e}"
    );
    let e =
        load("risk:\n  oracles:\n    - {asset: X, chain: arbitrum, feeds: [f], heartbeat: 1h}\n");
    assert!(
        e.contains(
            "risk.oracles[0].chain: no chain named `arbitrum` in `chains:` (chains: mainnet)"
        ),
        "{e}"
    );
    let e = load("operator_sets:\n  - name: s\n    chain: mainnet\n    source: {watch: nope, function: \"f()\", operators: a, stakes: b}\n");
    assert!(
        e.contains("operator_sets[0].source.watch: chain `mainnet` has no watch named `nope`"),
        "{e}"
    );
    let e = load("operator_sets:\n  - name: s\n    chain: mainnet\n    source: {watch: aave, function: \"f()\", operators: a, stakes: b}\n    metadata: missing.yaml\n");
    assert!(
        e.contains("operator_sets[0].metadata: cannot read operator metadata"),
        "{e}"
    );
}
