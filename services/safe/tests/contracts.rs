//! The Safe model against the real Safe v1.4.1 contracts on anvil: hashes agree with the
//! contract's own, batches execute, every signature kind is accepted where the contract
//! accepts it and refused, with its reason, where it would not.

use std::str::FromStr;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use serde_json::json;
use steward_chain::{EndpointConfig, EndpointPool, PoolOptions};
use steward_safe::multisend::{self, Call};
use steward_safe::signature::{self, Kind, Refusal};
use steward_safe::tx::{self, SafeTx, Version};
use steward_testkit::{Anvil, SafeDeployment, ANVIL_KEYS};

const CHAIN: u64 = 31337;

fn key(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_str(ANVIL_KEYS[i]).unwrap()
}

fn addr(a: &str) -> Address {
    Address::from_str(a).unwrap()
}

fn word(a: Address) -> String {
    format!("{:0>64}", alloy::primitives::hex::encode(a))
}

fn uint(v: U256) -> String {
    format!("{v:064x}")
}

/// `getTransactionHash` as the Safe computes it.
fn contract_hash(anvil: &Anvil, safe: &str, t: &SafeTx) -> B256 {
    // getTransactionHash(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,uint256)
    let mut d = String::from("0xd8d11f78");
    d += &word(t.to);
    d += &uint(t.value);
    d += &uint(U256::from(10 * 32));
    d += &uint(U256::from(t.operation));
    d += &uint(t.safe_tx_gas);
    d += &uint(t.base_gas);
    d += &uint(t.gas_price);
    d += &word(t.gas_token);
    d += &word(t.refund_receiver);
    d += &uint(t.nonce);
    d += &uint(U256::from(t.data.len()));
    let mut data = alloy::primitives::hex::encode(&t.data);
    while !data.len().is_multiple_of(64) {
        data.push('0');
    }
    d += &data;
    let out = anvil.rpc("eth_call", json!([{ "to": safe, "data": d }, "latest"]));
    B256::from_str(out.as_str().unwrap()).unwrap()
}

/// `execTransaction` calldata.
fn exec_data(t: &SafeTx, signatures: &Bytes) -> String {
    let mut d = String::from("0x6a761202");
    d += &word(t.to);
    d += &uint(t.value);
    d += &uint(U256::from(10 * 32));
    d += &uint(U256::from(t.operation));
    d += &uint(t.safe_tx_gas);
    d += &uint(t.base_gas);
    d += &uint(t.gas_price);
    d += &word(t.gas_token);
    d += &word(t.refund_receiver);
    let data_words = t.data.len().div_ceil(32);
    d += &uint(U256::from(10 * 32 + 32 + data_words * 32));
    d += &uint(U256::from(t.data.len()));
    let mut data = alloy::primitives::hex::encode(&t.data);
    while !data.len().is_multiple_of(64) {
        data.push('0');
    }
    d += &data;
    d += &uint(U256::from(signatures.len()));
    let mut s = alloy::primitives::hex::encode(signatures);
    while !s.len().is_multiple_of(64) {
        s.push('0');
    }
    d += &s;
    d
}

struct World {
    anvil: Anvil,
    d: SafeDeployment,
    safe: String,
    pool: EndpointPool,
}

fn world(owners: &[usize], threshold: u64) -> World {
    let anvil = Anvil::start();
    let d = anvil.deploy_safe();
    let owner_addrs: Vec<String> = owners
        .iter()
        .map(|&i| key(i).address().to_string())
        .collect();
    let safe = anvil.create_safe(&d, &owner_addrs, threshold, 1);
    let pool = EndpointPool::new(
        CHAIN,
        vec![EndpointConfig::new(anvil.url())],
        PoolOptions::default(),
    )
    .unwrap();
    World {
        anvil,
        d,
        safe,
        pool,
    }
}

#[test]
fn hashes_agree_with_the_contracts_for_random_transactions() {
    let w = world(&[0, 1, 2], 2);
    let safe = addr(&w.safe);
    let mut seed: u64 = 7;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..60 {
        let len = (next() % 200) as usize;
        let t = SafeTx {
            to: Address::from_word(B256::from(U256::from(next()))),
            value: U256::from(next()) * U256::from(next()),
            data: Bytes::from((0..len).map(|_| next() as u8).collect::<Vec<_>>()),
            operation: (next() % 2) as u8,
            safe_tx_gas: U256::from(next() % 1_000_000),
            base_gas: U256::from(next() % 100_000),
            gas_price: U256::from(next() % 3),
            gas_token: if next() % 2 == 0 {
                Address::ZERO
            } else {
                Address::repeat_byte(0x77)
            },
            refund_receiver: Address::from_word(B256::from(U256::from(next()))),
            nonce: U256::from(next() % 1000),
        };
        assert_eq!(
            t.hash(CHAIN, safe, Version::Current),
            contract_hash(&w.anvil, &w.safe, &t),
            "{t:?}"
        );
    }
    // The legacy domain (v1.0–v1.2) differs, and does not depend on the chain.
    let t = SafeTx::call(Address::repeat_byte(1), U256::ZERO, Bytes::new(), 0);
    assert_ne!(
        t.hash(CHAIN, safe, Version::Legacy),
        t.hash(CHAIN, safe, Version::Current)
    );
}

