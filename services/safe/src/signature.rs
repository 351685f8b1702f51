//! Owner signatures of a Safe transaction: what each kind means, how it is checked, and how
//! they are packed for `execTransaction`.
//!
//! A signature is 65 bytes `r ‖ s ‖ v`:
//! - `v` 27/28: ECDSA over the safeTxHash (EIP-712 signing);
//! - `v` 31/32: ECDSA over the EIP-191 "Ethereum Signed Message" of the safeTxHash (`eth_sign`),
//!   recovered with `v − 4`;
//! - `v` 1: an approved hash: `r` is the owner, who approved the hash on chain
//!   (`approveHash`), or who sends the transaction;
//! - `v` 0: a contract signature (EIP-1271): `r` is the owner contract, `s` the offset of its
//!   signature data in the packed signatures, checked by calling the owner's
//!   `isValidSignature(bytes,bytes)` with the transaction's hash data (Safe v1.3.0 and v1.4.1
//!   use this legacy form).
//!
//! Packed signatures are sorted by owner address, ascending; contract signatures' data follow
//! all the static parts.

use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{eip191_hash_message, Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};
use steward_chain::{BlockRef, ChainError, EndpointPool};

/// `bytes4(keccak256("isValidSignature(bytes,bytes)"))`: the legacy EIP-1271 magic value.
pub const EIP1271_LEGACY_MAGIC: [u8; 4] = [0x20, 0xc1, 0x3b, 0x0b];

static IS_VALID_SIGNATURE: LazyLock<Function> = LazyLock::new(|| {
    Function::parse("isValidSignature(bytes _data, bytes _signature) view returns (bytes4)")
        .expect("the EIP-1271 signature parses")
});

static APPROVED_HASHES: LazyLock<Function> = LazyLock::new(|| {
    Function::parse("approvedHashes(address owner, bytes32 hash) view returns (uint256)")
        .expect("approvedHashes parses")
});

/// How an owner signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ecdsa,
    EthSign,
    ApprovedHash,
    Contract,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ecdsa => "ecdsa",
            Kind::EthSign => "eth_sign",
            Kind::ApprovedHash => "approved_hash",
            Kind::Contract => "contract",
        }
    }
}

/// One owner's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSignature {
    pub owner: Address,
    pub kind: Kind,
    /// `r ‖ s ‖ v`; for a contract signature `s` is rewritten when packed.
    pub fixed: [u8; 65],
    /// A contract signature's data.
    pub data: Option<Bytes>,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Not a signature at all: wrong length, unknown `v`, an unrecoverable curve point.
    Malformed,
    /// It signs another hash (another transaction, another nonce, or a hash the sender
    /// computed differently).
    WrongHash,
    /// It signs this transaction for another chain.
    WrongChain,
    /// The signer is not an owner of the Safe.
    NotOwner,
    /// The owner has already signed.
    Duplicate,
    /// An approved hash the owner never approved, or a contract owner that says no.
    Invalid,
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::WrongHash => "wrong_hash",
            Refusal::WrongChain => "wrong_chain",
            Refusal::NotOwner => "not_owner",
            Refusal::Duplicate => "duplicate",
            Refusal::Invalid => "invalid",
        }
    }
}

/// A parse or check failure, with what a person needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: Refusal,
    pub detail: String,
    /// The signer, when it could be told.
    pub signer: Option<Address>,
}

