//! Revocation: a revoked `jti` is refused even from the verification cache, revocations posted to
//! one replica reach the others through Redis, and API keys shared through Redis authenticate
//! until revoked there.

use palisade_e2e::client;
use palisade_e2e::redis::RedisServer;
use palisade_e2e::upstream;
use palisade_proxy::authn::apikey;
use palisade_proxy::authn::apikey::SharedApiKeys;
use palisade_proxy::authn::signer::Signer;
use serde_json::json;

use palisade_e2e::error_code;

use super::{call, call_until, claims, code, fixture, guarded, jwks_file, now, ADMIN_TOKEN, ISS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_jti_is_refused_even_when_cached() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    let f = fixture(&format!(
        "  revocation: {{admin_token_file: \"{}\"}}\n",
        token_file.display()
    ))
    .await;
    let token = f.signer.sign(&claims(json!({"jti": "revoke-me"}))).unwrap();
    assert_eq!(call(&f.proxy, "/private", Some(&token)).await.0, 200); // now cached
                                                                       // `palisade tokens revoke`, reading the token file the proxy created at start.
    let args = [
        "palisade".to_string(),
        "tokens".into(),
        "revoke".into(),
        "revoke-me".into(),
        "--admin".into(),
        f.proxy.running.admin.to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
    ];
    let exit = tokio::task::spawn_blocking(move || palisade_proxy::cli::main_from(args))
        .await
        .unwrap();
    assert_eq!(exit, std::process::ExitCode::SUCCESS);
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
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let echo = upstream::echo().await;
    let replica = || {
        guarded(
            &echo,
            &format!(
                "  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      \
                 keys: {{jwks_file: \"{jwks}\"}}\n  revocation: {{redis_url: \"{}\", sync_interval: 200ms, \
                 admin_token_file: \"{}\"}}\n",
                redis.url(),
                token_file.display()
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
        .bearer_auth(ADMIN_TOKEN)
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
        .bearer_auth(ADMIN_TOKEN)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_requires_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let f = fixture(&format!(
        "  revocation: {{admin_token_file: \"{}\"}}\n",
        token_file.display()
    ))
    .await;
    let token = f.signer.sign(&claims(json!({"jti": "keep-me"}))).unwrap();
    let revoke = |bearer: Option<&str>| {
        let mut req = client()
            .post(f.proxy.admin_url("/revocations"))
            .json(&json!({"jti": "keep-me"}));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    for bearer in [None, Some("wrong"), Some(&ADMIN_TOKEN[1..])] {
        let resp = revoke(bearer).await.unwrap();
        assert_eq!(resp.status(), 401, "{bearer:?}");
        assert!(resp.headers().contains_key("www-authenticate"));
        assert_eq!(error_code(&resp.bytes().await.unwrap()), "UNAUTHENTICATED");
    }
    let list = client()
        .get(f.proxy.admin_url("/revocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 401);
    assert_eq!(
        call(&f.proxy, "/private", Some(&token)).await.0,
        200,
        "nothing revoked"
    );
    assert_eq!(revoke(Some(ADMIN_TOKEN)).await.unwrap().status(), 204);
    assert_eq!(call(&f.proxy, "/private", Some(&token)).await.0, 401);

    // Without a configured token the admin API is off.
    let off = fixture("").await;
    let resp = client()
        .post(off.proxy.admin_url("/revocations"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"jti": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "FORBIDDEN");
}

/// `palisade keys` against Redis with a non-default hash (`--redis` with `--redis-key`, which
/// clap used to refuse together) and against a Cluster (`--redis-cluster`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cli_with_a_redis_key_and_a_cluster() {
    let redis = RedisServer::start();
    let cluster = palisade_e2e::redis::RedisCluster::start();
    let (url, nodes) = (redis.url(), cluster.urls());
    for (flag, value) in [
        ("--redis", url.clone()),
        ("--redis-cluster", nodes[0].clone()),
    ] {
        let args: Vec<String> = [
            "palisade",
            "keys",
            "create",
            flag,
            &value,
            "--redis-key",
            "team:keys",
            "--owner",
            "cli-bot",
            "--role",
            "developer",
        ]
        .map(String::from)
        .to_vec();
        let exit = tokio::task::spawn_blocking(move || palisade_proxy::cli::main_from(args))
            .await
            .unwrap();
        assert_eq!(exit, std::process::ExitCode::SUCCESS, "{flag}");
    }
    let standalone = SharedApiKeys::new(Some(&url), &[], "team:keys").unwrap();
    let in_cluster = SharedApiKeys::new(None, &nodes, "team:keys").unwrap();
    for store in [standalone, in_cluster] {
        let keys = store.load().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].owner, "cli-bot");
    }
    let default_hash = SharedApiKeys::new(Some(&url), &[], "palisade:apikeys").unwrap();
    assert!(
        default_hash.load().await.unwrap().is_empty(),
        "the hash given"
    );
}
