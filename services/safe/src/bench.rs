//! Measurements behind `steward bench safe` (figures in `docs/benchmarks.md`): safeTxHash
//! computations per second, and owner signature verifications per second against the raw
//! secp256k1 public-key recovery rate measured on the same signatures in the same run.

use std::time::Instant;

use alloy::primitives::{Address, Bytes, Signature, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;

use crate::signature;
use crate::tx::{SafeTx, Version};

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// `n` random transactions (calldata up to 256 bytes, as token transfers and batches are).
pub fn transactions(n: usize) -> Vec<SafeTx> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|i| {
            let len = (rng(&mut seed) % 257) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            let mut t = SafeTx::call(
                Address::from_word(B256::from(U256::from(rng(&mut seed)))),
                U256::from(rng(&mut seed)),
                Bytes::from(data),
                i as u64,
            );
            t.operation = (rng(&mut seed) % 2) as u8;
            t
        })
        .collect()
}

/// safeTxHash computations per second over `txs`.
pub fn hashes(txs: &[SafeTx]) -> f64 {
    let safe = Address::repeat_byte(0x5a);
    let start = Instant::now();
    let mut acc = B256::ZERO;
    for t in txs {
        let h = t.hash(1, safe, Version::Current);
        acc.0[0] ^= h.0[0];
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    txs.len() as f64 / secs
}

/// The keys of `owners` owners (at least one): private keys 1, 2, ….
fn owner_keys(owners: usize) -> Vec<PrivateKeySigner> {
    (0..owners.max(1))
        .map(|i| {
            PrivateKeySigner::from_bytes(&B256::from(U256::from(i as u64 + 1)))
                .expect("a valid key")
        })
        .collect()
}

/// Signed hashes: (hash, 65-byte typed-data signature, raw signature), by `owners` keys.
pub fn signed(txs: &[SafeTx], owners: usize) -> Vec<(B256, Vec<u8>, Signature)> {
    let keys = owner_keys(owners);
    let safe = Address::repeat_byte(0x5a);
    txs.iter()
        .enumerate()
        .map(|(i, t)| {
            let h = t.hash(1, safe, Version::Current);
            let s = keys[i % keys.len()].sign_hash_sync(&h).expect("signs");
            (h, s.as_bytes().to_vec(), s)
        })
        .collect()
}

/// Raw secp256k1 recoveries per second (the public key from a prehash and signature,
/// nothing else): the limit a verification cannot beat.
pub fn raw_recoveries(signed: &[(B256, Vec<u8>, Signature)]) -> f64 {
    let start = Instant::now();
    let mut ok = 0usize;
    for (h, _, s) in signed {
        if s.recover_from_prehash(h).is_ok() {
            ok += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(ok, signed.len(), "every signature recovers");
    signed.len() as f64 / secs
}

/// Owner signature verifications per second as the queue does them: the bytes parsed, the
/// signer recovered and its address derived, membership of the owners checked.
pub fn verifications(signed: &[(B256, Vec<u8>, Signature)], owners: usize) -> f64 {
    let keys: Vec<Address> = owner_keys(owners).iter().map(|k| k.address()).collect();
    let start = Instant::now();
    let mut ok = 0usize;
    for (h, raw, _) in signed {
        if let Ok(sig) = signature::parse(raw, *h) {
            if keys.contains(&sig.owner) {
                ok += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(ok, signed.len(), "every signature is an owner's");
    signed.len() as f64 / secs
}
