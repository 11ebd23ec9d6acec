//! Authentication end to end: JWT issuers (JWKS file and URL), the RFC 8725 bad-token catalogue,
//! revocation, API keys, trusted edge headers, identity forwarding and the signed assertion.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use palisade_e2e::{client, error_code, upstream, Proxy, TestProxy};
use palisade_proxy::authn::signer::Signer;
use serde_json::{json, Value};

const ISS: &str = "https://idp.test";
/// An admin API token written by hand (at least 32 bytes).
const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": ISS, "sub": "alice", "aud": "palisade", "exp": now() + 300, "iat": now(),
        "jti": format!("jti-{}", uuid()), "roles": ["developer"], "tenant": "acme", "email": "alice@acme.test"
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn uuid() -> String {
    format!("{:x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now());
    h.finish()
}

/// A token with an arbitrary header and payload, signed (or not) by the caller.
fn raw_token(header: Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string()),
        B64.encode(signature)
    )
}

struct Fixture {
    proxy: Proxy,
    signer: Signer,
    _dir: tempfile::TempDir,
}

async fn fixture(extra_auth: &str) -> Fixture {
    let signer = Signer::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(&signer.jwks()).unwrap()).unwrap();
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/private", "echo", "auth: required")
        .route("open", "/open", "echo", "auth: optional")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: {ISS}\n      audiences: [palisade]\n      algorithms: [ES256]\n      \
             keys: {{jwks_file: \"{}\"}}\n      claims: {{roles: [roles]}}\n{extra_auth}",
            jwks.display()
        ))
        .start();
    Fixture {
        proxy,
        signer,
        _dir: dir,
    }
}

