//! Safe transactions and their hashes (EIP-712, as the Safe contracts compute them).
//!
//! `safeTxHash = keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ keccak256(encodeData(SafeTx)))`.
//! The SafeTx type is the same from v1.0.0 on; the domain is
//! `EIP712Domain(uint256 chainId,address verifyingContract)` from v1.3.0, and
//! `EIP712Domain(address verifyingContract)` before (v1.0.0–v1.2.0).

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};

/// `keccak256("SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)")`.
pub const SAFE_TX_TYPEHASH: B256 = B256::new(alloy::primitives::hex!(
    "bb8310d486368db6bd6f849402fdd73ad53d316b5a4b2644ad6efe0f941286d8"
));
/// `keccak256("EIP712Domain(uint256 chainId,address verifyingContract)")`, v1.3.0 and later.
pub const DOMAIN_TYPEHASH: B256 = B256::new(alloy::primitives::hex!(
    "47e79534a245952e8b16893a336b85a3d9ea9fa8c573f3d803afb92a79469218"
));
/// `keccak256("EIP712Domain(address verifyingContract)")`, before v1.3.0.
pub const LEGACY_DOMAIN_TYPEHASH: B256 = B256::new(alloy::primitives::hex!(
    "035aff83d86937d35b32e04f0ddc6ff469290eef2f1b692d8a815c89404d4749"
));
/// `keccak256("SafeMessage(bytes message)")`: messages signed by a Safe (EIP-1271).
pub const SAFE_MSG_TYPEHASH: B256 = B256::new(alloy::primitives::hex!(
    "60b3cbf8b4a223d68d641b3b6ddf9a298e7f33710cf3d3a9d1146b5a6150fbca"
));

/// CALL or DELEGATECALL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Call = 0,
    DelegateCall = 1,
}

impl Operation {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Call),
            1 => Some(Self::DelegateCall),
            _ => None,
        }
    }
}

/// A Safe contract version, as far as hashing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// v1.0.0 to v1.2.0: no chain id in the domain.
    Legacy,
    /// v1.3.0 and later.
    Current,
}

impl Version {
    /// From the contract's `VERSION()` (`1.4.1`); unknown or unparsable strings are current.
    pub fn parse(text: &str) -> Self {
        let mut parts = text
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(1), parts.next().unwrap_or(3));
        if major == 1 && minor < 3 {
            Version::Legacy
        } else {
            Version::Current
        }
    }
}

/// A Safe transaction, as `execTransaction` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTx {
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
    pub operation: u8,
    pub safe_tx_gas: U256,
    pub base_gas: U256,
    pub gas_price: U256,
    pub gas_token: Address,
    pub refund_receiver: Address,
    pub nonce: U256,
}

impl SafeTx {
    /// A plain call with no gas refund.
    pub fn call(to: Address, value: U256, data: Bytes, nonce: u64) -> Self {
        Self {
            to,
            value,
            data,
            operation: 0,
            safe_tx_gas: U256::ZERO,
            base_gas: U256::ZERO,
            gas_price: U256::ZERO,
            gas_token: Address::ZERO,
            refund_receiver: Address::ZERO,
            nonce: U256::from(nonce),
        }
    }

    /// A rejection at `nonce`: a call to the Safe itself with no value and no data, which
    /// once executed uses the nonce up and so cancels whatever else was queued at it.
    pub fn rejection(safe: Address, nonce: u64) -> Self {
        Self::call(safe, U256::ZERO, Bytes::new(), nonce)
    }

    /// `keccak256(encodeData(SafeTx))`.
    pub fn struct_hash(&self) -> B256 {
        let mut buf = Vec::with_capacity(11 * 32);
        buf.extend_from_slice(SAFE_TX_TYPEHASH.as_slice());
        buf.extend_from_slice(self.to.into_word().as_slice());
        buf.extend_from_slice(&self.value.to_be_bytes::<32>());
        buf.extend_from_slice(keccak256(&self.data).as_slice());
        buf.extend_from_slice(&U256::from(self.operation).to_be_bytes::<32>());
        buf.extend_from_slice(&self.safe_tx_gas.to_be_bytes::<32>());
        buf.extend_from_slice(&self.base_gas.to_be_bytes::<32>());
        buf.extend_from_slice(&self.gas_price.to_be_bytes::<32>());
        buf.extend_from_slice(self.gas_token.into_word().as_slice());
        buf.extend_from_slice(self.refund_receiver.into_word().as_slice());
        buf.extend_from_slice(&self.nonce.to_be_bytes::<32>());
        keccak256(&buf)
    }

