//! Every watch pack's events decoded from real contracts on anvil: the real Safe v1.4.1
//! (npm @safe-global/safe-contracts), and test doubles with the upstream event signatures
//! for Aave, Chainlink, Lido, EigenLayer and the OpenZeppelin Governor.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};
use steward_events::{ChainLogObserved, ChainStateObserved};
use steward_testkit::{safe_artifact, Anvil};

const ZERO: &str = "0x0000000000000000000000000000000000000000";

struct Packs {
    anvil: Anvil,
    h: Harness,
    watches: String,
}

impl Packs {
    async fn new() -> Self {
        Self {
            anvil: Anvil::start(),
            h: Harness::new().await,
            watches: String::new(),
        }
    }

    fn watch(&mut self, name: &str, pack: &str, address: &str) {
        self.watches.push_str(&format!(
            "      - name: {name}\n        pack: {pack}\n        address: \"{address}\"\n"
        ));
    }

    /// Runs a watcher over the whole chain; returns logs by watch, and state observations.
    async fn run(
        &self,
        multicall: &str,
    ) -> (
        BTreeMap<String, Vec<ChainLogObserved>>,
        Vec<ChainStateObserved>,
    ) {
        let yaml = format!(
            "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{}\"}}]\n    multicall: \"{multicall}\"\n    start_block: 1\n    blocks: false\n    watches:\n{}",
            self.anvil.url(),
            self.watches
        );
        let mut w = self.h.watcher(&yaml).await;
        catch_up(&mut w).await;
        let events = self.h.events().await;
        let mut logs: BTreeMap<String, Vec<ChainLogObserved>> = BTreeMap::new();
        for e in events
            .iter()
            .filter(|e| e.event_type == "chain.log.observed")
        {
            let p: ChainLogObserved = e.payload().unwrap();
            logs.entry(p.watch.clone().unwrap()).or_default().push(p);
        }
        let states = events
            .iter()
            .filter(|e| e.event_type == "chain.state.observed")
            .map(|e| e.payload().unwrap())
            .collect();
        (logs, states)
    }
}

fn event<'a>(logs: &'a [ChainLogObserved], name: &str) -> &'a ChainLogObserved {
    logs.iter().find(|l| l.event == name).unwrap_or_else(|| {
        panic!(
            "no {name} among {:?}",
            logs.iter().map(|l| &l.event).collect::<Vec<_>>()
        )
    })
}

