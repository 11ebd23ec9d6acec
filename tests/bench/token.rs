//! `bench-token DIR`: writes a fresh ES256 JWKS to `DIR/jwks.json` and prints a token it
//! verifies (issuer `https://bench.local`, audience `palisade`, valid 1 h), for
//! `BENCH_AUTH=jwt bash tests/bench/run.sh`.

use std::time::{SystemTime, UNIX_EPOCH};

use palisade_proxy::authn::signer::Signer;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: bench-token DIR");
    let signer = Signer::generate().expect("key generation");
    let jwks = serde_json::to_string(&signer.jwks()).expect("jwks");
    std::fs::write(std::path::Path::new(&dir).join("jwks.json"), jwks).expect("writing jwks.json");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = signer
        .sign(&serde_json::json!({
            "iss": "https://bench.local", "sub": "bench", "aud": "palisade",
            "iat": now, "exp": now + 3600, "roles": ["user"], "tenant": "bench"
        }))
        .expect("signing");
    println!("{token}");
}
