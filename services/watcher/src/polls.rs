//! Evaluating state calls at a block: batched through Multicall3's `aggregate3` (one
//! request for many calls, each allowed to fail on its own), or one request per call when
//! the chain has no Multicall3.

use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{Address, Bytes, U256};
use futures::stream::{self, StreamExt};
use serde_json::{Map, Value};
use steward_chain::abi::{named_values, parse_function_signature};
use steward_chain::{BlockRef, ChainError, EndpointPool};

use crate::plan::{CallInstance, CallTarget};

/// Calls per `aggregate3` request: large enough that 500 positions take one request, small
/// enough to stay well under a node's `eth_call` gas cap.
pub const MULTICALL_CHUNK: usize = 500;
/// Requests in flight when calling one by one.
const PARALLEL_CALLS: usize = 8;

/// Multicall3's `aggregate3`, from its JSON ABI (the human-readable parser has no named
/// tuple components).
static AGGREGATE3: LazyLock<Function> = LazyLock::new(|| {
    serde_json::from_str(
        r#"{"type":"function","name":"aggregate3","stateMutability":"payable",
            "inputs":[{"name":"calls","type":"tuple[]","components":[
                {"name":"target","type":"address"},{"name":"allowFailure","type":"bool"},
                {"name":"callData","type":"bytes"}]}],
            "outputs":[{"name":"returnData","type":"tuple[]","components":[
                {"name":"success","type":"bool"},{"name":"returnData","type":"bytes"}]}]}"#,
    )
    .expect("aggregate3's ABI parses")
});

static GET_ETH_BALANCE: LazyLock<Function> = LazyLock::new(|| {
    parse_function_signature("function getEthBalance(address addr) view returns (uint256 balance)")
        .expect("getEthBalance's signature parses")
});

/// The outcome of one call: its decoded return values by name, or why there are none.
pub type Outcome = Result<Map<String, Value>, String>;

/// Evaluates `calls` at `block`. The outer error is a failure of the whole batch (the RPC);
/// the inner ones are per call (a revert, an answer that does not decode).
pub async fn evaluate(
    pool: &EndpointPool,
    multicall: Option<Address>,
    calls: &[&CallInstance],
    block: BlockRef,
) -> Result<Vec<Outcome>, ChainError> {
    match multicall {
        Some(m) => {
            let mut out = Vec::with_capacity(calls.len());
            for chunk in calls.chunks(MULTICALL_CHUNK) {
                out.extend(aggregate(pool, m, chunk, block).await?);
            }
            Ok(out)
        }
        None => {
            // Futures built first: a stream mapping references to futures trips rustc's
            // higher-ranked `Send` inference once spawned.
            let futures: Vec<_> = calls.iter().map(|c| one(pool, c, block)).collect();
            let results: Vec<Result<Outcome, ChainError>> = stream::iter(futures)
                .buffered(PARALLEL_CALLS)
                .collect()
                .await;
            results.into_iter().collect()
        }
    }
}

fn decode(function: &Function, data: &[u8]) -> Outcome {
    let values = function.abi_decode_output(data).map_err(|e| {
        format!(
            "the answer does not decode as {:?}: {e}",
            output_types(function)
        )
    })?;
    Ok(named_values(
        function
            .outputs
            .iter()
            .map(|p| (p.name.as_str(), p.components.as_slice())),
        &values,
    ))
}

fn output_types(f: &Function) -> String {
    f.outputs
        .iter()
        .map(|p| p.ty.clone())
        .collect::<Vec<_>>()
        .join(",")
}

fn balance_value(balance: U256) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("balance".to_owned(), Value::String(balance.to_string()));
    m
}

async fn one(
    pool: &EndpointPool,
    c: &CallInstance,
    block: BlockRef,
) -> Result<Outcome, ChainError> {
    match &c.target {
        CallTarget::NativeBalance => Ok(Ok(balance_value(pool.balance(c.address, block).await?))),
        CallTarget::Contract { function, calldata } => {
            match pool.eth_call(c.address, calldata.clone(), block).await {
                Ok(data) => Ok(decode(function, &data)),
                Err(ChainError::Reverted { message, .. }) => {
                    Ok(Err(format!("reverted: {message}")))
                }
                Err(e) => Err(e),
            }
        }
    }
}

async fn aggregate(
    pool: &EndpointPool,
    multicall: Address,
    calls: &[&CallInstance],
    block: BlockRef,
) -> Result<Vec<Outcome>, ChainError> {
    let items: Vec<DynSolValue> = calls
        .iter()
        .map(|c| {
            let (target, data): (Address, Bytes) = match &c.target {
                CallTarget::Contract { calldata, .. } => (c.address, calldata.clone()),
                CallTarget::NativeBalance => (
                    multicall,
                    GET_ETH_BALANCE
                        .abi_encode_input(&[DynSolValue::Address(c.address)])
                        .unwrap_or_default()
                        .into(),
                ),
            };
            DynSolValue::Tuple(vec![
                DynSolValue::Address(target),
                DynSolValue::Bool(true),
                DynSolValue::Bytes(data.to_vec()),
            ])
        })
        .collect();
    let data = AGGREGATE3
        .abi_encode_input(&[DynSolValue::Array(items)])
        .map_err(|e| ChainError::Config(format!("cannot encode aggregate3: {e}")))?;
    let answer = pool.eth_call(multicall, data.into(), block).await?;
    let invalid = |detail: String| ChainError::InvalidResponse {
        endpoint: format!("Multicall3 at {multicall}"),
        detail,
    };
    if answer.is_empty() {
        return Err(invalid(
            "empty answer: no Multicall3 contract at this address on this chain (set the chain's `multicall:` to its address, or `disabled`)".to_owned(),
        ));
    }
    let decoded = AGGREGATE3
        .abi_decode_output(&answer)
        .map_err(|e| invalid(format!("aggregate3's answer does not decode: {e}")))?;
    let Some(DynSolValue::Array(results)) = decoded.into_iter().next() else {
        return Err(invalid("aggregate3 returned no array".to_owned()));
    };
    if results.len() != calls.len() {
        return Err(invalid(format!(
            "aggregate3 returned {} results for {} calls",
            results.len(),
            calls.len()
        )));
    }
    Ok(results
        .into_iter()
        .zip(calls)
        .map(|(r, c)| {
            let DynSolValue::Tuple(parts) = r else {
                return Err("malformed aggregate3 result".to_owned());
            };
            let (Some(DynSolValue::Bool(success)), Some(DynSolValue::Bytes(data))) =
                (parts.first(), parts.get(1))
            else {
                return Err("malformed aggregate3 result".to_owned());
            };
            if !success {
                return Err(format!(
                    "reverted (0x{})",
                    alloy::primitives::hex::encode(data)
                ));
            }
            match &c.target {
                CallTarget::Contract { function, .. } => decode(function, data),
                CallTarget::NativeBalance => decode(&GET_ETH_BALANCE, data).and_then(|m| {
                    m.get("balance")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<U256>().ok())
                        .map(balance_value)
                        .ok_or_else(|| "getEthBalance answer without a balance".to_owned())
                }),
            }
        })
        .collect())
}
