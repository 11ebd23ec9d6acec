//! Bearer JWTs: a good token becomes forwarded identity headers and a verifiable assertion, the
//! RFC 8725 catalogue of bad tokens is refused with `401` (never `5xx`), unknown `kid`s cannot
//! make the proxy hammer the IdP, and MCP routes point `401`s at their RFC 9728 metadata.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use palisade_e2e::upstream::{self, ScriptedUpstream};
use palisade_e2e::{client, eventually, TestProxy};
use palisade_proxy::authn::signer::Signer;
use serde_json::{json, Value};

use super::{call, claims, code, fixture, guarded, now, raw_token, ISS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_forwards_identity_and_a_verifiable_assertion() {
    let f = fixture("").await;
    let token = f
        .signer
        .sign(&claims(json!({"roles": ["developer", "user"]})))
        .unwrap();
    let resp = client()
        .get(f.proxy.url("/private/x"))
        .bearer_auth(&token)
        .header("x-palisade-principal", "User::\"forged\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    let h = &echoed["headers"];
    assert_eq!(h["x-palisade-principal"], format!("User::\"{ISS}|alice\""));
    assert_eq!(h["x-palisade-roles"], "developer,user");
    assert_eq!(h["x-palisade-tenant"], "acme");
    assert!(
        h.get("authorization").is_none(),
        "the client's token is not forwarded by default"
    );

    // The assertion verifies against the JWKS the admin listener publishes, and lives ≤ 60 s.
    let assertion = h["x-palisade-assertion"].as_str().unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = client()
        .get(f.proxy.admin_url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(assertion).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["private"]);
    validation.set_issuer(&["palisade"]);
    let data = jsonwebtoken::decode::<Value>(assertion, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], format!("User::\"{ISS}|alice\""));
    assert_eq!(data.claims["roles"], json!(["developer", "user"]));
    let lifetime = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 60, "assertion lives {lifetime}s");

    // Anonymous is only allowed where the route says so.
    assert_eq!(call(&f.proxy, "/private", None).await.0, 401);
    let resp = client().get(f.proxy.url("/open")).send().await.unwrap();
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-palisade-principal"],
        "Anonymous::\"127.0.0.1\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_cannot_become_identity_headers_get_401_never_500() {
    let f = fixture("").await;
    for (label, extra) in [
        (
            "CR LF in tenant",
            json!({"tenant": "acme\r\nx-palisade-roles: admin"}),
        ),
        ("LF in sub", json!({"sub": "alice\nbob"})),
        ("NUL in email", json!({"email": "a\u{0}@acme.test"})),
        ("non-ASCII tenant", json!({"tenant": "acmé"})),
        ("comma in a role", json!({"roles": ["user,admin"]})),
        ("space in a role", json!({"roles": ["power user"]})),
    ] {
        let token = f.signer.sign(&claims(extra)).unwrap();
        let (status, body) = call(&f.proxy, "/private", Some(&token)).await;
        assert_eq!(status, 401, "{label}: {body}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{label}");
    }
    // A non-ASCII subject is fine: the principal header escapes it, JSON-style.
    let token = f.signer.sign(&claims(json!({"sub": "jörg"}))).unwrap();
    let resp = client()
        .get(f.proxy.url("/private"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-palisade-principal"],
        format!("User::\"{ISS}|j\\u00f6rg\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8725_bad_tokens_get_401_never_5xx() {
    let f = fixture("").await;
    let good = claims(json!({}));
    let attacker = Signer::generate().unwrap();
    let jwk = serde_json::to_value(&attacker.jwks().keys[0]).unwrap();
    let signed_by_attacker = attacker.sign(&good).unwrap();
    let attacker_sig = B64
        .decode(signed_by_attacker.rsplit('.').next().unwrap())
        .unwrap();
    // The good claims under a forged header, with the attacker's signature.
    let forged = |header: Value| raw_token(header, &good, &attacker_sig);
    // Signed by the real issuer, with `extra` claims.
    let signed = |extra: Value| f.signer.sign(&claims(extra)).unwrap();

    // HS256 "signed" with the issuer's public key (the classic key-confusion attack).
    let public_jwk = serde_json::to_string(&f.signer.jwks().keys[0]).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()),
    )
    .unwrap();
    // Properly signed by the issuer: refused for being nested, not for its signature.
    let nested = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.cty = Some("JWT".into());
        let mut outer = good.clone();
        outer["inner"] = f.signer.sign(&good).unwrap().into();
        f.signer.sign_with_header(h, &outer).unwrap()
    };
    let bad_json = format!(
        "{}.{}.{}",
        B64.encode("{nope"),
        B64.encode("[]"),
        B64.encode("x")
    );

    // Every one of these is UNAUTHENTICATED (an expired token alone says TOKEN_EXPIRED, below).
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            raw_token(json!({"alg": "none", "typ": "JWT"}), &good, b""),
        ),
        ("alg None", raw_token(json!({"alg": "None"}), &good, b"")),
        ("HS256 with the public key", hs),
        (
            "kid path traversal",
            forged(json!({"alg": "ES256", "kid": "../../../../etc/passwd"})),
        ),
        (
            "kid SQL",
            forged(json!({"alg": "ES256", "kid": "x' OR '1'='1"})),
        ),
        ("embedded jwk", forged(json!({"alg": "ES256", "jwk": jwk}))),
        (
            "jku",
            forged(json!({"alg": "ES256", "jku": "http://127.0.0.1:1/jwks"})),
        ),
        (
            "x5u",
            forged(json!({"alg": "ES256", "x5u": "http://127.0.0.1:1/cert"})),
        ),
        ("attacker key", signed_by_attacker.clone()),
        ("not yet valid", signed(json!({"nbf": now() + 3600}))),
        ("wrong aud", signed(json!({"aud": "someone-else"}))),
        ("no aud", signed(json!({"aud": null}))),
        ("wrong iss", signed(json!({"iss": "https://evil.test"}))),
        ("no exp", signed(json!({"exp": null}))),
        ("no sub", signed(json!({"sub": null}))),
        ("over 8 KiB", signed(json!({"pad": "x".repeat(9000)}))),
        ("bad base64", "!!!.@@@.###".to_string()),
        ("bad JSON", bad_json),
        ("two parts", "a.b".to_string()),
        ("nested JWT", nested),
    ];
    let expired = ("expired", signed(json!({"exp": now() - 3600})));
    for (name, token) in cases.into_iter().chain([expired]) {
        let expected = match name {
            "expired" => "TOKEN_EXPIRED",
            _ => "UNAUTHENTICATED",
        };
        let (status, body) = call(&f.proxy, "/private", Some(&token)).await;
        assert_eq!(status, 401, "{name}: got {status} {body}");
        assert_eq!(code(&body), expected, "{name}");
    }
    // Other schemes and garbage headers are 401 too.
    for header in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer    ", "token abc"] {
        let resp = client()
            .get(f.proxy.url("/private"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{header}");
    }
    // And the proxy still serves good tokens afterwards.
    let ok = f.signer.sign(&good).unwrap();
    assert_eq!(call(&f.proxy, "/private", Some(&ok)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_refetches_the_jwks_at_most_once_per_interval() {
    let signer = Signer::generate().unwrap();
    let idp = ScriptedUpstream::new()
        .json("/jwks", serde_json::to_value(signer.jwks()).unwrap())
        .start()
        .await;
    let echo = upstream::echo().await;
    let proxy = guarded(
        &echo,
        &format!(
            "  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      \
             keys: {{jwks_url: \"http://{}/jwks\"}}\n      refetch_min_interval: 1h\n",
            idp.addr
        ),
    );
    eventually(std::time::Duration::from_secs(5), || {
        proxy.running.lifecycle.is_ready().then_some(())
    })
    .await
    .expect("ready once the JWKS loaded");
    let loaded = idp.requests().len();
    assert!(loaded >= 1);
    let paths: Vec<String> = idp.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().all(|p| p == "/jwks"), "{paths:?}");

    let attacker = Signer::generate().unwrap();
    for _ in 0..50 {
        let token = attacker.sign(&claims(json!({}))).unwrap(); // a kid the IdP never had
        assert_eq!(call(&proxy, "/", Some(&token)).await.0, 401);
    }
    let refetches = idp.requests().len() - loaded;
    assert!(
        refetches <= 1,
        "{refetches} refetches for 50 unknown-kid tokens"
    );
    let good = signer.sign(&claims(json!({}))).unwrap();
    assert_eq!(call(&proxy, "/", Some(&good)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_routes_publish_rfc9728_metadata_and_point_401s_at_it() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("tools", "/mcp", "echo", "auth: required\nprotocol: mcp")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      keys: {{jwks_url: \"http://127.0.0.1:1/jwks\"}}\n      required_for_readiness: false\n"
        ))
        .start();
    let resp = client()
        .post(proxy.url("/mcp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let expected_url = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        proxy.addr()
    );
    assert_eq!(www, format!("Bearer resource_metadata=\"{expected_url}\""));

    let doc: Value = client()
        .get(&expected_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], format!("http://{}/mcp", proxy.addr()));
    assert_eq!(doc["authorization_servers"], json!([ISS]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_authentication_configured_means_401_on_required_routes() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .start();
    let (status, body) = call(&proxy, "/", None).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"));
}
