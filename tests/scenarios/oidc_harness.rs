//! Self-test of the OpenID provider the authentication scenarios run against
//! (`tests/oidc/server.mjs` through `palisade_e2e::oidc`): discovery, JWKS, one token per client
//! with its algorithm, kid and claims, per-request overrides, key rotation and the JWKS counter.

use std::collections::BTreeSet;

use palisade_e2e::oidc::{decode_unverified, DecodedJwt, Idp, TokenRequest, AUDIENCE};
use serde_json::{json, Value};

/// Every algorithm the IdP signs with, and the client named after it.
const ALG_CLIENTS: [(&str, &str); 4] = [
    ("rs256", "RS256"),
    ("ps256", "PS256"),
    ("es256", "ES256"),
    ("eddsa", "EdDSA"),
];

/// Role clients: (client, role, tenant, mfa).
const ROLE_CLIENTS: [(&str, &str, &str, bool); 6] = [
    ("admin", "admin", "acme", true),
    ("developer", "developer", "acme", false),
    ("agent_operator", "agent_operator", "acme", true),
    ("user", "user", "globex", false),
    ("viewer", "viewer", "globex", false),
    ("globex-admin", "admin", "globex", true),
];

async fn get_json(url: &str) -> Value {
    let resp = palisade_e2e::client()
        .get(url)
        .send()
        .await
        .expect("IdP reachable");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.expect("JSON")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

/// The claims every token has, whatever the client.
fn assert_registered(jwt: &DecodedJwt, idp: &Idp, client: &str) {
    let p = &jwt.payload;
    assert_eq!(jwt.header["typ"], "at+jwt");
    assert_eq!(p["iss"], idp.issuer.as_str());
    assert_eq!(p["aud"], AUDIENCE);
    assert_eq!(p["sub"], client);
    assert_eq!(p["client_id"], client);
    assert!(p["jti"].is_string());
    let (iat, exp) = (p["iat"].as_u64().unwrap(), p["exp"].as_u64().unwrap());
    assert!(exp > iat, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_jwks_and_tokens_per_client() {
    let idp = Idp::start().await;
    assert!(
        idp.issuer.starts_with("http://127.0.0.1:"),
        "{}",
        idp.issuer
    );

    let discovery = get_json(&idp.discovery_url()).await;
    assert_eq!(discovery["issuer"], idp.issuer.as_str());
    assert_eq!(discovery["jwks_uri"], idp.jwks_uri().as_str());
    assert_eq!(discovery["token_endpoint"], idp.token_endpoint().as_str());
    assert!(strings(&discovery["grant_types_supported"]).contains(&"client_credentials"));

    let kids = idp.kids().await;
    let jwks = idp.jwks().await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 4, "{jwks}");
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private part {private} in {key}"
            );
        }
        let alg = key["alg"].as_str().expect("alg");
        assert_eq!(key["kid"], kids[alg].as_str(), "{key}");
        assert_eq!(key["use"], "sig");
    }

    for (client, alg) in ALG_CLIENTS {
        let jwt = decode_unverified(&idp.token(client).await);
        assert_eq!(jwt.header["alg"], alg, "{client}");
        assert_eq!(jwt.header["kid"], kids[alg].as_str(), "{client}");
        assert_registered(&jwt, &idp, client);
        assert_eq!(jwt.payload["tenant"], "acme");
        assert_eq!(strings(&jwt.payload["realm_access"]["roles"])[0], "user");
    }

    for (client, role, tenant, mfa) in ROLE_CLIENTS {
        let jwt = decode_unverified(&idp.token(client).await);
        let p = &jwt.payload;
        assert_eq!(jwt.header["alg"], "RS256", "{client}");
        assert_registered(&jwt, &idp, client);
        assert_eq!(p["tenant"], tenant, "{client}");
        assert_eq!(p["email"], format!("{client}@{tenant}.example"));
        assert!(strings(&p["realm_access"]["roles"]).contains(&role), "{p}");
        assert!(strings(&p["resource_access"]["palisade"]["roles"]).contains(&role));
        assert_eq!(p["app_metadata"]["role"], role);
        assert_eq!(p["https://palisade.example/roles"], json!([role]));
        assert_eq!(p["https://palisade.example/tenant"], tenant);
        let amr = strings(&p["amr"]);
        assert_eq!(amr.contains(&"mfa"), mfa, "{client}: {amr:?}");
        assert!(amr.contains(&"pwd"));
        let scopes: BTreeSet<&str> = p["scope"].as_str().unwrap().split(' ').collect();
        assert!(scopes.contains("tools:list"), "{client}: {scopes:?}");
        assert_eq!(
            scopes.contains("admin"),
            role == "admin",
            "{client}: {scopes:?}"
        );
    }

    let bare = decode_unverified(&idp.token("bare").await);
    assert_registered(&bare, &idp, "bare");
    for absent in ["tenant", "email", "realm_access", "amr", "scope"] {
        assert!(
            bare.payload.get(absent).is_none(),
            "{absent}: {}",
            bare.payload
        );
    }

    let short = decode_unverified(&idp.token("short-lived").await).payload;
    let lifetime = short["exp"].as_u64().unwrap() - short["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 2, "{short}");

    // The secret matters.
    let denied = palisade_e2e::client_builder()
        .build()
        .unwrap()
        .post(idp.token_endpoint())
        .basic_auth("admin", Some("not-the-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "urn:palisade"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_overrides() {
    let idp = Idp::start().await;
    let kids = idp.kids().await;
    let request = TokenRequest::new()
        .alg("ES256")
        .ttl_secs(7)
        .audience("other-api")
        .scope("tools:list")
        .claim("tenant", "globex")
        .claim("nbf", 4_000_000_000u64)
        .without_claim("email")
        .header("kid", "../../etc/passwd")
        .header("jku", "http://127.0.0.1:9/jwks");
    let jwt = decode_unverified(&idp.token_with("admin", &request).await);
    let (h, p) = (&jwt.header, &jwt.payload);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["kid"], "../../etc/passwd");
    assert_eq!(h["jku"], "http://127.0.0.1:9/jwks");
    assert_eq!(p["aud"], "other-api");
    assert_eq!(p["scope"], "tools:list");
    assert_eq!(p["tenant"], "globex");
    assert_eq!(p["nbf"], 4_000_000_000u64);
    assert!(p.get("email").is_none());
    assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 7);
    assert_ne!(kids["ES256"], "../../etc/passwd");

    let expired = idp
        .token_with("user", &TokenRequest::new().claim("exp", 1))
        .await;
    assert_eq!(decode_unverified(&expired).payload["exp"], 1);

    let no_exp = idp
        .token_with("user", &TokenRequest::new().without_claim("exp"))
        .await;
    assert!(decode_unverified(&no_exp).payload.get("exp").is_none());

    // `alg` goes through the alg parameter only, and it must be one the IdP has keys for.
    for bad in [
        TokenRequest::new().header("alg", "none"),
        TokenRequest::new().alg("HS256"),
    ] {
        let resp = idp.request_token("admin", &bad).await;
        assert_eq!(resp.status(), 400, "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_and_jwks_hits() {
    let idp = Idp::start().await;
    assert_eq!(idp.jwks_hits().await, 0);

    let before = idp.kids().await;
    let old = decode_unverified(&idp.token("es256").await);
    assert_eq!(old.header["kid"], before["ES256"].as_str());

    let rotated = idp.rotate_keys().await;
    assert_eq!(rotated, idp.kids().await);
    for (alg, kid) in &before {
        assert_ne!(&rotated[alg], kid, "{alg} kept its kid");
    }
    let new = decode_unverified(&idp.token("es256").await);
    assert_eq!(new.header["kid"], rotated["ES256"].as_str());

    // The previous generation stays published after a plain rotation…
    let published = |jwks: &Value| -> BTreeSet<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let after = published(&idp.jwks().await);
    assert!(after.contains(&before["ES256"]) && after.contains(&rotated["ES256"]));
    assert_eq!(after.len(), 8);

    // …and is gone after one that drops it.
    let third = idp.rotate_keys_dropping_previous().await;
    let now = published(&idp.jwks().await);
    assert_eq!(now, third.values().cloned().collect::<BTreeSet<_>>());

    // Every request to jwks_uri counts, the test routes and discovery don't.
    assert_eq!(idp.jwks_hits().await, 2);
    get_json(&idp.discovery_url()).await;
    get_json(&idp.jwks_uri()).await;
    assert_eq!(idp.jwks_hits().await, 3);

    // An outage: the JWKS answers 503 (still counted) until restored.
    idp.set_jwks_status(503).await;
    let down = palisade_e2e::client()
        .get(idp.jwks_uri())
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    idp.set_jwks_status(200).await;
    get_json(&idp.jwks_uri()).await;
    assert_eq!(idp.jwks_hits().await, 5);
}
