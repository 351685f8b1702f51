//! Calls described for people: the function and its arguments by name, from the configured
//! ABIs and a few every Safe meets (ERC-20, the Safe's own owner management), nested through
//! MultiSend.

use std::collections::HashMap;
use std::path::Path;

use alloy::dyn_abi::JsonAbiExt;
use alloy::json_abi::{Function, JsonAbi};
use alloy::primitives::{Address, U256};
use serde_json::{json, Map, Value};
use steward_chain::abi::{load_abi_file, named_values, parse_abi_json};

use crate::multisend;

/// Functions every Safe meets, for when no configured ABI knows a selector.
const BUILT_IN: &str = r#"[
 {"type":"function","name":"transfer","inputs":[{"name":"to","type":"address"},{"name":"amount","type":"uint256"}],"outputs":[{"type":"bool","name":""}],"stateMutability":"nonpayable"},
 {"type":"function","name":"approve","inputs":[{"name":"spender","type":"address"},{"name":"amount","type":"uint256"}],"outputs":[{"type":"bool","name":""}],"stateMutability":"nonpayable"},
 {"type":"function","name":"transferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint256"}],"outputs":[{"type":"bool","name":""}],"stateMutability":"nonpayable"},
 {"type":"function","name":"addOwnerWithThreshold","inputs":[{"name":"owner","type":"address"},{"name":"_threshold","type":"uint256"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"removeOwner","inputs":[{"name":"prevOwner","type":"address"},{"name":"owner","type":"address"},{"name":"_threshold","type":"uint256"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"swapOwner","inputs":[{"name":"prevOwner","type":"address"},{"name":"oldOwner","type":"address"},{"name":"newOwner","type":"address"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"changeThreshold","inputs":[{"name":"_threshold","type":"uint256"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"enableModule","inputs":[{"name":"module","type":"address"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"disableModule","inputs":[{"name":"prevModule","type":"address"},{"name":"module","type":"address"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"setGuard","inputs":[{"name":"guard","type":"address"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"liquidationCall","inputs":[{"name":"collateralAsset","type":"address"},{"name":"debtAsset","type":"address"},{"name":"user","type":"address"},{"name":"debtToCover","type":"uint256"},{"name":"receiveAToken","type":"bool"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"updateTargetValidatorsLimits","inputs":[{"name":"_stakingModuleId","type":"uint256"},{"name":"_nodeOperatorId","type":"uint256"},{"name":"_targetLimitMode","type":"uint256"},{"name":"_targetLimit","type":"uint256"}],"outputs":[],"stateMutability":"nonpayable"},
 {"type":"function","name":"modifyAllocations","inputs":[{"name":"operator","type":"address"},{"name":"params","type":"tuple[]","components":[{"name":"operatorSet","type":"tuple","components":[{"name":"avs","type":"address"},{"name":"id","type":"uint32"}]},{"name":"strategies","type":"address[]"},{"name":"newMagnitudes","type":"uint64[]"}]}],"outputs":[],"stateMutability":"nonpayable"}
]"#;

/// Functions by selector.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    by_selector: HashMap<[u8; 4], Function>,
}

impl Decoder {
    /// The built-in functions plus those of `files` (which win on a clash).
    pub fn new(base: &Path, files: &[std::path::PathBuf]) -> Result<Self, String> {
        let mut d = Self::default();
        d.add(&parse_abi_json(BUILT_IN)?);
        for f in files {
            let path = if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            };
            d.add(&load_abi_file(&path)?);
        }
        Ok(d)
    }

    fn add(&mut self, abi: &JsonAbi) {
        for f in abi.functions() {
            self.by_selector.insert(f.selector().0, f.clone());
        }
    }

    /// One call described: `{to, value, operation, method, args}` (or `data` when no ABI knows
    /// it), with `calls` for a MultiSend batch.
    pub fn describe(&self, to: Address, value: U256, data: &[u8], operation: u8) -> Value {
        let mut out = Map::new();
        out.insert("to".into(), json!(to.to_checksum(None)));
        out.insert("value".into(), json!(value.to_string()));
        out.insert(
            "operation".into(),
            json!(if operation == 1 {
                "delegatecall"
            } else {
                "call"
            }),
        );
        if data.is_empty() {
            out.insert(
                "method".into(),
                json!(if value.is_zero() {
                    "(no call)"
                } else {
                    "(transfer of the native coin)"
                }),
            );
            return Value::Object(out);
        }
        if let Some(calls) = multisend::decode(data) {
            out.insert("method".into(), json!("multiSend"));
            out.insert(
                "calls".into(),
                Value::Array(
                    calls
                        .iter()
                        .map(|c| self.describe(c.to, c.value, &c.data, c.operation))
                        .collect(),
                ),
            );
            return Value::Object(out);
        }
        let selector: Option<[u8; 4]> = data.get(..4).and_then(|s| s.try_into().ok());
        match selector.and_then(|s| self.by_selector.get(&s)) {
            Some(f) => match f.abi_decode_input(&data[4..]) {
                Ok(values) => {
                    out.insert("method".into(), json!(f.name));
                    out.insert("signature".into(), json!(f.signature()));
                    out.insert(
                        "args".into(),
                        Value::Object(named_values(
                            f.inputs
                                .iter()
                                .map(|p| (p.name.as_str(), p.components.as_slice())),
                            &values,
                        )),
                    );
                }
                Err(_) => {
                    out.insert("method".into(), json!(f.name));
                    out.insert(
                        "error".into(),
                        json!("the arguments do not decode with the known ABI"),
                    );
                    out.insert(
                        "data".into(),
                        json!(format!("0x{}", alloy::primitives::hex::encode(data))),
                    );
                }
            },
            None => {
                out.insert("method".into(), json!("(unknown function)"));
                out.insert(
                    "data".into(),
                    json!(format!("0x{}", alloy::primitives::hex::encode(data))),
                );
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multisend::Call;
    use alloy::primitives::Bytes;

    #[test]
    fn batches_are_described_call_by_call() {
        let d = Decoder::new(Path::new("."), &[]).unwrap();
        let transfer = alloy::primitives::hex::decode(
            "a9059cbb0000000000000000000000005aaeb6053f3e94c9b9a09f33669435e7ef1beaed00000000000000000000000000000000000000000000000000000000000003e8",
        )
        .unwrap();
        let batch = multisend::encode(&[
            Call {
                operation: 0,
                to: Address::repeat_byte(1),
                value: U256::ZERO,
                data: Bytes::from(transfer),
            },
            Call {
                operation: 0,
                to: Address::repeat_byte(2),
                value: U256::from(5),
                data: Bytes::new(),
            },
            Call {
                operation: 0,
                to: Address::repeat_byte(3),
                value: U256::ZERO,
                data: Bytes::from(vec![1, 2, 3, 4, 5]),
            },
        ]);
        let v = d.describe(Address::repeat_byte(9), U256::ZERO, &batch, 1);
        assert_eq!(v["method"], "multiSend");
        assert_eq!(v["operation"], "delegatecall");
        assert_eq!(v["calls"][0]["method"], "transfer");
        assert_eq!(
            v["calls"][0]["args"]["to"],
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
        assert_eq!(v["calls"][0]["args"]["amount"], "1000");
        assert_eq!(v["calls"][1]["method"], "(transfer of the native coin)");
        assert_eq!(v["calls"][2]["method"], "(unknown function)");
    }
}
