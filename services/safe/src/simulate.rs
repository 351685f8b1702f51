//! Simulation before queueing: would the transaction's call succeed if executed now?
//!
//! The Safe's own `simulateAndRevert` (StorageAccessible, v1.3.0+) DELEGATECALLs Safe's
//! `SimulateTxAccessor.simulate(to, value, data, operation)` in the Safe's context — as
//! `execTransaction` would, without signatures — and reverts with the outcome, which an
//! `eth_call` reads back: `success ‖ length ‖ abi.encode(estimate, success, returnData)`.

use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{Address, U256};
use steward_chain::{BlockRef, ChainError, EndpointPool};

use crate::tx::SafeTx;

static SIMULATE_AND_REVERT: LazyLock<Function> = LazyLock::new(|| {
    Function::parse("simulateAndRevert(address targetContract, bytes calldataPayload)")
        .expect("simulateAndRevert parses")
});

static SIMULATE: LazyLock<Function> = LazyLock::new(|| {
    Function::parse(
        "simulate(address to, uint256 value, bytes data, uint8 operation) returns (uint256 estimate, bool success, bytes returnData)",
    )
    .expect("simulate parses")
});

/// What a simulation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub success: bool,
    /// Why it reverts, for people (the revert reason, a panic code, or raw data).
    pub reason: Option<String>,
    /// Gas the call used.
    pub gas: Option<u64>,
}

/// Simulates `tx`'s call from `safe` through `accessor`.
pub async fn simulate(
    pool: &EndpointPool,
    safe: Address,
    accessor: Address,
    tx: &SafeTx,
) -> Result<Simulation, ChainError> {
    let payload = SIMULATE
        .abi_encode_input(&[
            DynSolValue::Address(tx.to),
            DynSolValue::Uint(tx.value, 256),
            DynSolValue::Bytes(tx.data.to_vec()),
            DynSolValue::Uint(U256::from(tx.operation), 8),
        ])
        .unwrap_or_default();
    let call = SIMULATE_AND_REVERT
        .abi_encode_input(&[DynSolValue::Address(accessor), DynSolValue::Bytes(payload)])
        .unwrap_or_default();
    let data = match pool.eth_call(safe, call.into(), BlockRef::Latest).await {
        Err(ChainError::Reverted { data: Some(d), .. }) => d,
        Err(ChainError::Reverted { message, .. }) => {
            return Ok(Simulation {
                success: false,
                reason: Some(format!("simulation reverted without data: {message}")),
                gas: None,
            })
        }
        Err(e) => return Err(e),
        Ok(_) => {
            return Ok(Simulation {
                success: false,
                reason: Some(
                    "simulateAndRevert returned instead of reverting: is this a Safe v1.3.0+?"
                        .into(),
                ),
                gas: None,
            })
        }
    };
    if data.len() < 64 {
        return Ok(Simulation {
            success: false,
            reason: Some("simulation answer too short".into()),
            gas: None,
        });
    }
    let inner = &data[64..];
    let Ok(values) = SIMULATE.abi_decode_output(inner) else {
        return Ok(Simulation {
            success: false,
            reason: Some("the accessor's answer does not decode (is simulate_tx_accessor a SimulateTxAccessor?)".into()),
            gas: None,
        });
    };
    let gas = match values.first() {
        Some(DynSolValue::Uint(g, _)) => u64::try_from(*g).ok(),
        _ => None,
    };
    let success = matches!(values.get(1), Some(DynSolValue::Bool(true)));
    let reason = match (success, values.get(2)) {
        (false, Some(DynSolValue::Bytes(r))) => Some(revert_reason(r)),
        _ => None,
    };
    Ok(Simulation {
        success,
        reason,
        gas,
    })
}

/// A revert's data for people: `Error(string)`'s message, `Panic(uint256)`'s code, or hex.
pub fn revert_reason(data: &[u8]) -> String {
    match data.get(..4) {
        Some([0x08, 0xc3, 0x79, 0xa0]) => {
            let f = Function::parse("Error(string)").expect("parses");
            match f
                .abi_decode_input(&data[4..])
                .ok()
                .and_then(|v| v.into_iter().next())
            {
                Some(DynSolValue::String(s)) => s,
                _ => format!("0x{}", alloy::primitives::hex::encode(data)),
            }
        }
        Some([0x4e, 0x48, 0x7b, 0x71]) if data.len() >= 36 => {
            format!("panic 0x{:x}", U256::from_be_slice(&data[4..36]))
        }
        None if data.is_empty() => "reverted without a reason".to_owned(),
        _ => format!("reverted with 0x{}", alloy::primitives::hex::encode(data)),
    }
}
