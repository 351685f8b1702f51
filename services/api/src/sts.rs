//! Response bodies in the Safe Transaction Service's shapes (camelCase, as its serializers
//! render them): multisig transactions (v2: `nonce`, `safeTxGas` and `baseGas` as strings;
//! v1: as numbers), confirmations, Safe info. Dates are ISO 8601 UTC with microseconds, as
//! Django REST framework writes them.
//!
//! Each transaction also carries a `steward` object with what the Safe Transaction Service
//! has no field for (status, simulation, the reason it was proposed, the description for
//! people, the chain); clients that do not know it ignore it.

use std::str::FromStr;

use alloy::primitives::{hex, Address, B256, U256};
use serde_json::{json, Value};
use steward_safe::signature;

use crate::chain::SafeInfo;
use crate::decode::{hex_string, StsDecoder};
use crate::model::{Confirmation, TxRow};

/// `2024-05-01T12:34:56.789000Z`.
pub fn date(ms: i64) -> Value {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        None => Value::Null,
    }
}

/// The Safe Transaction Service's name for a kind of signature (`SafeSignatureType`).
pub fn signature_type(kind: &str) -> &'static str {
    match kind {
        "eth_sign" => "ETH_SIGN",
        "approved_hash" => "APPROVED_HASH",
        "contract" => "CONTRACT_SIGNATURE",
        _ => "EOA",
    }
}

pub fn confirmation(c: &Confirmation) -> Value {
    json!({
        "owner": c.owner,
        "submissionDate": date(c.submitted_at_ms),
        "transactionHash": Value::Null,
        "signature": c.signature,
        "signatureType": signature_type(&c.kind),
    })
}

/// A number given as a decimal string: as a JSON number where it fits (v1), else the string.
fn number(s: &str) -> Value {
    match s.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(s),
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s.trim().trim_start_matches("0x")).unwrap_or_default()
}

/// The confirmations packed as `execTransaction` takes them (sorted by owner), once the
/// transaction has executed, as the Safe Transaction Service shows `signatures`.
fn packed(row: &TxRow, confirmations: &[Confirmation]) -> Value {
    if !row.is_executed() || confirmations.is_empty() {
        return Value::Null;
    }
    let Ok(hash) = B256::from_str(&row.safe_tx_hash) else {
        return Value::Null;
    };
    let parsed: Option<Vec<_>> = confirmations
        .iter()
        .map(|c| signature::parse(&hex_bytes(&c.signature), hash).ok())
        .collect();
    match parsed {
        Some(mut sigs) => {
            sigs.sort_by_key(|s| s.owner);
            json!(hex_string(&signature::pack(&sigs)))
        }
        None => Value::Null,
    }
}

/// What a client learns of a transaction. `v2` selects the v2 number formats.
pub fn transaction(
    row: &TxRow,
    confirmations: &[Confirmation],
    decoder: Option<&StsDecoder>,
    chain_id: Option<u64>,
    v2: bool,
) -> Value {
    let p = &row.proposed;
    let data = hex_bytes(&p.data);
    let numeric = |s: &str| if v2 { json!(s) } else { number(s) };
    let origin = row
        .client_origin
        .clone()
        .or_else(|| row.origin.clone())
        .unwrap_or_default();
    let fee = match (
        row.gas_used,
        row.eth_gas_price
            .as_deref()
            .and_then(|g| U256::from_str(g).ok()),
    ) {
        (Some(used), Some(price)) => json!((U256::from(used) * price).to_string()),
        _ => Value::Null,
    };
    let checksummed = |a: &str| {
        Address::from_str(a.trim())
            .map(|a| a.to_checksum(None))
            .unwrap_or_else(|_| a.to_owned())
    };
    json!({
        "safe": row.safe,
        "to": checksummed(&p.to),
        "value": p.value,
        "data": if data.is_empty() { Value::Null } else { json!(hex_string(&data)) },
        "operation": p.operation,
        "gasToken": checksummed(&p.gas_token),
        "safeTxGas": numeric(&p.safe_tx_gas),
        "baseGas": numeric(&p.base_gas),
        "gasPrice": p.gas_price,
        "refundReceiver": checksummed(&p.refund_receiver),
        "nonce": if v2 { json!(row.nonce.to_string()) } else { json!(row.nonce) },
        "executionDate": row.executed_at_ms.map(date).unwrap_or(Value::Null),
        "submissionDate": date(row.submitted_at_ms),
        "modified": date(row.modified_at_ms),
        "blockNumber": row.block_number,
        "transactionHash": row.transaction_hash,
        "safeTxHash": row.safe_tx_hash,
        "proposer": row.proposer,
        "proposedByDelegate": Value::Null,
        "executor": row.executor,
        "isExecuted": row.is_executed(),
        "isSuccessful": if row.is_executed() { json!(true) } else { Value::Null },
        "ethGasPrice": row.eth_gas_price,
        "maxFeePerGas": Value::Null,
        "maxPriorityFeePerGas": Value::Null,
        "gasUsed": row.gas_used,
        "fee": fee,
        "payment": Value::Null,
        "origin": origin,
        "dataDecoded": decoder.and_then(|d| d.data_decoded(&data)),
        "confirmationsRequired": row.threshold,
        "confirmations": confirmations.iter().map(confirmation).collect::<Vec<_>>(),
        "trusted": true,
        "signatures": packed(row, confirmations),
        "steward": {
            "status": row.status,
            "chainId": chain_id,
            "reason": p.reason,
            "wouldRevert": p.would_revert,
            "simulation": p.simulation,
            "decoded": p.decoded,
            "failure": row.failure,
            "supersededBy": row.superseded_by,
        },
    })
}

/// `GET /api/v1/safes/{address}/`.
pub fn safe_info(info: &SafeInfo) -> Value {
    let a = &info.account;
    let cs = |x: &Address| x.to_checksum(None);
    json!({
        "address": cs(&a.safe),
        "nonce": a.nonce.to_string(),
        "threshold": a.threshold,
        "owners": a.owners.iter().map(cs).collect::<Vec<_>>(),
        "masterCopy": cs(&info.master_copy),
        "modules": info.modules.iter().map(cs).collect::<Vec<_>>(),
        "fallbackHandler": cs(&info.fallback_handler),
        "guard": cs(&info.guard),
        "moduleGuard": cs(&info.module_guard),
        "version": if a.version.is_empty() { Value::Null } else { json!(a.version) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_django_rest_framework_writes_them() {
        assert_eq!(
            date(1_714_566_896_789),
            json!("2024-05-01T12:34:56.789000Z")
        );
        assert_eq!(date(0), json!("1970-01-01T00:00:00.000000Z"));
    }

    #[test]
    fn signature_kinds_have_the_services_names() {
        assert_eq!(signature_type("ecdsa"), "EOA");
        assert_eq!(signature_type("eth_sign"), "ETH_SIGN");
        assert_eq!(signature_type("approved_hash"), "APPROVED_HASH");
        assert_eq!(signature_type("contract"), "CONTRACT_SIGNATURE");
    }
}
