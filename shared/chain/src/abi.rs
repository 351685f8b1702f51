//! ABIs known only at run time: loading them, reading arguments written as text, and turning
//! decoded values into the JSON every Steward payload uses.
//!
//! Payload conventions (see `steward-events`): addresses EIP-55 checksummed, integers as
//! decimal strings (they exceed what a JSON number holds exactly), bytes as `0x` hex, tuples
//! as objects keyed by component name (by position, `"0"`, `"1"`, … when unnamed), arrays as
//! arrays.

use std::path::Path;

use alloy::dyn_abi::{DynSolType, DynSolValue, Specifier};
use alloy::json_abi::{Event, EventParam, Function, JsonAbi, Param};
use serde_json::{Map, Value};

/// Reads a JSON ABI file: a bare ABI array, or a compiler/Hardhat/Foundry artifact with an
/// `abi` field.
pub fn load_abi_file(path: &Path) -> Result<JsonAbi, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read ABI file {}: {e}", path.display()))?;
    parse_abi_json(&text).map_err(|e| format!("ABI file {}: {e}", path.display()))
}

/// Parses a JSON ABI: a bare array, or an object with an `abi` field.
pub fn parse_abi_json(text: &str) -> Result<JsonAbi, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let abi = match value {
        Value::Object(mut o) => o
            .remove("abi")
            .ok_or("a JSON object without an `abi` field; expected an ABI array or an artifact")?,
        other => other,
    };
    serde_json::from_value(abi).map_err(|e| format!("not a valid ABI: {e}"))
}

/// An event given as a full signature (`event Transfer(address indexed from, …)`, the
/// `event` keyword optional).
pub fn parse_event_signature(text: &str) -> Result<Event, String> {
    let t = text.trim();
    let t = t.strip_prefix("event ").unwrap_or(t);
    Event::parse(t).map_err(|e| format!("not an event signature: {e}"))
}

/// A function given as a full signature (`function balanceOf(address) view returns
/// (uint256)`, the `function` keyword optional).
pub fn parse_function_signature(text: &str) -> Result<Function, String> {
    let t = text.trim();
    let t = t.strip_prefix("function ").unwrap_or(t);
    Function::parse(t).map_err(|e| format!("not a function signature: {e}"))
}

/// Reads `args` (text, one per input) as values of `inputs`' types.
pub fn coerce_args(inputs: &[Param], args: &[&str]) -> Result<Vec<DynSolValue>, String> {
    if inputs.len() != args.len() {
        return Err(format!(
            "takes {} argument{}, {} given",
            inputs.len(),
            if inputs.len() == 1 { "" } else { "s" },
            args.len()
        ));
    }
    inputs
        .iter()
        .zip(args)
        .enumerate()
        .map(|(i, (param, arg))| {
            coerce_arg(param, arg).map_err(|e| format!("argument {}: {e}", i + 1))
        })
        .collect()
}

/// Reads one argument as a value of `param`'s type.
pub fn coerce_arg(param: &Param, arg: &str) -> Result<DynSolValue, String> {
    let ty = param
        .resolve()
        .map_err(|e| format!("unsupported type {}: {e}", param.ty))?;
    ty.coerce_str(arg.trim()).map_err(|e| {
        format!(
            "`{arg}` is not {}{}",
            a_or_an(&param.selector_type()),
            detail(&e.to_string())
        )
    })
}

/// `an address`, `a uint256`.
pub fn a_or_an(ty: &str) -> String {
    let article = match ty.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    };
    format!("{article} {ty}")
}

/// The useful part of a parser error: its last line (the others echo the input and point
/// at it with a caret), in parentheses; nothing when it says nothing.
fn detail(error: &str) -> String {
    let last = error
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains('^') && !l.ends_with(':'));
    match last {
        Some(l) if !l.contains("parser error") => format!(" ({l})"),
        _ => String::new(),
    }
}

