//! Revocation: a revoked `jti` is refused even from the verification cache, revocations posted to
//! one replica reach the others through Redis, and API keys shared through Redis authenticate
//! until revoked there.

use palisade_e2e::client;
use palisade_e2e::redis::RedisServer;
use palisade_e2e::upstream;
use palisade_proxy::authn::apikey;
use palisade_proxy::authn::shared::SharedApiKeys;
use palisade_proxy::authn::signer::Signer;
use serde_json::json;

use super::{call, call_until, claims, code, fixture, guarded, jwks_file, now, ISS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_jti_is_refused_even_when_cached() {
    let f = fixture("").await;
    let token = f.signer.sign(&claims(json!({"jti": "revoke-me"}))).unwrap();
    assert_eq!(call(&f.proxy, "/private", Some(&token)).await.0, 200); // now cached
    let resp = client()
        .post(f.proxy.admin_url("/revocations"))
        .json(&json!({"jti": "revoke-me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (status, body) = call(&f.proxy, "/private", Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "TOKEN_REVOKED");
    let other = f.signer.sign(&claims(json!({}))).unwrap();
    assert_eq!(call(&f.proxy, "/private", Some(&other)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_replica_through_redis() {
    let redis = RedisServer::start();
    let signer = Signer::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = jwks_file(&signer, &dir);
    let echo = upstream::echo().await;
    let replica = || {
        guarded(
            &echo,
            &format!(
                "  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      \
                 keys: {{jwks_file: \"{jwks}\"}}\n  revocation: {{redis_url: \"{}\", sync_interval: 200ms}}\n",
                redis.url()
            ),
        )
    };
    let (a, b) = (replica(), replica());
    let token = signer
        .sign(&claims(json!({"jti": "shared-revoke"})))
        .unwrap();
    assert_eq!(call(&a, "/", Some(&token)).await.0, 200);
    assert_eq!(call(&b, "/", Some(&token)).await.0, 200); // cached on b now

    let resp = client()
        .post(a.admin_url("/revocations"))
        .json(&json!({"jti": "shared-revoke", "forget_after": now() + 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
    assert_eq!(call(&a, "/", Some(&token)).await.0, 401);
    assert_eq!(
        call_until(&b, &token, 401).await.0,
        401,
        "replica b still accepts a token revoked on replica a"
    );
    let list: Vec<String> = client()
        .get(b.admin_url("/revocations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, ["shared-revoke"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_shared_through_redis() {
    let redis = RedisServer::start();
    let store = SharedApiKeys::new(Some(&redis.url()), &[], "palisade:apikeys").unwrap();
    let (mut record, token) = apikey::generate("shared-bot");
    record.roles = vec!["developer".into()];
    store.store(&record).await.unwrap();
    let echo = upstream::echo().await;
    let proxy = guarded(
        &echo,
        &format!("  api_keys: {{redis_url: \"{}\"}}\n", redis.url()),
    );
    assert_eq!(
        call_until(&proxy, &token, 200).await.0,
        200,
        "a key stored in Redis authenticates"
    );

    record.revoked = true;
    store.store(&record).await.unwrap();
    let (status, body) = call_until(&proxy, &token, 401).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "TOKEN_REVOKED");
}
