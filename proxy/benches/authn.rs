//! Authentication costs: a cached token (the common case), and first verifications of ES256 and
//! RS256 tokens (signature check + claim mapping).
//!
//! `cargo bench -p palisade-proxy --bench authn`

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_proxy::authn::signer::Signer;
use palisade_proxy::authn::{AuthRequirement, Authenticator, AuthnSpec};
use pingora_http::RequestHeader;

fn request(token: &str) -> RequestHeader {
    let mut req = RequestHeader::build("POST", b"/agent", None).unwrap();
    req.insert_header("authorization", format!("Bearer {token}"))
        .unwrap();
    req
}

fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({"iss": "https://idp.bench", "sub": "alice", "aud": "palisade", "exp": now + 3600,
        "jti": "j", "roles": ["developer", "user"], "tenant": "acme", "email": "a@acme.test"})
}

fn authenticator(jwks: &std::path::Path, alg: &str) -> Authenticator {
    let spec: AuthnSpec = yaml_serde::from_str(&format!(
        "issuers:\n  - issuer: https://idp.bench\n    audiences: [palisade]\n    algorithms: [{alg}]\n    \
         keys: {{jwks_file: \"{}\"}}\ntoken_cache: {{max_entries: 100000}}\n",
        jwks.display()
    ))
    .unwrap();
    Authenticator::new(&spec).unwrap()
}

fn rsa_token_and_jwks(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    // An RSA-2048 key; the public half as a JWKS.
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string();
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("rsa1".into());
    let path = dir.join("rsa.json");
    std::fs::write(
        &path,
        serde_json::to_string(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa1".into());
    (
        jsonwebtoken::encode(&header, &claims(), &enc).unwrap(),
        path,
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let signer = Signer::generate().unwrap();
    let es_jwks = dir.path().join("es.json");
    std::fs::write(&es_jwks, serde_json::to_string(&signer.jwks()).unwrap()).unwrap();
    let es = authenticator(&es_jwks, "ES256");
    rt.block_on(async { palisade_proxy::authn::jwt_keys_ready(&es).await });
    let es_token = signer.sign(&claims()).unwrap();

    let mut group = c.benchmark_group("authn");
    group.bench_function("cached token", |b| {
        let mut req = request(&es_token);
        rt.block_on(es.identify(&mut req, None, None, AuthRequirement::Required))
            .unwrap();
        b.iter(|| {
            let mut req = request(black_box(&es_token));
            rt.block_on(es.identify(&mut req, None, None, AuthRequirement::Required))
                .unwrap()
        })
    });

    // First verification: a token the cache has not seen (new jti each time → new cache key).
    let uncached =
        |auth: &Authenticator, sign: &dyn Fn(u64) -> String, b: &mut criterion::Bencher| {
            let mut n = 0u64;
            b.iter_batched(
                || {
                    n += 1;
                    request(&sign(n))
                },
                |mut req| {
                    rt.block_on(auth.identify(&mut req, None, None, AuthRequirement::Required))
                        .unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        };
    group.bench_function("first verification ES256", |b| {
        let sign = |n: u64| {
            let mut c = claims();
            c["jti"] = n.into();
            signer.sign(&c).unwrap()
        };
        uncached(&es, &sign, b)
    });

    let (rsa_first, rsa_jwks) = rsa_token_and_jwks(dir.path());
    let rs = authenticator(&rsa_jwks, "RS256");
    rt.block_on(async { palisade_proxy::authn::jwt_keys_ready(&rs).await });
    let rsa_pem_key = rsa_first; // keep one RS256 token verified to confirm the setup works
    rt.block_on(rs.identify(
        &mut request(&rsa_pem_key),
        None,
        None,
        AuthRequirement::Required,
    ))
    .unwrap();
    group.bench_function("first verification RS256 (cache off)", |b| {
        let rs_nocache = {
            let spec: AuthnSpec = yaml_serde::from_str(&format!(
                "issuers:\n  - issuer: https://idp.bench\n    audiences: [palisade]\n    algorithms: [RS256]\n    \
                 keys: {{jwks_file: \"{}\"}}\ntoken_cache: {{max_entries: 0}}\n",
                rsa_jwks.display()
            ))
            .unwrap();
            Authenticator::new(&spec).unwrap()
        };
        rt.block_on(async { palisade_proxy::authn::jwt_keys_ready(&rs_nocache).await });
        b.iter(|| {
            let mut req = request(black_box(&rsa_pem_key));
            rt.block_on(rs_nocache.identify(&mut req, None, None, AuthRequirement::Required)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
