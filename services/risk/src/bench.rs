//! Measurements behind `steward bench risk` (figures in `docs/benchmarks.md`).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use steward_config::{Config, Document, MapEnv};
use steward_events::{ChainStateObserved, Envelope};

use crate::Engine;

/// Position updates evaluated per second by the rules (no I/O): `updates` observations of
/// `positions` Aave accounts whose health factors wander across the liquidation thresholds.
/// Returns (updates per second, findings produced).
pub fn positions(updates: usize, positions: usize) -> anyhow::Result<(f64, usize)> {
    let yaml = "chains:\n  - name: bench\n    chain_id: 1\n    rpc: [{url: \"http://127.0.0.1:1\"}]\n    watches:\n      - {name: aave, pack: aave-v3-pool, address: \"0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2\"}\n";
    let doc = Document::parse(yaml, "bench.yaml", &MapEnv::new())?;
    let config = Arc::new(Config::from_document(&doc)?);
    let mut engine = Engine::new(config).map_err(anyhow::Error::msg)?;
    // Built first: the figure is the rules, not the test data.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut events = Vec::with_capacity(updates);
    for i in 0..updates {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let user = format!("0x{:040x}", (seed as usize % positions) + 1);
        // Health factors between 0.85 and 1.25.
        let hf = 850_000_000_000_000_000u128 + u128::from(seed % 400) * 1_000_000_000_000_000;
        let value = json!({
            "totalCollateralBase": "1000000", "totalDebtBase": "500000", "availableBorrowsBase": "0",
            "currentLiquidationThreshold": "8250", "ltv": "8000", "healthFactor": hf.to_string(),
        });
        let Value::Object(value) = value else {
            unreachable!()
        };
        events.push(
            Envelope::new(
                "watcher",
                format!("bench:{i}"),
                &ChainStateObserved {
                    block_number: (i / positions.max(1)) as u64 + 1,
                    block_hash: format!("0x{i:064x}"),
                    watch: "aave".into(),
                    address: "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2".into(),
                    function: "getUserAccountData(address)".into(),
                    args: vec![Value::String(user)],
                    value,
                    previous: None,
                },
            )
            .with_chain(1),
        );
    }
    let start = Instant::now();
    let mut findings = 0;
    for e in &events {
        findings += engine.on_event(e).len();
    }
    let _ = engine.take_dirty();
    Ok((updates as f64 / start.elapsed().as_secs_f64(), findings))
}
