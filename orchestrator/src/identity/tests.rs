//! Assertion verification against static and fetched keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{IdentityError, Verifier};
use crate::config::IdentityConfig;

/// A test signer like the proxy's.
pub(crate) struct TestSigner {
    key: EncodingKey,
    /// The public key set.
    pub jwks: JwkSet,
}

impl TestSigner {
    pub(crate) fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        Self {
            key,
            jwks: JwkSet { keys: vec![jwk] },
        }
    }

    pub(crate) fn sign(&self, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwks.keys[0].common.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    pub(crate) fn assertion(&self, sub: &str, roles: &[&str], exp_in: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.sign(json!({
            "iss": "palisade", "sub": sub, "aud": "agent", "iat": now, "exp": now + exp_in,
            "roles": roles, "tenant": "acme"
        }))
    }
}

#[tokio::test]
async fn accepts_the_proxys_assertion_and_reads_roles() {
    let signer = TestSigner::new("k1");
    let v = Verifier::new(
        &IdentityConfig::default(),
        Some(signer.jwks.clone()),
        &crate::tls::Trust::default(),
    );
    let token = signer.assertion("User::\"iss|alice\"", &["user", "developer"], 60);
    let caller = v.verify(Some(&token), Some("Bearer abc")).await.unwrap();
    assert_eq!(caller.principal, "User::\"iss|alice\"");
    assert_eq!(caller.roles, ["user", "developer"]);
    assert!(caller.has_role("developer"));
    assert_eq!(caller.tenant.as_deref(), Some("acme"));
    assert_eq!(caller.credential.as_deref(), Some("Bearer abc"));
}

#[tokio::test]
async fn refuses_missing_expired_foreign_and_tampered_assertions() {
    let signer = TestSigner::new("k1");
    let v = Verifier::new(
        &IdentityConfig::default(),
        Some(signer.jwks.clone()),
        &crate::tls::Trust::default(),
    );
    assert!(matches!(
        v.verify(None, None).await,
        Err(IdentityError::Missing)
    ));
    let expired = signer.assertion("u", &[], -120);
    assert!(matches!(
        v.verify(Some(&expired), None).await,
        Err(IdentityError::Invalid(_))
    ));
    let other = TestSigner::new("k1").assertion("u", &["admin"], 60);
    assert!(matches!(
        v.verify(Some(&other), None).await,
        Err(IdentityError::Invalid(_))
    ));
    let wrong_iss = signer.sign(json!({"iss": "someone", "sub": "u", "exp": 4_000_000_000u64}));
    assert!(v.verify(Some(&wrong_iss), None).await.is_err());
    let good = signer.assertion("u", &["user"], 60);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    parts[2] = sig.into_iter().collect();
    assert!(v.verify(Some(&parts.join(".")), None).await.is_err());
    assert!(v.verify(Some("not-a-jwt"), None).await.is_err());
}

#[tokio::test]
async fn listed_audiences_refuse_assertions_for_other_routes() {
    let signer = TestSigner::new("k1");
    let cfg = IdentityConfig {
        audiences: vec!["agent".into()],
        ..IdentityConfig::default()
    };
    let v = Verifier::new(
        &cfg,
        Some(signer.jwks.clone()),
        &crate::tls::Trust::default(),
    );
    let for_agent = signer.assertion("u", &["user"], 60);
    assert!(v.verify(Some(&for_agent), None).await.is_ok());
    let for_other = signer.sign(json!({"iss": "palisade", "sub": "u", "aud": "files",
                                        "exp": 4_000_000_000u64}));
    assert!(matches!(
        v.verify(Some(&for_other), None).await,
        Err(IdentityError::Invalid(_))
    ));
}

#[tokio::test]
async fn optional_mode_lets_unasserted_callers_in_anonymously() {
    let cfg = IdentityConfig {
        require_assertion: false,
        ..IdentityConfig::default()
    };
    let v = Verifier::new(
        &cfg,
        Some(TestSigner::new("k").jwks),
        &crate::tls::Trust::default(),
    );
    let caller = v.verify(None, None).await.unwrap();
    assert!(caller.principal.is_empty() && caller.roles.is_empty());
    assert!(v.ready().await);
}

