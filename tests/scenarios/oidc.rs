//! Authentication against a real OpenID provider (`oidc-provider` from npm, started per test):
//! discovery, every signature algorithm, Keycloak/Supabase/Auth0 claim shapes, key rotation,
//! an IdP outage, expiry, and readiness.

use std::time::Duration;

use palisade_e2e::oidc::{Idp, TokenRequest};
use palisade_e2e::{client, error_code, eventually, upstream, Proxy, TestProxy};
use serde_json::Value;

async fn proxy_for(idp: &Idp, claims_yaml: &str, extra: &str) -> (Proxy, upstream::Upstream) {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: \"{}\"\n      audiences: [palisade]\n      \
             algorithms: [RS256, PS256, ES256, EdDSA]\n      keys: {{discovery: true}}\n      \
             refetch_min_interval: 1s\n      claims: {claims_yaml}\n{extra}",
            idp.issuer
        ))
        .start();
    eventually(Duration::from_secs(10), || {
        proxy.running.lifecycle.is_ready().then_some(())
    })
    .await
    .expect("ready once the IdP's keys loaded");
    (proxy, echo)
}

async fn echo(proxy: &Proxy, token: &str) -> (u16, Value) {
    let resp = client()
        .get(proxy.url("/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_every_algorithm() {
    let idp = Idp::start().await;
    let (proxy, _echo) = proxy_for(&idp, "{roles: [realm_access.roles]}", "").await;
    for client in ["rs256", "ps256", "es256", "eddsa"] {
        let token = idp.token(client).await;
        let (status, body) = echo(&proxy, &token).await;
        assert_eq!(status, 200, "{client}: {body}");
        assert_eq!(
            body["headers"]["x-palisade-principal"],
            format!("User::\"{}|{client}\"", idp.issuer)
        );
        // Keycloak-shaped realm roles, including Keycloak's default roles.
        assert_eq!(
            body["headers"]["x-palisade-roles"],
            "default-roles-palisade,offline_access,user"
        );
        assert_eq!(body["headers"]["x-palisade-tenant"], "acme");
    }
    // A token for another audience is refused.
    let other = idp
        .token_with("rs256", &TokenRequest::new().audience("other-api"))
        .await;
    assert_eq!(echo(&proxy, &other).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_supabase_and_auth0_claim_shapes_map_to_roles() {
    let idp = Idp::start().await;
    for (claims, expected) in [
        (
            "{roles: [realm_access.roles, resource_access.palisade.roles]}",
            "admin,agent_operator,default-roles-palisade,offline_access",
        ),
        ("{roles: [app_metadata.role]}", "admin"),
        ("{roles: [\"https://palisade.example/roles\"], tenant: [\"https://palisade.example/tenant\"]}", "admin"),
    ] {
        let (proxy, _echo) = proxy_for(&idp, claims, "").await;
        let (status, body) = echo(&proxy, &idp.token("admin").await).await;
        assert_eq!(status, 200);
        assert_eq!(body["headers"]["x-palisade-roles"], expected, "{claims}");
        assert_eq!(body["headers"]["x-palisade-tenant"], "acme");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_picked_up_on_the_unknown_kid() {
    let idp = Idp::start().await;
    let (proxy, _echo) = proxy_for(&idp, "{}", "").await;
    assert_eq!(echo(&proxy, &idp.token("es256").await).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past refetch_min_interval
    idp.rotate_keys_dropping_previous().await;
    let fresh = idp.token("es256").await;
    assert_eq!(
        echo(&proxy, &fresh).await.0,
        200,
        "the new kid is fetched on first sight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_keep_serving_while_the_idp_is_down() {
    let idp = Idp::start().await;
    let (proxy, _echo) = proxy_for(&idp, "{}", "").await;
    let token = idp.token("rs256").await;
    idp.set_jwks_status(503).await;
    // A different token (not in the verified-token cache) still verifies with the cached keys.
    let another = idp.token("ps256").await;
    assert_eq!(echo(&proxy, &token).await.0, 200);
    assert_eq!(echo(&proxy, &another).await.0, 200);
    // Unknown kids during the outage are refused, not 5xx.
    let forged = idp
        .token_with("rs256", &TokenRequest::new().header("kid", "not-a-key"))
        .await;
    let (status, body) = echo(&proxy, &forged).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(body.to_string().as_bytes()), "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_say_so() {
    let idp = Idp::start().await;
    let (proxy, _echo) = proxy_for(&idp, "{}", "").await;
    let token = idp
        .token_with("rs256", &TokenRequest::new().claim("exp", 1_000_000))
        .await;
    let (status, body) = echo(&proxy, &token).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(body.to_string().as_bytes()), "TOKEN_EXPIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_issuer_keys_load() {
    // An issuer whose discovery points nowhere: the proxy runs but never reports ready.
    let dead = palisade_e2e::closed_port();
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: \"http://{dead}\"\n      keys: {{discovery: true}}\n"
        ))
        .start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("authentication keys"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_against_the_idps_keys_are_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let idp = Idp::start().await;
    let (proxy, _echo) = proxy_for(&idp, "{}", "").await;
    let genuine = idp.token("rs256").await;
    let payload = genuine.split('.').nth(1).unwrap().to_string();

    // HS256 keyed with the IdP's published RSA public key (algorithm confusion).
    let jwks = idp.jwks().await;
    let rsa_jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    let claims: Value = serde_json::from_slice(&B64.decode(&payload).unwrap()).unwrap();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(rsa_jwk.to_string().as_bytes()),
    )
    .unwrap();
    let none = format!("{}.{payload}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#));
    let tampered = {
        let mut claims = claims.clone();
        claims["realm_access"]["roles"] = serde_json::json!(["admin"]);
        let mut parts: Vec<String> = genuine.split('.').map(str::to_string).collect();
        parts[1] = B64.encode(claims.to_string());
        parts.join(".")
    };
    let jku = idp
        .token_with(
            "rs256",
            &TokenRequest::new().header("jku", "http://127.0.0.1:1/evil-jwks"),
        )
        .await;
    for (name, token) in [
        ("HS256 with the RSA public key", confused),
        ("alg none", none),
        ("tampered payload", tampered),
    ] {
        let (status, body) = echo(&proxy, &token).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(
            error_code(body.to_string().as_bytes()),
            "UNAUTHENTICATED",
            "{name}"
        );
    }
    // A jku header is ignored: the token still verifies against the configured keys.
    assert_eq!(echo(&proxy, &jku).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_costs_the_idp_at_most_one_jwks_fetch() {
    let idp = Idp::start().await;
    let echo_up = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo_up.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: \"{}\"\n      algorithms: [RS256]\n      \
             keys: {{discovery: true}}\n      refetch_min_interval: 1h\n",
            idp.issuer
        ))
        .start();
    eventually(Duration::from_secs(10), || {
        proxy.running.lifecycle.is_ready().then_some(())
    })
    .await
    .expect("ready");
    let before = idp.jwks_hits().await;
    for i in 0..40 {
        let forged = idp
            .token_with(
                "rs256",
                &TokenRequest::new().header("kid", format!("flood-{i}")),
            )
            .await;
        assert_eq!(echo(&proxy, &forged).await.0, 401);
    }
    let fetched = idp.jwks_hits().await - before;
    assert!(fetched <= 1, "{fetched} JWKS fetches for 40 unknown kids");
}
