//! What `GET /api/v1/safes/{address}/` shows, read live from the chain: the Safe's nonce,
//! threshold, owners and version, its singleton (storage slot 0), modules, fallback handler
//! and guards (their storage slots).

use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{keccak256, Address, B256, U256};
use steward_chain::{BlockRef, ChainError, EndpointPool};
use steward_safe::queue::Account;

static MODULES: LazyLock<Function> = LazyLock::new(|| {
    Function::parse(
        "getModulesPaginated(address start, uint256 pageSize) view returns (address[] array, address next)",
    )
    .expect("getModulesPaginated parses")
});

/// The first module in the Safe's linked list.
const SENTINEL: Address =
    Address::new([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/// Modules read per page, and the most pages read (a Safe with more is unusual).
const PAGE: u64 = 50;
const MAX_PAGES: usize = 20;

/// A Safe as the chain shows it now.
#[derive(Debug, Clone)]
pub struct SafeInfo {
    pub account: Account,
    pub master_copy: Address,
    pub modules: Vec<Address>,
    pub fallback_handler: Address,
    pub guard: Address,
    pub module_guard: Address,
}

async fn slot(pool: &EndpointPool, safe: Address, slot: B256) -> Result<Address, ChainError> {
    let word: B256 = pool
        .request(
            "eth_getStorageAt",
            (safe, U256::from_be_bytes(slot.0), "latest"),
        )
        .await?;
    Ok(Address::from_word(word))
}

async fn modules(pool: &EndpointPool, safe: Address) -> Result<Vec<Address>, ChainError> {
    let mut out = Vec::new();
    let mut start = SENTINEL;
    for _ in 0..MAX_PAGES {
        let data = MODULES
            .abi_encode_input(&[
                DynSolValue::Address(start),
                DynSolValue::Uint(U256::from(PAGE), 256),
            ])
            .unwrap_or_default();
        let raw = pool.eth_call(safe, data.into(), BlockRef::Latest).await?;
        let values = MODULES.abi_decode_output(&raw).map_err(|e| {
            ChainError::Config(format!(
                "getModulesPaginated of {safe} does not decode: {e}"
            ))
        })?;
        let (page, next) = match values.as_slice() {
            [DynSolValue::Array(a), DynSolValue::Address(n)] => (a, *n),
            _ => break,
        };
        out.extend(page.iter().filter_map(|v| match v {
            DynSolValue::Address(a) => Some(*a),
            _ => None,
        }));
        if next == SENTINEL || next == Address::ZERO || page.is_empty() {
            break;
        }
        start = next;
    }
    Ok(out)
}

/// Reads everything the Safe Transaction Service shows of a Safe.
pub async fn safe_info(pool: &EndpointPool, safe: Address) -> Result<SafeInfo, ChainError> {
    let account = steward_safe::account::read(pool, safe).await?;
    Ok(SafeInfo {
        master_copy: slot(pool, safe, B256::ZERO).await?,
        modules: modules(pool, safe).await?,
        fallback_handler: slot(pool, safe, keccak256("fallback_manager.handler.address")).await?,
        guard: slot(pool, safe, keccak256("guard_manager.guard.address")).await?,
        // Safe v1.5.0 and later; zero before.
        module_guard: slot(pool, safe, keccak256("module_manager.module_guard.address")).await?,
        account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_slots_are_the_contracts_own() {
        // FallbackManager.FALLBACK_HANDLER_STORAGE_SLOT and GuardManager.GUARD_STORAGE_SLOT
        // as Safe v1.4.1 declares them.
        assert_eq!(
            keccak256("fallback_manager.handler.address"),
            "0x6c9a6c4a39284e37ed1cf53d337577d14212a4870fb976a4366c693b939918d5"
                .parse::<B256>()
                .unwrap()
        );
        assert_eq!(
            keccak256("guard_manager.guard.address"),
            "0x4a204f620c8c5ccdca3fd54d003badd85ba500436a431f0cbda4f558c93c34c8"
                .parse::<B256>()
                .unwrap()
        );
    }
}
