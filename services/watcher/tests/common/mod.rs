//! Shared setup of the watcher's tests: a real anvil, an embedded event log and a SQLite
//! store in a temp dir, a configuration written as YAML, and helpers to call the fixture
//! contracts.
#![allow(dead_code)]

pub mod proxy;

use std::sync::Arc;

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use serde_json::{json, Value};
use steward_chain::abi::{coerce_args, parse_function_signature};
use steward_config::{Config, MapEnv};
use steward_events::Envelope;
use steward_log::embedded::EmbeddedLog;
use steward_log::EventLog;
use steward_store::Store;
use steward_testkit::Anvil;
use steward_watcher::{ChainPlan, ChainWatcher, Step};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: Arc<dyn EventLog>,
    pub store: Store,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EmbeddedLog::open(&dir.path().join("events.db"), "steward")
            .await
            .expect("embedded log");
        let store = Store::connect(
            &format!("sqlite://{}", dir.path().join("steward.db").display()),
            4,
        )
        .await
        .expect("store");
        Self {
            dir,
            log: Arc::new(log),
            store,
        }
    }

    /// A watcher for chain 0 of `yaml` (a whole configuration file's text).
    pub async fn watcher(&self, yaml: &str) -> ChainWatcher {
        let config = config(yaml, self.dir.path());
        let plan = ChainPlan::compile(&config, 0).unwrap_or_else(|p| panic!("plan: {p:?}"));
        ChainWatcher::open(
            Arc::new(plan),
            config.chains[0].clone(),
            self.log.clone(),
            self.store.clone(),
        )
        .await
        .expect("open watcher")
    }

    /// Every event in the log, in order.
    pub async fn events(&self) -> Vec<Envelope> {
        self.log
            .read(1, &[], 1_000_000)
            .await
            .expect("read log")
            .into_iter()
            .map(|s| s.event)
            .collect()
    }

    /// Events of one type.
    pub async fn events_of(&self, event_type: &str) -> Vec<Envelope> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.event_type == event_type)
            .collect()
    }

    /// The `chain.log.observed` payloads, in log order.
    pub async fn logs(&self) -> Vec<steward_events::ChainLogObserved> {
        self.events_of("chain.log.observed")
            .await
            .iter()
            .map(|e| e.payload().expect("a chain.log.observed payload"))
            .collect()
    }
}

/// Parses a configuration (relative ABI paths against `base`), with the watcher's checks.
pub fn config(yaml: &str, base: &std::path::Path) -> Config {
    let doc = steward_config::Document::parse(yaml, "test.yaml", &MapEnv::new()).expect("yaml");
    Config::from_document_checked(&doc, base.to_path_buf(), &steward_watcher::check_config)
        .unwrap_or_else(|e| panic!("config: {e}"))
}

/// Steps until the watcher reports nothing new; returns the steps taken.
pub async fn catch_up(w: &mut ChainWatcher) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..1000 {
        let s = w
            .step()
            .await
            .unwrap_or_else(|e| panic!("step failed: {e}"));
        steps.push(s);
        if s == Step::Idle {
            return steps;
        }
    }
    panic!("the watcher never caught up: {steps:?}");
}

/// ABI-encoded call data of `signature` (`f(address,uint256)`) with `args` as text.
pub fn calldata(signature: &str, args: &[&str]) -> String {
    let f = parse_function_signature(signature).expect("signature");
    let values: Vec<DynSolValue> = coerce_args(&f.inputs, args).expect("args");
    format!(
        "0x{}",
        alloy::primitives::hex::encode(f.abi_encode_input(&values).expect("encode"))
    )
}

/// Sends a transaction calling `signature` on `to`; returns the receipt.
pub fn send(anvil: &Anvil, to: &str, signature: &str, args: &[&str]) -> Value {
    anvil.send_transaction(json!({ "to": to, "data": calldata(signature, args) }))
}

/// The head block number.
pub fn head(anvil: &Anvil) -> u64 {
    let v = anvil.rpc("eth_blockNumber", json!([]));
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Mines `n` empty blocks.
pub fn mine(anvil: &Anvil, n: u64) {
    anvil.rpc("anvil_mine", json!([format!("{n:#x}")]));
}

/// A checksummed form of an address, as payloads carry it.
pub fn checksum(a: &str) -> String {
    a.parse::<alloy::primitives::Address>()
        .unwrap()
        .to_checksum(None)
}
