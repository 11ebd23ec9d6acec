//! Strict JSON: the one reading of a body or event that every inspector shares.
//!
//! `serde_json` alone keeps the *last* of two equal keys, while other parsers (and the upstream
//! or client behind Palisade) may keep the first: an inspector and its peer would then read two
//! different documents. [`parse`] refuses duplicate keys at any depth and bounds nesting (via
//! `serde_json`'s recursion limit), so what Palisade decides on is the one reading of the
//! bytes; what it forwards is re-serialized from that reading ([`to_bytes`]).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why bytes are not one unambiguous JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `bytes` as one JSON document, refusing duplicate object keys, invalid UTF-8, lone
/// surrogates and nesting past `serde_json`'s limit (128).
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    #[cfg(test)]
    PARSES.with(|n| n.set(n.get() + 1));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue
        .deserialize(&mut de)
        .map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
thread_local! {
    /// Parses made on this thread (tests count them: each event is parsed once).
    pub static PARSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// [`parse`] of a string.
pub fn parse_str(text: &str) -> Result<Value, JsonError> {
    parse(text.as_bytes())
}

/// The canonical bytes of a parsed value (what is forwarded).
pub fn to_bytes(value: &Value) -> bytes::Bytes {
    // Serializing a `Value` cannot fail (its keys are strings).
    bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Whether a client could read `text` as JSON although [`parse`] refused it — so relaying it as
/// plain text would let the scanned reading (raw text, escapes undecoded) differ from the
/// client's. True when it opens like a JSON object or string, or like an array whose first
/// element is a JSON value (`[{`, `["`, `[1`, `[]` …). Other JSON readers accept what [`parse`]
/// refuses (duplicate keys, lone surrogates, deeper nesting, Python's `NaN`), so a failed strict
/// parse alone says nothing. Plain-text conventions stay text: `[DONE]`, `hello`.
pub fn might_be_json(text: &str) -> bool {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r']);
    match t.as_bytes() {
        [b'{' | b'"', ..] => true,
        [b'[', rest @ ..] => rest
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .is_none_or(|b| {
                matches!(
                    b,
                    b'{' | b'[' | b'"' | b']' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
                )
            }),
        _ => false,
    }
}

/// Two JSON-RPC ids are the same id: equal strings, or numbers of equal value (`1` and `1.0`),
/// as JavaScript and Python clients compare them.
pub fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reading_or_none() {
        assert_eq!(parse(br#"{"a":1,"b":[true,null]}"#).unwrap()["b"][0], true);
        for bad in [
            &br#"{"tools":[],"tools":[{"name":"rm"}]}"#[..],
            br#"{"p":{"name":"a","name":"b"}}"#,
            br#"[{"x":1,"x":1}]"#,
            br#""\ud800""#,
            b"{\"a\":1} trailing",
            b"\xff",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(deep.as_bytes()).is_err(), "nesting is bounded");
        // Escapes decode: the inspector reads what the client reads.
        let v = parse(br#"{"type":"TOOL\u005fCALL\u005fSTART"}"#).unwrap();
        assert_eq!(v["type"], "TOOL_CALL_START");
    }

    #[test]
    fn what_a_client_might_read_as_json() {
        for json_like in [
            r#"{"delta":"a","delta":"b"}"#,
            "  {broken",
            r#""\ud800""#,
            r#"[{"a":NaN}]"#,
            "[]",
            "[ 1, 2",
        ] {
            assert!(might_be_json(json_like), "{json_like}");
        }
        for text in ["[DONE]", "hello {world}", "", "true story", "[ DONE ]"] {
            assert!(!might_be_json(text), "{text}");
        }
    }

    #[test]
    fn ids_compare_by_value() {
        let one = Value::from(1);
        assert!(same_id(&one, &parse(b"1.0").unwrap()));
        assert!(!same_id(&one, &Value::from("1")));
        assert!(same_id(&Value::from("a"), &Value::from("a")));
    }

    /// What is forwarded is read back as the value decided on: a float re-encoded by the proxy
    /// parses to the same `f64` (found by the `dialect_request` fuzz target, where `1.5e-47`
    /// came back as `1.4999999999999996e-47` before `serde_json`'s `float_roundtrip`).
    #[test]
    fn floats_survive_re_encoding_exactly() {
        for text in [
            "1.5e-47",
            "1.4999999999999998e-47",
            "0.1",
            "2.2250738585072014e-308",
        ] {
            let decided = parse(format!("{{\"x\":{text}}}").as_bytes()).unwrap();
            let forwarded = to_bytes(&decided);
            let read = parse(&forwarded).unwrap();
            assert_eq!(
                read["x"].as_f64().map(f64::to_bits),
                decided["x"].as_f64().map(f64::to_bits),
                "{text} forwarded as {}",
                String::from_utf8_lossy(&forwarded)
            );
            assert_eq!(to_bytes(&read), forwarded, "{text}: re-encoding is stable");
        }
    }
}
