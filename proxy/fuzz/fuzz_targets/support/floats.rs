//! JSON values compared exactly, floats included.
//!
//! Without its `float_roundtrip` feature, `serde_json` parses floats with "best effort"
//! precision: it may read the shortest representation it wrote itself one or two ULPs off (it
//! reads `1.5e-47`, writes `1.4999999999999998e-47`, and reads that back as
//! `1.4999999999999996e-47`), so a float would drift each time the proxy re-encodes it — found
//! by `dialect_request`. The workspace turns the feature on; these helpers assert it, so a build
//! that lost it (a dependency's feature set changing) fails here at once instead of drifting.

use serde_json::Value;

/// Whether `serde_json` reads back exactly the floats it writes (the `float_roundtrip` feature).
fn round_trips() -> bool {
    // Rust's own float parser is correctly rounded; `serde_json`'s default one is not.
    serde_json::from_str::<f64>("1.4999999999999998e-47").ok() == Some(1.4999999999999998e-47)
}

fn assert_round_trips() {
    assert!(
        round_trips(),
        "serde_json was built without float_roundtrip: re-encoded floats would drift"
    );
}

/// Whether `a` and `b` are the same document (exact equality, floats included).
pub fn same(a: &Value, b: &Value) -> bool {
    assert_round_trips();
    a == b
}

/// Whether re-encoding `v` must give the same bytes again: always, floats included.
pub fn bytes_are_stable(_v: &Value) -> bool {
    assert_round_trips();
    true
}