impl Refused {
    fn new(reason: Refusal, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            signer: None,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// Reads one owner's signature as submitted: 65 bytes, or for a contract signature 65 bytes
/// followed by the data's length (32 bytes) and the data, and recovers (or reads) its owner.
/// Approved-hash and contract signatures need [`verify_on_chain`] as well.
pub fn parse(raw: &[u8], safe_tx_hash: B256) -> Result<OwnerSignature, Refused> {
    if raw.len() < 65 {
        return Err(Refused::new(
            Refusal::Malformed,
            format!(
                "a signature is at least 65 bytes (r ‖ s ‖ v); this one has {}",
                raw.len()
            ),
        ));
    }
    let mut fixed = [0u8; 65];
    fixed.copy_from_slice(&raw[..65]);
    let v = fixed[64];
    let r = B256::from_slice(&fixed[..32]);
    let s = B256::from_slice(&fixed[32..64]);
    let word_address = |w: B256| -> Result<Address, Refused> {
        if w[..12].iter().any(|&b| b != 0) {
            return Err(Refused::new(
                Refusal::Malformed,
                "r must hold an address (12 zero bytes, then 20)",
            ));
        }
        Ok(Address::from_slice(&w[12..]))
    };
    let (owner, kind, data) = match v {
        27 | 28 => (recover(safe_tx_hash, r, s, v)?, Kind::Ecdsa, None),
        31 | 32 => (recover(eip191_hash_message(safe_tx_hash), r, s, v - 4)?, Kind::EthSign, None),
        1 => {
            if raw.len() != 65 {
                return Err(Refused::new(Refusal::Malformed, "an approved-hash signature is exactly 65 bytes"));
            }
            (word_address(r)?, Kind::ApprovedHash, None)
        }
        0 => {
            let owner = word_address(r)?;
            let rest = &raw[65..];
            if rest.len() < 32 {
                return Err(Refused::new(
                    Refusal::Malformed,
                    "a contract signature (v = 0) is followed by its data: 32 bytes of length, then the data",
                ));
            }
            let len = usize::try_from(U256::from_be_slice(&rest[..32])).unwrap_or(usize::MAX);
            if rest.len() != 32 + len {
                return Err(Refused::new(
                    Refusal::Malformed,
                    format!("the contract signature's data says {len} bytes but {} follow", rest.len() - 32),
                ));
            }
            (owner, Kind::Contract, Some(Bytes::copy_from_slice(&rest[32..])))
        }
        other => {
            return Err(Refused::new(
                Refusal::Malformed,
                format!("v = {other} is no Safe signature type (27/28 ECDSA, 31/32 eth_sign, 1 approved hash, 0 contract)"),
            ))
        }
    };
    Ok(OwnerSignature {
        owner,
        kind,
        fixed,
        data,
    })
}

fn recover(hash: B256, r: B256, s: B256, v: u8) -> Result<Address, Refused> {
    let sig = alloy::primitives::Signature::from_scalars_and_parity(r, s, v == 28);
    sig.recover_address_from_prehash(&hash).map_err(|e| {
        Refused::new(
            Refusal::Malformed,
            format!("no signer can be recovered: {e}"),
        )
    })
}

/// Checks what needs the chain: an approved hash must be approved on chain (or the sender be
/// the owner), a contract owner must accept its signature. ECDSA signatures need nothing.
pub async fn verify_on_chain(
    pool: &EndpointPool,
    safe: Address,
    sig: &OwnerSignature,
    safe_tx_hash: B256,
    hash_data: &[u8],
    sender: Option<Address>,
) -> Result<Result<(), Refused>, ChainError> {
    match sig.kind {
        Kind::Ecdsa | Kind::EthSign => Ok(Ok(())),
        Kind::ApprovedHash => {
            if sender == Some(sig.owner) {
                return Ok(Ok(()));
            }
            let data = APPROVED_HASHES
                .abi_encode_input(&[
                    DynSolValue::Address(sig.owner),
                    DynSolValue::FixedBytes(safe_tx_hash, 32),
                ])
                .unwrap_or_default();
            let out = pool.eth_call(safe, data.into(), BlockRef::Latest).await;
            let out = match out {
                Ok(o) => o,
                Err(e) => return Err(e),
            };
            let approved = U256::try_from_be_slice(&out).unwrap_or_default();
            Ok(if approved.is_zero() {
                Err(Refused {
                    reason: Refusal::Invalid,
                    detail: format!(
                        "{} has not approved this hash on chain (approveHash)",
                        sig.owner
                    ),
                    signer: Some(sig.owner),
                })
            } else {
                Ok(())
            })
        }
        Kind::Contract => {
            let data = IS_VALID_SIGNATURE
                .abi_encode_input(&[
                    DynSolValue::Bytes(hash_data.to_vec()),
                    DynSolValue::Bytes(sig.data.clone().unwrap_or_default().to_vec()),
                ])
                .unwrap_or_default();
            let refused = |why: String| Refused {
                reason: Refusal::Invalid,
                detail: why,
                signer: Some(sig.owner),
            };
            match pool
                .eth_call(sig.owner, data.into(), BlockRef::Latest)
                .await
            {
                Ok(out) => {
                    let ok = IS_VALID_SIGNATURE
                        .abi_decode_output(&out)
                        .ok()
                        .and_then(|v| v.into_iter().next())
                        .is_some_and(|v| matches!(v, DynSolValue::FixedBytes(w, 4) if w[..4] == EIP1271_LEGACY_MAGIC));
                    Ok(if ok {
                        Ok(())
                    } else {
                        Err(refused(format!(
                            "contract owner {} does not accept the signature (EIP-1271)",
                            sig.owner
                        )))
                    })
                }
                Err(ChainError::Reverted { message, .. }) => Ok(Err(refused(format!(
                    "contract owner {} rejects the signature (EIP-1271 reverted: {message})",
                    sig.owner
                )))),
                Err(e) => Err(e),
            }
        }
    }
}

/// Signatures packed for `execTransaction`: sorted by owner, contract data after the static
/// parts with each `s` pointing at its data.
pub fn pack(signatures: &[OwnerSignature]) -> Bytes {
    let mut sorted: Vec<&OwnerSignature> = signatures.iter().collect();
    sorted.sort_by_key(|s| s.owner);
    let mut fixed = Vec::with_capacity(65 * sorted.len());
    let mut dynamic = Vec::new();
    let base = 65 * sorted.len();
    for s in sorted {
        let mut part = s.fixed;
        if let (Kind::Contract, Some(data)) = (s.kind, &s.data) {
            let offset = U256::from(base + dynamic.len());
            part[32..64].copy_from_slice(&offset.to_be_bytes::<32>());
            dynamic.extend_from_slice(&U256::from(data.len()).to_be_bytes::<32>());
            dynamic.extend_from_slice(data);
        }
        fixed.extend_from_slice(&part);
    }
    fixed.extend_from_slice(&dynamic);
    fixed.into()
}

/// One owner's contract signature as submitted (see [`parse`]).
pub fn contract_signature(owner: Address, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(65 + 32 + data.len());
    out.extend_from_slice(owner.into_word().as_slice());
    out.extend_from_slice(&[0u8; 32]);
    out.push(0);
    out.extend_from_slice(&U256::from(data.len()).to_be_bytes::<32>());
    out.extend_from_slice(data);
    out
}

/// One owner's approved-hash signature.
pub fn approved_hash_signature(owner: Address) -> Vec<u8> {
    let mut out = Vec::with_capacity(65);
    out.extend_from_slice(owner.into_word().as_slice());
    out.extend_from_slice(&[0u8; 32]);
    out.push(1);
    out
}

/// Which other chain (or pre-v1.3.0 domain) a signature that recovers to no owner was made
/// for, if any of `candidates` (chain id, hash for it) makes it an owner's.
pub fn signed_for_another_chain(
    raw: &[u8],
    owners: &[Address],
    candidates: &[(u64, B256)],
) -> Option<u64> {
    candidates.iter().find_map(|(chain, hash)| {
        let sig = parse(raw, *hash).ok()?;
        matches!(sig.kind, Kind::Ecdsa | Kind::EthSign)
            .then_some(())
            .filter(|_| owners.contains(&sig.owner))
            .map(|_| *chain)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use alloy::signers::SignerSync;

    fn key(n: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::repeat_byte(n)).unwrap()
    }

    #[test]
    fn ecdsa_and_eth_sign_recover_their_owner() {
        let hash = B256::repeat_byte(0xab);
        let k = key(1);
        let sig = k.sign_hash_sync(&hash).unwrap();
        let mut raw = sig.as_bytes().to_vec();
        assert!(raw[64] == 27 || raw[64] == 28);
        let s = parse(&raw, hash).unwrap();
        assert_eq!((s.owner, s.kind), (k.address(), Kind::Ecdsa));

        let msg = k.sign_message_sync(hash.as_slice()).unwrap();
        raw = msg.as_bytes().to_vec();
        raw[64] += 4;
        let s = parse(&raw, hash).unwrap();
        assert_eq!((s.owner, s.kind), (k.address(), Kind::EthSign));

        // Over another hash, the signer recovered is someone else.
        let other = parse(&sig.as_bytes(), B256::repeat_byte(1)).unwrap();
        assert_ne!(other.owner, k.address());
    }

    #[test]
    fn malformed_signatures_say_why() {
        let hash = B256::ZERO;
        assert!(parse(&[0u8; 64], hash)
            .unwrap_err()
            .detail
            .contains("at least 65 bytes"));
        let mut raw = [0u8; 65];
        raw[64] = 9;
        assert!(parse(&raw, hash).unwrap_err().detail.contains("v = 9"));
        let mut bad = approved_hash_signature(Address::repeat_byte(3));
        bad[0] = 1;
        assert_eq!(parse(&bad, hash).unwrap_err().reason, Refusal::Malformed);
        let mut c = contract_signature(Address::repeat_byte(4), b"xyz");
        c.pop();
        assert!(parse(&c, hash)
            .unwrap_err()
            .detail
            .contains("says 3 bytes but 2 follow"));
    }

    #[test]
    fn packing_sorts_by_owner_and_points_at_contract_data() {
        let hash = B256::repeat_byte(9);
        let high = Address::repeat_byte(0xf0);
        let low = key(2);
        let ecdsa = parse(&low.sign_hash_sync(&hash).unwrap().as_bytes(), hash).unwrap();
        let contract = parse(&contract_signature(high, b"inner"), hash).unwrap();
        let approved = parse(&approved_hash_signature(Address::repeat_byte(0x01)), hash).unwrap();
        let packed = pack(&[contract.clone(), ecdsa.clone(), approved.clone()]);
        let mut owners = [ecdsa.owner, approved.owner, high];
        owners.sort();
        for (i, o) in owners.iter().enumerate() {
            let part = &packed[i * 65..(i + 1) * 65];
            match part[64] {
                0 => {
                    assert_eq!(&part[12..32], high.as_slice());
                    assert_eq!(U256::from_be_slice(&part[32..64]), U256::from(195));
                }
                1 => assert_eq!(&part[12..32], o.as_slice()),
                _ => {}
            }
        }
        assert_eq!(U256::from_be_slice(&packed[195..227]), U256::from(5));
        assert_eq!(&packed[227..], b"inner");
    }
}