/// A decoded value as payload JSON, `param` giving tuple component names.
pub fn value_to_json(value: &DynSolValue, components: &[Param]) -> Value {
    match value {
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Int(i, _) => Value::String(i.to_string()),
        DynSolValue::Uint(u, _) => Value::String(u.to_string()),
        DynSolValue::FixedBytes(word, size) => {
            Value::String(format!("0x{}", hex_lower(&word[..(*size).min(32)])))
        }
        DynSolValue::Address(a) => Value::String(checksummed(a)),
        DynSolValue::Function(f) => Value::String(format!("0x{}", hex_lower(f.as_slice()))),
        DynSolValue::Bytes(b) => Value::String(format!("0x{}", hex_lower(b))),
        DynSolValue::String(s) => Value::String(s.clone()),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            Value::Array(items.iter().map(|v| value_to_json(v, components)).collect())
        }
        DynSolValue::Tuple(items) => {
            let mut map = Map::new();
            for (i, item) in items.iter().enumerate() {
                let (name, inner): (String, &[Param]) = match components.get(i) {
                    Some(p) if !p.name.is_empty() => (p.name.clone(), &p.components),
                    Some(p) => (i.to_string(), &p.components),
                    None => (i.to_string(), &[]),
                };
                map.insert(name, value_to_json(item, inner));
            }
            Value::Object(map)
        }
        #[allow(unreachable_patterns)]
        other => Value::String(format!("{other:?}")),
    }
}

/// EIP-55 form of `a`, remembered: the same few addresses (a token, a pool, a sender) recur
/// in thousands of logs, and each checksum costs a Keccak.
pub fn checksummed(a: &alloy::primitives::Address) -> String {
    use std::cell::RefCell;
    use std::collections::HashMap;
    const MAX: usize = 4096;
    thread_local! {
        static CACHE: RefCell<HashMap<alloy::primitives::Address, String>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(s) = c.get(a) {
            return s.clone();
        }
        if c.len() >= MAX {
            c.clear();
        }
        let s = a.to_checksum(None);
        c.insert(*a, s.clone());
        s
    })
}

/// Named values (`args` of an event, outputs of a call) as a JSON object: by name, or by
/// position (`"0"`, `"1"`, …) when unnamed.
pub fn named_values<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a [Param])>,
    values: &[DynSolValue],
) -> Map<String, Value> {
    let mut map = Map::new();
    for (i, ((name, components), value)) in params.into_iter().zip(values).enumerate() {
        let key = if name.is_empty() {
            i.to_string()
        } else {
            name.to_owned()
        };
        map.insert(key, value_to_json(value, components));
    }
    map
}

/// The decoded arguments of `event`, in declaration order, by name.
pub fn event_args(
    event: &Event,
    indexed: &[DynSolValue],
    body: &[DynSolValue],
) -> Map<String, Value> {
    let mut map = Map::new();
    let (mut i, mut b) = (0, 0);
    for (pos, p) in event.inputs.iter().enumerate() {
        let value = if p.indexed {
            i += 1;
            indexed.get(i - 1)
        } else {
            b += 1;
            body.get(b - 1)
        };
        let key = if p.name.is_empty() {
            format!("arg{pos}")
        } else {
            p.name.clone()
        };
        if let Some(v) = value {
            map.insert(key, indexed_value_to_json(p, v));
        }
    }
    map
}

/// Indexed dynamic values (strings, bytes, arrays, tuples) are only their hash in a topic;
/// they decode as a 32-byte word and are shown as that hash.
fn indexed_value_to_json(p: &EventParam, v: &DynSolValue) -> Value {
    value_to_json(v, &p.components)
}

/// The canonical signature of an event, e.g. `Transfer(address,address,uint256)`.
pub fn event_signature(event: &Event) -> String {
    event.signature()
}

/// Lower-case hex without `0x`.
pub fn hex_lower(bytes: &[u8]) -> String {
    alloy::primitives::hex::encode(bytes)
}

