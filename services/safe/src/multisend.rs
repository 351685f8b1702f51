//! MultiSend batches: several calls in one Safe transaction.
//!
//! Each call is packed as `uint8 operation ‖ address to ‖ uint256 value ‖ uint256 dataLength ‖
//! bytes data` (no padding), the packs concatenated and passed to `multiSend(bytes)`, which the
//! Safe reaches by DELEGATECALL. `MultiSendCallOnly` refuses DELEGATECALL inside the batch;
//! it is used whenever no call of the batch needs one.

use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use alloy::json_abi::Function;
use alloy::primitives::{Address, Bytes, U256};

/// One call of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub operation: u8,
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
}

static MULTI_SEND: LazyLock<Function> = LazyLock::new(|| {
    Function::parse("multiSend(bytes transactions)").expect("multiSend's signature parses")
});

/// `multiSend(bytes)`'s selector.
pub fn selector() -> [u8; 4] {
    MULTI_SEND.selector().0
}

/// The packed batch.
pub fn pack(calls: &[Call]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in calls {
        out.push(c.operation);
        out.extend_from_slice(c.to.as_slice());
        out.extend_from_slice(&c.value.to_be_bytes::<32>());
        out.extend_from_slice(&U256::from(c.data.len()).to_be_bytes::<32>());
        out.extend_from_slice(&c.data);
    }
    out
}

/// `multiSend(pack(calls))`.
pub fn encode(calls: &[Call]) -> Bytes {
    MULTI_SEND
        .abi_encode_input(&[DynSolValue::Bytes(pack(calls))])
        .unwrap_or_default()
        .into()
}

/// The calls of a packed batch; `None` if it is not one.
pub fn unpack(mut packed: &[u8]) -> Option<Vec<Call>> {
    let mut out = Vec::new();
    while !packed.is_empty() {
        if packed.len() < 85 {
            return None;
        }
        let operation = packed[0];
        let to = Address::from_slice(&packed[1..21]);
        let value = U256::from_be_slice(&packed[21..53]);
        let len = usize::try_from(U256::from_be_slice(&packed[53..85])).ok()?;
        let end = 85usize.checked_add(len)?;
        if packed.len() < end {
            return None;
        }
        out.push(Call {
            operation,
            to,
            value,
            data: Bytes::copy_from_slice(&packed[85..end]),
        });
        packed = &packed[end..];
    }
    Some(out)
}

/// The calls of `multiSend(bytes)` calldata; `None` if it is not such a call.
pub fn decode(calldata: &[u8]) -> Option<Vec<Call>> {
    if calldata.len() < 4 || calldata[..4] != selector() {
        return None;
    }
    let args = MULTI_SEND.abi_decode_input(&calldata[4..]).ok()?;
    match args.first() {
        Some(DynSolValue::Bytes(b)) => unpack(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_round_trip() {
        let calls = vec![
            Call {
                operation: 0,
                to: Address::repeat_byte(1),
                value: U256::from(5),
                data: Bytes::from(vec![0xde, 0xad]),
            },
            Call {
                operation: 1,
                to: Address::repeat_byte(2),
                value: U256::ZERO,
                data: Bytes::new(),
            },
        ];
        let packed = pack(&calls);
        assert_eq!(packed.len(), 85 + 2 + 85);
        assert_eq!(packed[0], 0);
        assert_eq!(&packed[1..21], Address::repeat_byte(1).as_slice());
        assert_eq!(unpack(&packed), Some(calls.clone()));
        assert_eq!(decode(&encode(&calls)), Some(calls));
        assert_eq!(unpack(&packed[..100]), None, "a truncated batch is not one");
        assert_eq!(hex(selector()), "8d80ff0a");
    }

    fn hex(b: [u8; 4]) -> String {
        alloy::primitives::hex::encode(b)
    }
}
