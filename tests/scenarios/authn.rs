//! Authentication end to end: JWT issuers (JWKS file and URL), the RFC 8725 bad-token catalogue,
//! revocation, API keys, trusted edge headers, mTLS client certificates, identity forwarding and
//! the signed assertion.
//!
//! This file holds the shared fixture (a proxy trusting one issuer's JWKS file in front of an echo
//! server) and token helpers; the scenarios live in the modules below, one per theme.

mod credentials;
mod jwt;
mod revocation;
mod trust;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use palisade_e2e::upstream::{self, Upstream};
use palisade_e2e::{client, error_code, Proxy, TestProxy};
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

/// Alice's claims (a developer of tenant acme, valid for 5 minutes, a fresh `jti`), with the
/// fields of `extra` set — or removed where `extra` says `null`.
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
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now());
    format!("{:x}", h.finish())
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

/// Writes `signer`'s JWKS into `dir`; the file's path.
fn jwks_file(signer: &Signer, dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::to_string(&signer.jwks()).unwrap()).unwrap();
    path.display().to_string()
}

struct Fixture {
    proxy: Proxy,
    signer: Signer,
    _dir: tempfile::TempDir,
    _echo: Upstream,
}

/// The proxy trusting [`ISS`] (audience `palisade`, ES256, a JWKS file, roles from `roles`):
/// `/private` requires a credential, `/open` does not. `extra_auth` is appended to the
/// `authentication:` block.
async fn fixture(extra_auth: &str) -> Fixture {
    let signer = Signer::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = jwks_file(&signer, &dir);
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/private", "echo", "auth: required")
        .route("open", "/open", "echo", "auth: optional")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: {ISS}\n      audiences: [palisade]\n      algorithms: [ES256]\n      \
             keys: {{jwks_file: \"{jwks}\"}}\n      claims: {{roles: [roles]}}\n{extra_auth}"
        ))
        .start();
    Fixture {
        proxy,
        signer,
        _dir: dir,
        _echo: echo,
    }
}

/// The proxy with `auth: required` on `/` in front of an echo server and `authentication` as
/// given (YAML, indented under `authentication:`).
fn guarded(echo: &Upstream, authentication: &str) -> Proxy {
    TestProxy::new()
        .upstream("echo", echo.addr)
        .route("private", "/", "echo", "auth: required")
        .top_yaml(&format!("authentication:\n{authentication}"))
        .start()
}

/// GETs `path` (with `token` as bearer credential when given); the status and the JSON body. A
/// `401` must carry `WWW-Authenticate: Bearer`.
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

/// Retries `call` every 50 ms (up to 3 s) until it answers `status`; the last answer.
async fn call_until(proxy: &Proxy, token: &str, status: u16) -> (u16, Value) {
    let mut answer = (0, Value::Null);
    for _ in 0..60 {
        answer = call(proxy, "/", Some(token)).await;
        if answer.0 == status {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    answer
}