#[tokio::test]
async fn a_batch_signed_by_two_owners_two_ways_executes() {
    let w = world(&[0, 1, 2], 2);
    let safe = addr(&w.safe);
    let token = w.anvil.deploy_fixture("MockERC20");
    let mint = |to: &str, amount: u64| -> Bytes {
        // mint(address,uint256)
        Bytes::from(
            alloy::primitives::hex::decode(format!(
                "40c10f19{}{}",
                word(addr(to)),
                uint(U256::from(amount))
            ))
            .unwrap(),
        )
    };
    let (r1, r2) = (
        "0x00000000000000000000000000000000000000c1",
        "0x00000000000000000000000000000000000000c2",
    );
    let calls = vec![
        Call {
            operation: 0,
            to: addr(&token),
            value: U256::ZERO,
            data: mint(r1, 7),
        },
        Call {
            operation: 0,
            to: addr(&token),
            value: U256::ZERO,
            data: mint(r2, 9),
        },
    ];
    let t = SafeTx {
        operation: 1,
        ..SafeTx::call(
            addr(&w.d.multi_send_call_only),
            U256::ZERO,
            multisend::encode(&calls),
            0,
        )
    };
    let hash = t.hash(CHAIN, safe, Version::Current);
    assert_eq!(hash, contract_hash(&w.anvil, &w.safe, &t));
    // Owner 0 signs the hash (EIP-712); owner 2 with eth_sign.
    let typed = key(0).sign_hash_sync(&hash).unwrap().as_bytes().to_vec();
    let mut eth = key(2)
        .sign_message_sync(hash.as_slice())
        .unwrap()
        .as_bytes()
        .to_vec();
    eth[64] += 4;
    let a = signature::parse(&typed, hash).unwrap();
    let b = signature::parse(&eth, hash).unwrap();
    assert_eq!((a.owner, a.kind), (key(0).address(), Kind::Ecdsa));
    assert_eq!((b.owner, b.kind), (key(2).address(), Kind::EthSign));
    let packed = signature::pack(&[b, a]);
    let receipt = w.anvil.send_transaction(json!({ "from": key(5).address().to_string(), "to": w.safe, "data": exec_data(&t, &packed) }));
    let success = "0x442e715f626346e8c54381002da614f62bee8d27386535b2521ec8540898556e";
    assert!(
        receipt["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["topics"][0] == success),
        "{receipt}"
    );
    // The batch's effect.
    let balance = |who: &str| {
        let v = w.anvil.rpc(
            "eth_call",
            json!([{ "to": token, "data": format!("0x70a08231{}", word(addr(who))) }, "latest"]),
        );
        U256::from_str(v.as_str().unwrap()).unwrap()
    };
    assert_eq!((balance(r1), balance(r2)), (U256::from(7), U256::from(9)));
}

#[tokio::test]
async fn refusals_name_their_reason() {
    let w = world(&[0, 1, 2], 2);
    let safe = addr(&w.safe);
    let owners: Vec<Address> = (0..3).map(|i| key(i).address()).collect();
    let t = SafeTx::call(Address::repeat_byte(0x42), U256::ZERO, Bytes::new(), 0);
    let hash = t.hash(CHAIN, safe, Version::Current);
    // Not an owner: recovers fine, to someone else.
    let outsider =
        signature::parse(&key(7).sign_hash_sync(&hash).unwrap().as_bytes(), hash).unwrap();
    assert!(!owners.contains(&outsider.owner));
    // Signed for another chain: an owner's signature under chain 1's domain.
    let mainnet_hash = t.hash(1, safe, Version::Current);
    let wrong_chain = key(1)
        .sign_hash_sync(&mainnet_hash)
        .unwrap()
        .as_bytes()
        .to_vec();
    let recovered = signature::parse(&wrong_chain, hash).unwrap();
    assert!(
        !owners.contains(&recovered.owner),
        "under this chain's hash it is no owner's"
    );
    assert_eq!(
        signature::signed_for_another_chain(
            &wrong_chain,
            &owners,
            &[(1, mainnet_hash), (10, t.hash(10, safe, Version::Current))]
        ),
        Some(1)
    );
    // Malformed.
    assert_eq!(
        signature::parse(&[0u8; 30], hash).unwrap_err().reason,
        Refusal::Malformed
    );
    // An approved hash nobody approved, then approved on chain.
    let approved =
        signature::parse(&signature::approved_hash_signature(key(1).address()), hash).unwrap();
    let hash_data = t.hash_data(CHAIN, safe, Version::Current);
    let refused = signature::verify_on_chain(&w.pool, safe, &approved, hash, &hash_data, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.reason, Refusal::Invalid);
    assert!(
        refused.detail.contains("has not approved this hash"),
        "{}",
        refused.detail
    );
    // approveHash(bytes32) from owner 1
    w.anvil.send_transaction(json!({ "from": key(1).address().to_string(), "to": w.safe, "data": format!("0xd4d9bdcd{}", alloy::primitives::hex::encode(hash)) }));
    signature::verify_on_chain(&w.pool, safe, &approved, hash, &hash_data, None)
        .await
        .unwrap()
        .unwrap();
    // And the sender's own approved-hash signature needs no approval.
    let own =
        signature::parse(&signature::approved_hash_signature(key(2).address()), hash).unwrap();
    signature::verify_on_chain(
        &w.pool,
        safe,
        &own,
        hash,
        &hash_data,
        Some(key(2).address()),
    )
    .await
    .unwrap()
    .unwrap();
    // With owner 1's approval and owner 2 sending, the contract agrees: it executes.
    let packed = signature::pack(&[approved, own]);
    let receipt = w.anvil.send_transaction(json!({ "from": key(2).address().to_string(), "to": w.safe, "data": exec_data(&t, &packed) }));
    assert_eq!(receipt["status"], "0x1");
}

#[tokio::test]
async fn a_safe_that_owns_a_safe_signs_by_eip1271() {
    let anvil = Anvil::start();
    let d = anvil.deploy_safe();
    // The inner Safe: 1-of-1, owned by key 3. The outer: 2-of-2, the inner Safe and key 0.
    let inner = anvil.create_safe(&d, &[key(3).address().to_string()], 1, 1);
    let outer = anvil.create_safe(&d, &[inner.clone(), key(0).address().to_string()], 2, 2);
    let pool = EndpointPool::new(
        CHAIN,
        vec![EndpointConfig::new(anvil.url())],
        PoolOptions::default(),
    )
    .unwrap();
    let (inner_a, outer_a) = (addr(&inner), addr(&outer));
    let t = SafeTx::call(Address::repeat_byte(0x43), U256::ZERO, Bytes::new(), 0);
    let hash = t.hash(CHAIN, outer_a, Version::Current);
    let hash_data = t.hash_data(CHAIN, outer_a, Version::Current);
    // The inner Safe's owner signs the inner Safe's message hash of the outer transaction's data.
    let msg_hash = tx::safe_message_hash(CHAIN, inner_a, Version::Current, &hash_data);
    let inner_sig = key(3)
        .sign_hash_sync(&msg_hash)
        .unwrap()
        .as_bytes()
        .to_vec();
    let contract =
        signature::parse(&signature::contract_signature(inner_a, &inner_sig), hash).unwrap();
    assert_eq!((contract.owner, contract.kind), (inner_a, Kind::Contract));
    signature::verify_on_chain(&pool, outer_a, &contract, hash, &hash_data, None)
        .await
        .unwrap()
        .unwrap();
    // A wrong inner signature is refused by the contract owner.
    let bad = signature::parse(
        &signature::contract_signature(
            inner_a,
            &key(4).sign_hash_sync(&msg_hash).unwrap().as_bytes(),
        ),
        hash,
    )
    .unwrap();
    let refused = signature::verify_on_chain(&pool, outer_a, &bad, hash, &hash_data, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.reason, Refusal::Invalid);
    // Executed with the contract signature and key 0's.
    let eoa = signature::parse(&key(0).sign_hash_sync(&hash).unwrap().as_bytes(), hash).unwrap();
    let packed = signature::pack(&[contract, eoa]);
    let receipt = anvil.send_transaction(json!({ "to": outer, "data": exec_data(&t, &packed) }));
    let success = "0x442e715f626346e8c54381002da614f62bee8d27386535b2521ec8540898556e";
    assert!(
        receipt["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["topics"][0] == success),
        "{receipt}"
    );
}