async fn call(proxy: &Proxy, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(proxy.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 401 {
        let www = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            www.is_some_and(|w| w.starts_with("Bearer")),
            "401 without WWW-Authenticate: Bearer"
        );
    }
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn code(body: &Value) -> String {
    error_code(body.to_string().as_bytes())
}

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

    // HS256 "signed" with the issuer's public key (the classic key-confusion attack).
    let public_jwk = serde_json::to_string(&f.signer.jwks().keys[0]).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()),
    )
    .unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            raw_token(json!({"alg": "none", "typ": "JWT"}), &good, b""),
            "UNAUTHENTICATED",
        ),
        (
            "alg None",
            raw_token(json!({"alg": "None"}), &good, b""),
            "UNAUTHENTICATED",
        ),
        ("HS256 with the public key", hs, "UNAUTHENTICATED"),
        (
            "kid path traversal",
            raw_token(
                json!({"alg": "ES256", "kid": "../../../../etc/passwd"}),
                &good,
                &attacker_sig,
            ),
            "UNAUTHENTICATED",
        ),
        (
            "kid SQL",
            raw_token(
                json!({"alg": "ES256", "kid": "x' OR '1'='1"}),
                &good,
                &attacker_sig,
            ),
            "UNAUTHENTICATED",
        ),
        (
            "embedded jwk",
            raw_token(json!({"alg": "ES256", "jwk": jwk}), &good, &attacker_sig),
            "UNAUTHENTICATED",
        ),
        (
            "jku",
            raw_token(
                json!({"alg": "ES256", "jku": "http://127.0.0.1:1/jwks"}),
                &good,
                &attacker_sig,
            ),
            "UNAUTHENTICATED",
        ),
        (
            "x5u",
            raw_token(
                json!({"alg": "ES256", "x5u": "http://127.0.0.1:1/cert"}),
                &good,
                &attacker_sig,
            ),
            "UNAUTHENTICATED",
        ),
        (
            "attacker key",
            signed_by_attacker.clone(),
            "UNAUTHENTICATED",
        ),
        (
            "expired",
            f.signer
                .sign(&claims(json!({"exp": now() - 3600})))
                .unwrap(),
            "TOKEN_EXPIRED",
        ),
        (
            "not yet valid",
            f.signer
                .sign(&claims(json!({"nbf": now() + 3600})))
                .unwrap(),
            "UNAUTHENTICATED",
        ),
        (
            "wrong aud",
            f.signer
                .sign(&claims(json!({"aud": "someone-else"})))
                .unwrap(),
            "UNAUTHENTICATED",
        ),
        (
            "no aud",
            f.signer.sign(&claims(json!({"aud": null}))).unwrap(),
            "UNAUTHENTICATED",
        ),
        (
            "wrong iss",
            f.signer
                .sign(&claims(json!({"iss": "https://evil.test"})))
                .unwrap(),
            "UNAUTHENTICATED",
        ),
        (
            "no exp",
            f.signer.sign(&claims(json!({"exp": null}))).unwrap(),
            "UNAUTHENTICATED",
        ),
        (
            "no sub",
            f.signer.sign(&claims(json!({"sub": null}))).unwrap(),
            "UNAUTHENTICATED",
        ),
        (
            "over 8 KiB",
            f.signer
                .sign(&claims(json!({"pad": "x".repeat(9000)})))
                .unwrap(),
            "UNAUTHENTICATED",
        ),
        ("bad base64", "!!!.@@@.###".to_string(), "UNAUTHENTICATED"),
        (
            "bad JSON",
            format!(
                "{}.{}.{}",
                B64.encode("{nope"),
                B64.encode("[]"),
                B64.encode("x")
            ),
            "UNAUTHENTICATED",
        ),
        ("two parts", "a.b".to_string(), "UNAUTHENTICATED"),
        (
            "nested JWT",
            {
                // Properly signed by the issuer: refused for being nested, not for its signature.
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                h.cty = Some("JWT".into());
                let inner = f.signer.sign(&good).unwrap();
                let mut outer = good.clone();
                outer["inner"] = inner.into();
                f.signer.sign_with_header(h, &outer).unwrap()
            },
            "UNAUTHENTICATED",
        ),
    ];
    for (name, token, expected) in cases {
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
async fn unknown_kid_flood_refetches_the_jwks_at_most_once_per_interval() {
    let signer = Signer::generate().unwrap();
    let jwks = serde_json::to_string(&signer.jwks()).unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let body = jwks.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      \
             keys: {{jwks_url: \"http://{idp}/jwks\"}}\n      refetch_min_interval: 1h\n"
        ))
        .start();
    palisade_e2e::eventually(std::time::Duration::from_secs(5), || {
        proxy.running.lifecycle.is_ready().then_some(())
    })
    .await
    .expect("ready once the JWKS loaded");
    let loaded = hits.load(Ordering::SeqCst);
    assert!(loaded >= 1);

    let attacker = Signer::generate().unwrap();
    for _ in 0..50 {
        let token = attacker.sign(&claims(json!({}))).unwrap(); // a kid the IdP never had
        assert_eq!(call(&proxy, "/", Some(&token)).await.0, 401);
    }
    let refetches = hits.load(Ordering::SeqCst) - loaded;
    assert!(
        refetches <= 1,
        "{refetches} refetches for 50 unknown-kid tokens"
    );
    let good = signer.sign(&claims(json!({}))).unwrap();
    assert_eq!(call(&proxy, "/", Some(&good)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_from_the_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let (mut record, token) = palisade_proxy::authn::apikey::generate("ci-bot");
    record.roles = vec!["agent_operator".into()];
    let id = record.id.clone();
    let (mut revoked, revoked_token) = palisade_proxy::authn::apikey::generate("old-bot");
    revoked.revoked = true;
    palisade_proxy::authn::apikey::KeysFile {
        keys: vec![record, revoked],
    }
    .save(&file)
    .unwrap();
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!(
            "authentication:\n  api_keys: {{file: \"{}\"}}\n",
            file.display()
        ))
        .start();

    for with_header in [true, false] {
        let req = client().get(proxy.url("/"));
        let req = if with_header {
            req.header("x-api-key", &token)
        } else {
            req.bearer_auth(&token)
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let echoed: Value = resp.json().await.unwrap();
        assert_eq!(
            echoed["headers"]["x-palisade-principal"],
            format!("ApiKey::\"{id}\"")
        );
        assert_eq!(echoed["headers"]["x-palisade-roles"], "agent_operator");
        assert!(echoed["headers"].get("x-api-key").is_none());
    }
    let (status, body) = call(&proxy, "/", Some(&revoked_token)).await;
    assert_eq!((status, code(&body).as_str()), (401, "TOKEN_REVOKED"));
    let mut wrong = token.clone();
    wrong.push('x');
    assert_eq!(call(&proxy, "/", Some(&wrong)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_identity_headers_only_from_trusted_networks() {
    let echo = upstream::echo().await;
    let build = |from: &str| {
        TestProxy::new()
            .upstream("echo", echo.addr)
            .route("private", "/", "echo", "auth: required")
            .top_yaml(&format!(
                "authentication:\n  trusted_headers: {{from: [\"{from}\"]}}\n"
            ))
            .start()
    };
    let send = |proxy: &Proxy| {
        client()
            .get(proxy.url("/"))
            .header("x-user-id", "u-42")
            .header("x-user-role", "admin")
            .header("x-user-email", "u42@edge.test")
            .send()
    };
    let trusted = build("127.0.0.0/8");
    let resp = send(&trusted).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-palisade-principal"],
        "User::\"edge|u-42\""
    );
    assert_eq!(echoed["headers"]["x-palisade-roles"], "admin");

    let untrusted = build("10.0.0.0/8");
    let resp = send(&untrusted).await.unwrap();
    assert_eq!(
        resp.status(),
        401,
        "spoofed edge headers from an untrusted peer are not an identity"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_certificates_identify_services() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec![]).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "billing-agent");
    client_params.subject_alt_names.push(SanType::URI(
        "spiffe://acme.test/sa/billing".try_into().unwrap(),
    ));
    let client_cert = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (cert, key, ca_file) = (
        write("s.pem", server.pem()),
        write("s.key", server_key.serialize_pem()),
        write("ca.pem", ca.pem()),
    );
    let echo = upstream::echo().await;
    let start = |require: bool| {
        TestProxy::new()
            .listener_yaml(&format!(
                "    tls: {{cert: \"{cert}\", key: \"{key}\", client_ca: \"{ca_file}\", require_client_cert: {require}}}\n"
            ))
            .upstream("echo", echo.addr)
            .route("private", "/", "echo", "auth: required")
            .start()
    };
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_cert.pem(), client_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    let with_cert = |proxy: &Proxy| {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .identity(identity.clone())
            .resolve("localhost", proxy.addr())
            .build()
            .unwrap()
    };
    let without_cert = |proxy: &Proxy| {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", proxy.addr())
            .build()
            .unwrap()
    };
    let url = |proxy: &Proxy| format!("https://localhost:{}/", proxy.addr().port());

    let optional = start(false);
    let resp = with_cert(&optional)
        .get(url(&optional))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-palisade-principal"],
        "Service::\"spiffe://acme.test/sa/billing\""
    );
    let resp = without_cert(&optional)
        .get(url(&optional))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no certificate, no other credential");

    let required = start(true);
    assert!(
        without_cert(&required)
            .get(url(&required))
            .send()
            .await
            .is_err(),
        "handshake refused without a certificate"
    );
    assert_eq!(
        with_cert(&required)
            .get(url(&required))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_routes_publish_rfc9728_metadata_and_point_401s_at_it() {
    let f = fixture("").await;
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
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_replica_through_redis() {
    let redis = palisade_e2e::redis::RedisServer::start();
    let signer = Signer::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(&signer.jwks()).unwrap()).unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let echo = upstream::echo().await;
    let replica = || {
        TestProxy::new()
            .upstream("echo", echo.addr)
            .route("private", "/", "echo", "auth: required")
            .top_yaml(&format!(
                "authentication:\n  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      \
                 keys: {{jwks_file: \"{}\"}}\n  revocation: {{redis_url: \"{}\", sync_interval: 200ms, \
                 admin_token_file: \"{}\"}}\n",
                jwks.display(),
                redis.url(),
                token_file.display()
            ))
            .start()
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
    let mut refused = false;
    for _ in 0..50 {
        if call(&b, "/", Some(&token)).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        refused,
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
    use palisade_proxy::authn::apikey;
    use palisade_proxy::authn::shared::SharedApiKeys;
    let redis = palisade_e2e::redis::RedisServer::start();
    let store = SharedApiKeys::new(Some(&redis.url()), &[], "palisade:apikeys").unwrap();
    let (mut record, token) = apikey::generate("shared-bot");
    record.roles = vec!["developer".into()];
    store.store(&record).await.unwrap();
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!(
            "authentication:\n  api_keys: {{redis_url: \"{}\"}}\n",
            redis.url()
        ))
        .start();
    let mut status = 0;
    for _ in 0..60 {
        status = call(&proxy, "/", Some(&token)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "a key stored in Redis authenticates");

    record.revoked = true;
    store.store(&record).await.unwrap();
    let mut refused = None;
    for _ in 0..60 {
        let (status, body) = call(&proxy, "/", Some(&token)).await;
        if status == 401 {
            refused = Some(code(&body));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refused.as_deref(), Some("TOKEN_REVOKED"));
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
