//! A Safe as the chain shows it (version, nonce, owners, threshold), `execTransaction`
//! calldata, and the endpoint pool of a configured Safe's chain. Shared by the service, the
//! API and the CLI.

use std::str::FromStr;
use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{Address, Bytes, U256};
use steward_chain::{BlockRef, ChainError, EndpointConfig, EndpointPool, PoolOptions};
use steward_config::section::chains::ChainConfig;

use crate::queue::Account;
use crate::tx::{SafeTx, Version};

fn parse(sig: &str) -> Function {
    Function::parse(sig).unwrap_or_else(|e| panic!("{sig} parses: {e}"))
}

static VERSION: LazyLock<Function> = LazyLock::new(|| parse("VERSION() view returns (string)"));
static NONCE: LazyLock<Function> = LazyLock::new(|| parse("nonce() view returns (uint256)"));
static OWNERS: LazyLock<Function> = LazyLock::new(|| parse("getOwners() view returns (address[])"));
static THRESHOLD: LazyLock<Function> =
    LazyLock::new(|| parse("getThreshold() view returns (uint256)"));
static EXEC: LazyLock<Function> = LazyLock::new(|| {
    parse("execTransaction(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, bytes signatures) payable returns (bool)")
});

async fn call(
    pool: &EndpointPool,
    safe: Address,
    f: &Function,
) -> Result<Vec<DynSolValue>, ChainError> {
    let data = f.abi_encode_input(&[]).unwrap_or_default();
    let out = pool.eth_call(safe, data.into(), BlockRef::Latest).await?;
    f.abi_decode_output(&out).map_err(|e| {
        ChainError::Config(format!(
            "{} of {safe} does not decode ({e}): is this address a Safe?",
            f.name
        ))
    })
}

/// The Safe's nonce now.
pub async fn read_nonce(pool: &EndpointPool, safe: Address) -> Result<u64, ChainError> {
    let v = call(pool, safe, &NONCE).await?;
    Ok(match v.first() {
        Some(DynSolValue::Uint(n, _)) => u64::try_from(*n).unwrap_or(u64::MAX),
        _ => 0,
    })
}

/// Version, nonce, owners and threshold, read at the latest block.
pub async fn read(pool: &EndpointPool, safe: Address) -> Result<Account, ChainError> {
    let code = pool.code(safe).await?;
    if code.is_empty() {
        return Err(ChainError::Config(format!(
            "{safe} has no code on chain {}: no Safe is deployed there",
            pool.chain_id()
        )));
    }
    let version = match call(pool, safe, &VERSION).await?.into_iter().next() {
        Some(DynSolValue::String(s)) => s,
        _ => String::new(),
    };
    let nonce = read_nonce(pool, safe).await?;
    let owners = match call(pool, safe, &OWNERS).await?.into_iter().next() {
        Some(DynSolValue::Array(a)) => a
            .into_iter()
            .filter_map(|v| match v {
                DynSolValue::Address(a) => Some(a),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let threshold = match call(pool, safe, &THRESHOLD).await?.first() {
        Some(DynSolValue::Uint(n, _)) => u32::try_from(*n).unwrap_or(u32::MAX),
        _ => 0,
    };
    Ok(Account {
        safe,
        chain_id: pool.chain_id(),
        owners,
        threshold,
        nonce,
        version,
    })
}

impl Account {
    /// Which domain its hashes use.
    pub fn hash_version(&self) -> Version {
        Version::parse(&self.version)
    }
}

/// `execTransaction(tx…, signatures)` calldata.
pub fn exec_calldata(tx: &SafeTx, signatures: &Bytes) -> Bytes {
    EXEC.abi_encode_input(&[
        DynSolValue::Address(tx.to),
        DynSolValue::Uint(tx.value, 256),
        DynSolValue::Bytes(tx.data.to_vec()),
        DynSolValue::Uint(U256::from(tx.operation), 8),
        DynSolValue::Uint(tx.safe_tx_gas, 256),
        DynSolValue::Uint(tx.base_gas, 256),
        DynSolValue::Uint(tx.gas_price, 256),
        DynSolValue::Address(tx.gas_token),
        DynSolValue::Address(tx.refund_receiver),
        DynSolValue::Bytes(signatures.to_vec()),
    ])
    .unwrap_or_default()
    .into()
}

/// The endpoint pool of a configured chain, with its timeouts and retries.
pub fn pool_for(chain: &ChainConfig) -> Result<EndpointPool, ChainError> {
    let endpoints = chain
        .rpc
        .iter()
        .map(|r| {
            let mut e = EndpointConfig::new(r.url.expose()).with_weight(r.weight);
            if let Some(rate) = r.rate_limit {
                e = e.with_rate_limit(rate);
            }
            e
        })
        .collect();
    EndpointPool::new(
        chain.chain_id,
        endpoints,
        PoolOptions {
            timeout: chain.rpc_timeout,
            retries: chain.rpc_retries,
            cooldown: chain.rpc_cooldown,
            ..PoolOptions::default()
        },
    )
}

/// An address from configuration or an event (checked elsewhere), or the zero address.
pub fn address(s: &str) -> Result<Address, String> {
    Address::from_str(s.trim()).map_err(|e| format!("`{s}` is not an address: {e}"))
}