/// The solidity type of a parameter, e.g. `address` or `(address,uint32)[]`.
pub fn param_type(p: &Param) -> Result<DynSolType, String> {
    p.resolve()
        .map_err(|e| format!("unsupported type {}: {e}", p.ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::dyn_abi::{EventExt, JsonAbiExt};
    use alloy::primitives::{address, Address, LogData, B256, U256};

    #[test]
    fn transfer_decodes_to_checksummed_addresses_and_decimal_strings() {
        let event = parse_event_signature(
            "event Transfer(address indexed from, address indexed to, uint256 value)",
        )
        .unwrap();
        // EIP-55's own test vectors.
        let from = address!("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed");
        let to = address!("0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359");
        let data = U256::from(10u64).pow(U256::from(30u64));
        let log = LogData::new_unchecked(
            vec![event.selector(), from.into_word(), to.into_word()],
            data.to_be_bytes::<32>().to_vec().into(),
        );
        let decoded = event.decode_log(&log).unwrap();
        let args = event_args(&event, &decoded.indexed, &decoded.body);
        assert_eq!(args["from"], "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
        assert_eq!(args["to"], "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359");
        assert_eq!(args["value"], "1000000000000000000000000000000");
        assert_eq!(event_signature(&event), "Transfer(address,address,uint256)");
    }

    #[test]
    fn tuples_keep_component_names() {
        let abi = parse_abi_json(
            r#"[{"type":"event","name":"Added","anonymous":false,"inputs":[
                {"name":"operator","type":"address","indexed":true},
                {"name":"operatorSet","type":"tuple","indexed":false,"components":[
                    {"name":"avs","type":"address"},{"name":"id","type":"uint32"}]}]}]"#,
        )
        .unwrap();
        let event = abi.events().next().unwrap();
        let body = DynSolValue::Tuple(vec![DynSolValue::Tuple(vec![
            DynSolValue::Address(Address::repeat_byte(0x11)),
            DynSolValue::Uint(U256::from(7), 32),
        ])])
        .abi_encode_params();
        let log = LogData::new_unchecked(
            vec![event.selector(), B256::left_padding_from(&[0x22; 20])],
            body.into(),
        );
        let decoded = event.decode_log(&log).unwrap();
        let args = event_args(event, &decoded.indexed, &decoded.body);
        assert_eq!(args["operatorSet"]["id"], "7");
        assert_eq!(
            args["operatorSet"]["avs"],
            Address::repeat_byte(0x11).to_checksum(None)
        );
    }

    #[test]
    fn args_are_read_by_type_with_clear_errors() {
        let f = parse_function_signature(
            "function f(address a, uint256 n, bool b, uint8[] xs) view returns (uint256)",
        )
        .unwrap();
        let vals = coerce_args(
            &f.inputs,
            &[
                "0x00000000000000000000000000000000000000aa",
                "0x10",
                "true",
                "[1, 2]",
            ],
        )
        .unwrap();
        assert_eq!(vals[1], DynSolValue::Uint(U256::from(16), 256));
        let data = f.abi_encode_input(&vals).unwrap();
        assert_eq!(&data[..4], f.selector().as_slice());
        let err = coerce_args(&f.inputs, &["nope", "1", "true", "[]"]).unwrap_err();
        assert!(
            err.contains("argument 1") && err.contains("address"),
            "{err}"
        );
        let err =
            coerce_args(&f.inputs, &["0x00000000000000000000000000000000000000aa"]).unwrap_err();
        assert!(err.contains("takes 4 arguments, 1 given"), "{err}");
    }

    #[test]
    fn artifacts_and_bare_arrays_both_load() {
        assert!(parse_abi_json(r#"{"abi": []}"#).is_ok());
        assert!(parse_abi_json("[]").is_ok());
        assert!(parse_abi_json(r#"{"bytecode": "0x"}"#)
            .unwrap_err()
            .contains("without an `abi` field"));
    }
}
