//! `dataDecoded` as the Safe Transaction Service writes it: `{method, parameters: [{name, type,
//! value, valueDecoded?}]}`, numbers as decimal strings, bytes as 0x hex, addresses
//! checksummed, tuples and arrays as lists; a MultiSend batch's `transactions` parameter has
//! `valueDecoded`: one `{operation, to, value, data, dataDecoded}` per call.
//!
//! The safe service's own description (`decoded` in `safe.tx.proposed`) is for people and
//! keys arguments by name without their order or types, so the API decodes the calldata again
//! here, from the same configured ABI files plus the functions every Safe meets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::hex;
use serde_json::{json, Value};
use steward_safe::multisend;

/// Functions every Safe meets: ERC-20 and ERC-721 transfers, the Safe's own management
/// calls, MultiSend, and the calls Steward itself proposes.
const BUILT_IN: &[&str] = &[
    "transfer(address to, uint256 value)",
    "approve(address spender, uint256 value)",
    "transferFrom(address from, address to, uint256 value)",
    "safeTransferFrom(address from, address to, uint256 tokenId)",
    "addOwnerWithThreshold(address owner, uint256 _threshold)",
    "removeOwner(address prevOwner, address owner, uint256 _threshold)",
    "swapOwner(address prevOwner, address oldOwner, address newOwner)",
    "changeThreshold(uint256 _threshold)",
    "enableModule(address module)",
    "disableModule(address prevModule, address module)",
    "setGuard(address guard)",
    "setFallbackHandler(address handler)",
    "approveHash(bytes32 hashToApprove)",
    "multiSend(bytes transactions)",
    "liquidationCall(address collateralAsset, address debtAsset, address user, uint256 debtToCover, bool receiveAToken)",
    "updateTargetValidatorsLimits(uint256 _stakingModuleId, uint256 _nodeOperatorId, uint256 _targetLimitMode, uint256 _targetLimit)",
];

/// Built-in functions whose tuples have named components (which the one-line form cannot name).
const BUILT_IN_JSON: &str = r#"[
 {"type":"function","name":"modifyAllocations","stateMutability":"nonpayable","outputs":[],"inputs":[
  {"name":"operator","type":"address"},
  {"name":"params","type":"tuple[]","components":[
   {"name":"operatorSet","type":"tuple","components":[{"name":"avs","type":"address"},{"name":"id","type":"uint32"}]},
   {"name":"strategies","type":"address[]"},
   {"name":"newMagnitudes","type":"uint64[]"}]}]}
]"#;

/// Functions by selector.
#[derive(Debug, Clone, Default)]
pub struct StsDecoder {
    by_selector: HashMap<[u8; 4], Function>,
}

impl StsDecoder {
    /// The built-in functions plus those of the ABI `files` (relative to `base`), which win
    /// on a clash.
    pub fn new(base: &Path, files: &[PathBuf]) -> Result<Self, String> {
        let mut d = Self::default();
        for sig in BUILT_IN {
            let f = Function::parse(sig).map_err(|e| format!("built-in `{sig}`: {e}"))?;
            d.by_selector.insert(f.selector().0, f);
        }
        for f in steward_chain::abi::parse_abi_json(BUILT_IN_JSON)?.functions() {
            d.by_selector.insert(f.selector().0, f.clone());
        }
        for f in files {
            let path = if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            };
            let abi = steward_chain::abi::load_abi_file(&path)?;
            for func in abi.functions() {
                d.by_selector.insert(func.selector().0, func.clone());
            }
        }
        Ok(d)
    }

    /// The call's `dataDecoded`, or `None` when there is no data or no known function fits
    /// (as the Safe Transaction Service answers `null`).
    pub fn data_decoded(&self, data: &[u8]) -> Option<Value> {
        let selector: [u8; 4] = data.get(..4)?.try_into().ok()?;
        let f = self.by_selector.get(&selector)?;
        let values = f.abi_decode_input(&data[4..]).ok()?;
        let mut parameters = Vec::with_capacity(values.len());
        for (i, (param, value)) in f.inputs.iter().zip(&values).enumerate() {
            let mut p = json!({
                "name": param.name,
                "type": param.selector_type(),
                "value": sts_value(value),
            });
            if i == 0 && selector == multisend::selector() {
                if let Some(calls) = multisend::decode(data) {
                    p["valueDecoded"] = Value::Array(
                        calls
                            .iter()
                            .map(|c| {
                                json!({
                                    "operation": c.operation,
                                    "to": c.to.to_checksum(None),
                                    "value": c.value.to_string(),
                                    "data": if c.data.is_empty() { Value::Null } else { json!(hex_string(&c.data)) },
                                    "dataDecoded": self.data_decoded(&c.data),
                                })
                            })
                            .collect(),
                    );
                }
            }
            parameters.push(p);
        }
        Some(json!({ "method": f.name, "parameters": parameters }))
    }
}

