//! A compact JSON writer for the two hot paths of a catch-up: an envelope's wire form and a
//! `chain.log.observed` payload, hundreds of thousands of each per minute.
//!
//! serde_json escapes a string byte by byte (a table lookup per byte); almost every string
//! here (hashes, addresses, keys, names, timestamps) needs no escaping, so these functions
//! check a whole string first (a branch-free pass the compiler vectorises) and copy it as it
//! is, falling back to serde_json for a string that needs escaping. The output is exactly
//! serde_json's compact form (tests compare them byte for byte), so readers see no
//! difference.

use serde_json::{Map, Value};

/// Writes `s` as a JSON string.
pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Writes `"name":` (the name is one of ours: plain ASCII needing no escape).
pub(crate) fn field(out: &mut Vec<u8>, first: bool, name: &str) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes `,"name":"value"`: a string field after the first (see [`field`] and [`str`]).
pub(crate) fn str_field(out: &mut Vec<u8>, name: &str, value: &str) {
    field(out, false, name);
    str(out, value);
}

/// Writes an unsigned integer.
pub(crate) fn uint(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// Writes a JSON object.
pub(crate) fn object(out: &mut Vec<u8>, m: &Map<String, Value>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// Writes any JSON value.
pub(crate) fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => str(out, s),
        Value::Object(m) => object(out, m),
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, v);
            }
            out.push(b']');
        }
        // Numbers, booleans and null: serde_json's own formatting.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ours(v: &Value) -> String {
        let mut out = Vec::new();
        value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "0x9a1c37dbe1d8e2a1a3f0b0c2d1e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2",
            "quote \" inside",
            "back\\slash",
            "line\nfeed\ttab\r\u{8}\u{c}",
            "control \u{1} \u{1f} and del \u{7f}",
            "unicode é ✓ 🦀",
            "</script>",
        ] {
            let mut out = Vec::new();
            str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let v = json!({
            "from": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "value": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
            "n": 42, "neg": -7, "f": 1.5, "t": true, "nil": null,
            "nested": {"a\"b": ["x", 1, {"y": [null, false]}], "empty": {}, "none": []},
            "odd key \n": "tab\there"
        });
        assert_eq!(ours(&v), serde_json::to_string(&v).unwrap());
        assert_eq!(ours(&json!([])), "[]");
    }

    #[test]
    fn integers_and_fields() {
        let mut out = Vec::new();
        out.push(b'{');
        field(&mut out, true, "a");
        uint(&mut out, u64::MAX);
        field(&mut out, false, "b");
        uint(&mut out, 0);
        out.push(b'}');
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{{\"a\":{},\"b\":0}}", u64::MAX)
        );
    }
}