#[tokio::test]
async fn aave_chainlink_lido_eigenlayer_and_governor_events_decode_by_name() {
    let mut p = Packs::new().await;
    let a = &p.anvil;
    let multicall = a.deploy_fixture("Multicall3Compatible");
    let pool = a.deploy_fixture("MockLendingPool");
    let feed = a.deploy_fixture("MockPriceFeed");
    let proxy = a.deploy_fixture("MockFeedProxy");
    let nor = a.deploy_fixture("MockNodeOperatorsRegistry");
    let csm = a.deploy_fixture("MockCSModule");
    let router = a.deploy_fixture("MockStakingRouter");
    let alloc = a.deploy_fixture("MockAllocationManager");
    let gov = a.deploy_fixture("MockGovernor");
    let user = "0x00000000000000000000000000000000000000a1";
    let asset = "0x00000000000000000000000000000000000000cc";
    let operator = "0x00000000000000000000000000000000000000e1";
    let avs = "0x00000000000000000000000000000000000000e2";
    let strategy = "0x00000000000000000000000000000000000000e3";

    // Aave.
    send(
        a,
        &pool,
        "supply(address,uint256,address,uint16)",
        &[asset, "1000", user, "7"],
    );
    send(
        a,
        &pool,
        "borrow(address,uint256,uint256,uint16,address)",
        &[asset, "400", "2", "0", user],
    );
    send(
        a,
        &pool,
        "repay(address,uint256,uint256,address)",
        &[asset, "100", "2", user],
    );
    send(
        a,
        &pool,
        "setReserveData(address,uint256,uint256,uint256,uint256,uint256)",
        &[asset, "1", "2", "3", "4", "5"],
    );
    // Chainlink: the proxy's aggregator answers.
    send(a, &proxy, "setAggregator(address)", &[&feed]);
    send(a, &feed, "setAnswer(int256)", &["-5"]);
    // Lido: one call, two layouts of one topic0.
    send(
        a,
        &nor,
        "updateTargetValidatorsLimits(uint256,uint256,uint256)",
        &["7", "2", "150"],
    );
    send(
        a,
        &csm,
        "updateTargetValidatorsLimits(uint256,uint256,uint256)",
        &["7", "2", "150"],
    );
    send(
        a,
        &router,
        "emitStakingRouterETHDeposited(uint256,uint256)",
        &["1", "32000000000000000000"],
    );
    send(
        a,
        &router,
        "emitStakingModuleStatusSet(uint256,uint8,address)",
        &["3", "1", user],
    );
    // EigenLayer: tuples (OperatorSet) and arrays.
    send(
        a,
        &alloc,
        "emitAllocationUpdated(address,(address,uint32),address,uint64,uint32)",
        &[
            operator,
            &format!("({avs}, 9)"),
            strategy,
            "500000000000000000",
            "1234",
        ],
    );
    send(
        a,
        &alloc,
        "emitOperatorSlashed(address,(address,uint32),address[],uint256[],string)",
        &[
            operator,
            &format!("({avs}, 9)"),
            &format!("[{strategy}]"),
            "[250000000000000000]",
            "double signing",
        ],
    );
    send(
        a,
        &alloc,
        "emitOperatorAddedToOperatorSet(address,(address,uint32))",
        &[operator, &format!("({avs}, 9)")],
    );
    send(
        a,
        &alloc,
        "emitOperatorRemovedFromOperatorSet(address,(address,uint32))",
        &[operator, &format!("({avs}, 10)")],
    );
    // Governor: a proposal, then votes, queue, execution.
    send(a, &gov, "emitProposalCreated(uint256,address,address[],uint256[],string[],bytes[],uint256,uint256,string)", &["42", user, &format!("[{asset}]"), "[0]", "[\"\"]", "[0x1234]", "100", "200", "Raise the cap"]);
    send(
        a,
        &gov,
        "emitVoteCast(address,uint256,uint8,uint256,string)",
        &[user, "42", "1", "1000", "yes"],
    );
    send(
        a,
        &gov,
        "emitProposalQueued(uint256,uint256)",
        &["42", "1700000000"],
    );
    send(a, &gov, "emitProposalExecuted(uint256)", &["42"]);

    p.watch("aave", "aave-v3-pool", &pool);
    p.watch("feed", "chainlink-feed", &proxy);
    p.watch("nor", "lido-node-operators-registry", &nor);
    p.watch("csm", "lido-csm", &csm);
    p.watch("router", "lido-staking-router", &router);
    p.watch("alloc", "eigenlayer-allocation-manager", &alloc);
    p.watch("gov", "oz-governor", &gov);
    let (logs, states) = p.run(&multicall).await;

    let aave = &logs["aave"];
    let supply = event(aave, "Supply");
    assert_eq!(supply.args["reserve"], json!(checksum(asset)));
    assert_eq!(supply.args["onBehalfOf"], json!(checksum(user)));
    assert_eq!(supply.args["amount"], "1000");
    assert_eq!(supply.args["referralCode"], "7");
    assert_eq!(event(aave, "Borrow").args["borrowRate"], "0");
    let repay = event(aave, "Repay");
    assert_eq!(repay.args["amount"], "100");
    assert_eq!(repay.args["useATokens"], json!(false));
    let rd = event(aave, "ReserveDataUpdated");
    assert_eq!(rd.args["variableBorrowIndex"], "5");
    assert_eq!(
        rd.signature,
        "ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)"
    );

    // Chainlink: events of the aggregator behind the proxy; the negative answer stays signed.
    let answer = event(&logs["feed"], "AnswerUpdated");
    assert_eq!(answer.address, checksum(&feed));
    assert_eq!(answer.args["current"], "-5");
    assert!(states.iter().any(|s| s.watch == "feed"
        && s.function == "latestRoundData()"
        && s.value["answer"] == "-5"));

    // Lido: decoded by emitting contract, so both read the same.
    for w in ["nor", "csm"] {
        let t = event(&logs[w], "TargetValidatorsCountChanged");
        assert_eq!(t.args["nodeOperatorId"], "7", "{w}");
        assert_eq!(t.args["targetLimitMode"], "2", "{w}");
        assert_eq!(t.args["targetValidatorsCount"], "150", "{w}");
    }
    let router_logs = &logs["router"];
    assert_eq!(
        event(router_logs, "StakingRouterETHDeposited").args["amount"],
        "32000000000000000000"
    );
    assert_eq!(
        event(router_logs, "StakingModuleStatusSet").args["status"],
        "1"
    );

    // EigenLayer: the OperatorSet tuple by component name.
    let el = &logs["alloc"];
    let upd = event(el, "AllocationUpdated");
    assert_eq!(
        upd.args["operatorSet"],
        json!({"avs": checksum(avs), "id": "9"})
    );
    assert_eq!(upd.args["magnitude"], "500000000000000000");
    assert_eq!(upd.args["effectBlock"], "1234");
    let slashed = event(el, "OperatorSlashed");
    assert_eq!(slashed.args["strategies"], json!([checksum(strategy)]));
    assert_eq!(slashed.args["wadSlashed"], json!(["250000000000000000"]));
    assert_eq!(slashed.args["description"], "double signing");
    assert_eq!(
        event(el, "OperatorRemovedFromOperatorSet").args["operatorSet"]["id"],
        "10"
    );
    assert!(states
        .iter()
        .any(|s| s.watch == "alloc" && s.function == "DEALLOCATION_DELAY()"));

    // Governor: the proposal is learned, and its state() polled.
    let g = &logs["gov"];
    let created = event(g, "ProposalCreated");
    assert_eq!(created.args["proposalId"], "42");
    assert_eq!(created.args["calldatas"], json!(["0x1234"]));
    assert_eq!(created.args["description"], "Raise the cap");
    assert_eq!(event(g, "VoteCast").args["reason"], "yes");
    assert_eq!(event(g, "ProposalQueued").args["etaSeconds"], "1700000000");
    event(g, "ProposalExecuted");
    let state = states
        .iter()
        .rfind(|s| s.watch == "gov" && s.function == "state(uint256)")
        .expect("state(42) polled");
    assert_eq!(state.args, vec![json!("42")]);

    // Every event emitted, each decoded once, by its own watch: 4 Aave, 2 Chainlink, 1 + 1
    // Lido modules, 2 router, 4 EigenLayer, 4 Governor.
    let counts: BTreeMap<&str, usize> = logs.iter().map(|(w, l)| (w.as_str(), l.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("aave", 4),
            ("alloc", 4),
            ("csm", 1),
            ("feed", 2),
            ("gov", 4),
            ("nor", 1),
            ("router", 2)
        ])
    );
}