/// `0x` and lowercase hex.
pub fn hex_string(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn sts_value(v: &DynSolValue) -> Value {
    match v {
        DynSolValue::Address(a) => json!(a.to_checksum(None)),
        DynSolValue::Bool(b) => json!(b),
        DynSolValue::Uint(n, _) => json!(n.to_string()),
        DynSolValue::Int(n, _) => json!(n.to_string()),
        DynSolValue::FixedBytes(word, size) => json!(hex_string(&word[..*size])),
        DynSolValue::Bytes(b) => json!(hex_string(b)),
        DynSolValue::String(s) => json!(s),
        DynSolValue::Function(f) => json!(hex_string(f.as_slice())),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(sts_value).collect())
        }
        #[allow(unreachable_patterns)] // custom structs exist only with alloy's eip712 feature
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, Bytes, U256};
    use steward_safe::multisend::Call;

    fn calldata(sig: &str, args: &[DynSolValue]) -> Vec<u8> {
        Function::parse(sig)
            .unwrap()
            .abi_encode_input(args)
            .unwrap()
    }

    #[test]
    fn a_transfer_is_decoded_like_the_transaction_service_does() {
        let d = StsDecoder::new(Path::new("."), &[]).unwrap();
        let to = Address::repeat_byte(0xab);
        let data = calldata(
            "transfer(address,uint256)",
            &[
                DynSolValue::Address(to),
                DynSolValue::Uint(U256::from(10).pow(U256::from(24)), 256),
            ],
        );
        let v = d.data_decoded(&data).unwrap();
        assert_eq!(
            v,
            json!({"method": "transfer", "parameters": [
                {"name": "to", "type": "address", "value": to.to_checksum(None)},
                {"name": "value", "type": "uint256", "value": "1000000000000000000000000"},
            ]})
        );
        assert_eq!(d.data_decoded(&[]), None);
        assert_eq!(d.data_decoded(&[1, 2, 3, 4, 5]), None, "unknown selector");
        assert_eq!(d.data_decoded(&data[..20]), None, "truncated arguments");
    }

    #[test]
    fn a_multisend_batch_decodes_call_by_call_and_tuples_become_lists() {
        let d = StsDecoder::new(Path::new("."), &[]).unwrap();
        let inner = calldata(
            "modifyAllocations(address,((address,uint32),address[],uint64[])[])",
            &[
                DynSolValue::Address(Address::repeat_byte(1)),
                DynSolValue::Array(vec![DynSolValue::Tuple(vec![
                    DynSolValue::Tuple(vec![
                        DynSolValue::Address(Address::repeat_byte(2)),
                        DynSolValue::Uint(U256::from(7), 32),
                    ]),
                    DynSolValue::Array(vec![DynSolValue::Address(Address::repeat_byte(3))]),
                    DynSolValue::Array(vec![DynSolValue::Uint(U256::from(5), 64)]),
                ])]),
            ],
        );
        let batch = multisend::encode(&[
            Call {
                operation: 0,
                to: Address::repeat_byte(9),
                value: U256::ZERO,
                data: Bytes::from(inner),
            },
            Call {
                operation: 0,
                to: Address::repeat_byte(8),
                value: U256::from(3),
                data: Bytes::new(),
            },
        ]);
        let v = d.data_decoded(&batch).unwrap();
        assert_eq!(v["method"], "multiSend");
        let p = &v["parameters"][0];
        assert_eq!(p["name"], "transactions");
        assert_eq!(p["type"], "bytes");
        let calls = p["valueDecoded"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["operation"], 0);
        assert_eq!(calls[0]["dataDecoded"]["method"], "modifyAllocations");
        let params = &calls[0]["dataDecoded"]["parameters"][1];
        assert_eq!(params["type"], "((address,uint32),address[],uint64[])[]");
        assert_eq!(
            params["value"],
            json!([[
                [Address::repeat_byte(2).to_checksum(None), "7"],
                [Address::repeat_byte(3).to_checksum(None)],
                ["5"]
            ]])
        );
        assert_eq!(calls[1]["value"], "3");
        assert_eq!(calls[1]["data"], Value::Null);
        assert_eq!(calls[1]["dataDecoded"], Value::Null);
    }
}
