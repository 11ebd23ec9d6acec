//! JSON values compared as far as `serde_json` can promise a round trip of floats today.
//!
//! Without its `float_roundtrip` feature, `serde_json` parses floats with "best effort"
//! precision: it may read the shortest representation it wrote itself one or two ULPs off (it
//! reads `1.5e-47`, writes `1.4999999999999998e-47`, and reads that back as
//! `1.4999999999999996e-47`). So a float in a body or event can drift by an ULP each time the
//! proxy re-encodes it. [`round_trips`] detects whether the build has the feature; when it
//! does, [`same`] is plain equality and the targets also compare bytes.

use serde_json::Value;

/// Whether `serde_json` reads back exactly the floats it writes (the `float_roundtrip` feature).
pub fn round_trips() -> bool {
    // Rust's own float parser is correctly rounded; `serde_json`'s default one is not.
    serde_json::from_str::<f64>("1.4999999999999998e-47").ok() == Some(1.4999999999999998e-47)
}

/// Whether `a` and `b` are the same document: equal, except that floats may be a few ULPs apart
/// when `serde_json` does not round-trip them.
pub fn same(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    if round_trips() {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) if x.is_f64() && y.is_f64() && p.signum() == q.signum() => {
                p.to_bits().abs_diff(q.to_bits()) <= 4
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, p), (l, q))| k == l && same(p, q))
        }
        _ => false,
    }
}

/// Whether re-encoding `v` must give the same bytes again: always when floats round-trip,
/// otherwise when it holds no float.
pub fn bytes_are_stable(v: &Value) -> bool {
    fn has_float(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_f64(),
            Value::Array(list) => list.iter().any(has_float),
            Value::Object(map) => map.values().any(has_float),
            _ => false,
        }
    }
    round_trips() || !has_float(v)
}