fn exec(anvil: &Anvil, safe: &str, owner: &str, data: &str) {
    // A pre-validated signature: the sender is the owner (v = 1, r = owner).
    let sig = format!(
        "0x{:0>64}{}01",
        owner.trim_start_matches("0x"),
        "0".repeat(64)
    );
    let receipt = send(
        anvil,
        safe,
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        &[safe, "0", data, "0", "0", "0", "0", ZERO, ZERO, &sig],
    );
    // ExecutionSuccess, not ExecutionFailure.
    let success = "0x442e715f626346e8c54381002da614f62bee8d27386535b2521ec8540898556e";
    assert!(
        receipt["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["topics"][0] == success),
        "the Safe transaction failed: {receipt}"
    );
}

#[tokio::test]
async fn safe_v1_4_1_events_and_configuration_from_the_real_contracts() {
    let mut p = Packs::new().await;
    let a = &p.anvil;
    let multicall = a.deploy_fixture("Multicall3Compatible");
    let singleton = a.deploy(&safe_artifact("SafeL2.sol/SafeL2").1);
    let factory = a.deploy(&safe_artifact("proxies/SafeProxyFactory.sol/SafeProxyFactory").1);
    let fallback = a.deploy(
        &safe_artifact("handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler").1,
    );
    let accounts = a.accounts();
    let (owner, second) = (accounts[0].clone(), accounts[1].clone());
    let setup = calldata(
        "setup(address[],uint256,address,bytes,address,address,uint256,address)",
        &[
            &format!("[{owner}]"),
            "1",
            ZERO,
            "0x",
            &fallback,
            ZERO,
            "0",
            ZERO,
        ],
    );
    let receipt = send(
        a,
        &factory,
        "createProxyWithNonce(address,bytes,uint256)",
        &[&singleton, &setup, "1"],
    );
    let creation = receipt["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["address"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&factory)
        })
        .expect("ProxyCreation");
    let safe = format!("0x{}", &creation["topics"][1].as_str().unwrap()[26..]);

    let module = "0x00000000000000000000000000000000000000d1";
    exec(
        a,
        &safe,
        &owner,
        &calldata("addOwnerWithThreshold(address,uint256)", &[&second, "1"]),
    );
    exec(
        a,
        &safe,
        &owner,
        &calldata("enableModule(address)", &[module]),
    );
    exec(a, &safe, &owner, &calldata("setGuard(address)", &[ZERO]));
    exec(
        a,
        &safe,
        &owner,
        &calldata("changeThreshold(uint256)", &["2"]),
    );

    p.watch("treasury", "safe", &safe);
    let (logs, states) = p.run(&multicall).await;
    let l = &logs["treasury"];
    assert_eq!(
        event(l, "AddedOwner").args["owner"],
        json!(checksum(&second))
    );
    assert_eq!(
        event(l, "EnabledModule").args["module"],
        json!(checksum(module))
    );
    assert_eq!(
        event(l, "ChangedGuard").args["guard"],
        json!(checksum(ZERO))
    );
    assert_eq!(event(l, "ChangedThreshold").args["threshold"], "2");
    assert_eq!(
        l.iter().filter(|e| e.event == "ExecutionSuccess").count(),
        4
    );
    let multisig: Vec<&ChainLogObserved> = l
        .iter()
        .filter(|e| e.event == "SafeMultiSigTransaction")
        .collect();
    assert_eq!(multisig.len(), 4);
    assert_eq!(multisig[0].args["to"], json!(checksum(&safe)));
    assert_eq!(
        multisig[3].args["data"],
        json!(calldata("changeThreshold(uint256)", &["2"]))
    );
    assert_eq!(
        multisig[0].args["additionalInfo"]
            .as_str()
            .map(|s| s.starts_with("0x")),
        Some(true)
    );

    // Polled configuration, as of the newest block.
    let last = |f: &str| -> Value {
        states
            .iter()
            .rfind(|s| s.function == f)
            .unwrap_or_else(|| panic!("{f} polled"))
            .value
            .clone()
            .into()
    };
    assert_eq!(last("getThreshold()")["0"], "2");
    assert_eq!(last("nonce()")["0"], "4");
    let owners = last("getOwners()")["0"].clone();
    let mut owners: Vec<String> = serde_json::from_value(owners).unwrap();
    owners.sort();
    let mut expected = vec![checksum(&owner), checksum(&second)];
    expected.sort();
    assert_eq!(owners, expected);
    assert_eq!(
        last("getModulesPaginated(address,uint256)")["array"],
        json!([checksum(module)])
    );
    assert_eq!(
        last("getStorageAt(uint256,uint256)")["0"],
        json!(format!("0x{}", "0".repeat(64))),
        "no guard"
    );
}