    /// The 66 bytes whose hash is the safeTxHash (`encodeTransactionData`), which contract
    /// owners (EIP-1271, legacy `isValidSignature(bytes,bytes)`) are asked about.
    pub fn hash_data(&self, chain_id: u64, safe: Address, version: Version) -> Vec<u8> {
        let mut out = Vec::with_capacity(66);
        out.extend_from_slice(&[0x19, 0x01]);
        out.extend_from_slice(domain_separator(chain_id, safe, version).as_slice());
        out.extend_from_slice(self.struct_hash().as_slice());
        out
    }

    /// The safeTxHash every owner signs.
    pub fn hash(&self, chain_id: u64, safe: Address, version: Version) -> B256 {
        keccak256(self.hash_data(chain_id, safe, version))
    }
}

/// The Safe's EIP-712 domain separator.
pub fn domain_separator(chain_id: u64, safe: Address, version: Version) -> B256 {
    let mut buf = Vec::with_capacity(96);
    match version {
        Version::Current => {
            buf.extend_from_slice(DOMAIN_TYPEHASH.as_slice());
            buf.extend_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
            buf.extend_from_slice(safe.into_word().as_slice());
        }
        Version::Legacy => {
            buf.extend_from_slice(LEGACY_DOMAIN_TYPEHASH.as_slice());
            buf.extend_from_slice(safe.into_word().as_slice());
        }
    }
    keccak256(&buf)
}

/// The hash a Safe's owners sign for the Safe to sign `message` (EIP-1271, the
/// CompatibilityFallbackHandler's `getMessageHashForSafe`).
pub fn safe_message_hash(chain_id: u64, safe: Address, version: Version, message: &[u8]) -> B256 {
    let mut inner = Vec::with_capacity(64);
    inner.extend_from_slice(SAFE_MSG_TYPEHASH.as_slice());
    inner.extend_from_slice(keccak256(message).as_slice());
    let mut buf = Vec::with_capacity(66);
    buf.extend_from_slice(&[0x19, 0x01]);
    buf.extend_from_slice(domain_separator(chain_id, safe, version).as_slice());
    buf.extend_from_slice(keccak256(&inner).as_slice());
    keccak256(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typehashes_are_the_keccak_of_their_types() {
        assert_eq!(
            keccak256("SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)"),
            SAFE_TX_TYPEHASH
        );
        assert_eq!(
            keccak256("EIP712Domain(uint256 chainId,address verifyingContract)"),
            DOMAIN_TYPEHASH
        );
        assert_eq!(
            keccak256("EIP712Domain(address verifyingContract)"),
            LEGACY_DOMAIN_TYPEHASH
        );
        assert_eq!(keccak256("SafeMessage(bytes message)"), SAFE_MSG_TYPEHASH);
    }

    #[test]
    fn the_domain_has_the_chain_id_from_v1_3_only() {
        let safe = Address::repeat_byte(7);
        let tx = SafeTx::call(Address::repeat_byte(1), U256::from(1), Bytes::new(), 0);
        assert_ne!(
            tx.hash(1, safe, Version::Current),
            tx.hash(5, safe, Version::Current)
        );
        assert_eq!(
            tx.hash(1, safe, Version::Legacy),
            tx.hash(5, safe, Version::Legacy)
        );
        assert_eq!(Version::parse("1.2.0"), Version::Legacy);
        assert_eq!(Version::parse("1.4.1"), Version::Current);
        assert_eq!(Version::parse("1.3.0+L2"), Version::Current);
    }
}