#[tokio::test]
async fn fetches_keys_once_and_refetches_for_a_new_kid() {
    let first = TestSigner::new("k1");
    let second = TestSigner::new("k2");
    let served = Arc::new(std::sync::Mutex::new(first.jwks.clone()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (s, f) = (served.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (s, f) = (s.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let cfg = IdentityConfig {
        jwks_url: format!("http://{addr}/.well-known/jwks.json"),
        refetch_min_interval: std::time::Duration::from_secs(0),
        ..IdentityConfig::default()
    };
    let v = Verifier::new(&cfg, None, &crate::tls::Trust::default());
    assert!(v.ready().await);
    for _ in 0..3 {
        let t = first.assertion("a", &[], 60);
        v.verify(Some(&t), None).await.unwrap();
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "keys are cached");
    // Key rotation: the proxy now publishes k2; an assertion with k2 triggers one refetch.
    *served.lock().unwrap() = second.jwks.clone();
    let t = second.assertion("b", &["user"], 60);
    assert_eq!(v.verify(Some(&t), None).await.unwrap().principal, "b");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unreachable_jwks_is_not_ready_and_refuses() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = IdentityConfig {
        jwks_url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        ..IdentityConfig::default()
    };
    let v = Verifier::new(&cfg, None, &crate::tls::Trust::default());
    assert!(!v.ready().await);
    let t = TestSigner::new("k").assertion("a", &[], 60);
    assert!(matches!(
        v.verify(Some(&t), None).await,
        Err(IdentityError::Keys(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_fetch_and_keep_keys_when_it_fails_later() {
    let signer = TestSigner::new("k1");
    let jwks = signer.jwks.clone();
    let fetches = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (f, u) = (fetches.clone(), up.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (f, u, jwks) = (f.clone(), u.clone(), jwks.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                if u.load(Ordering::SeqCst) {
                    Ok(axum::Json(jwks))
                } else {
                    Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let cfg = IdentityConfig {
        jwks_url: format!("http://{addr}/.well-known/jwks.json"),
        jwks_ttl: std::time::Duration::from_secs(3600),
        refetch_min_interval: std::time::Duration::from_secs(0),
        ..IdentityConfig::default()
    };
    let v = Verifier::new(&cfg, None, &crate::tls::Trust::default());
    let requests: Vec<_> = (0..6)
        .map(|i| {
            let (v, t) = (v.clone(), signer.assertion(&format!("u{i}"), &[], 60));
            tokio::spawn(async move { v.verify(Some(&t), None).await.map(|c| c.principal) })
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        assert_eq!(request.await.unwrap().unwrap(), format!("u{i}"));
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "one fetch for all first requests"
    );

    // The proxy's JWKS goes away and the keys go stale: the last keys keep serving.
    up.store(false, Ordering::SeqCst);
    let cfg = IdentityConfig {
        jwks_ttl: std::time::Duration::ZERO,
        ..cfg
    };
    let v = Verifier::new(
        &cfg,
        Some(signer.jwks.clone()),
        &crate::tls::Trust::default(),
    );
    assert!(v.ready().await);
    let stale = Verifier::new(&cfg, None, &crate::tls::Trust::default());
    assert!(
        !stale.ready().await,
        "nothing loaded yet and the JWKS is down"
    );
    up.store(true, Ordering::SeqCst);
    assert!(stale.ready().await);
    up.store(false, Ordering::SeqCst);
    let t = signer.assertion("late", &[], 60);
    assert_eq!(
        stale.verify(Some(&t), None).await.unwrap().principal,
        "late"
    );
    assert!(stale.ready().await);
}

#[tokio::test]
async fn an_assertion_without_kid_matches_only_a_single_key_set() {
    let signer = TestSigner::new("k1");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = None;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "palisade", "sub": "u", "exp": now + 60});
    let token = jsonwebtoken::encode(&header, &claims, &signer.key).unwrap();
    let one = Verifier::new(
        &IdentityConfig::default(),
        Some(signer.jwks.clone()),
        &crate::tls::Trust::default(),
    );
    assert_eq!(one.verify(Some(&token), None).await.unwrap().principal, "u");
    let mut both = signer.jwks.clone();
    both.keys.extend(TestSigner::new("k2").jwks.keys);
    let two = Verifier::new(
        &IdentityConfig::default(),
        Some(both),
        &crate::tls::Trust::default(),
    );
    assert!(matches!(
        two.verify(Some(&token), None).await,
        Err(IdentityError::Invalid(_))
    ));
}
