//! Key sets and the key store: parsing, outcomes, keeping keys, rate limits, single flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};

use super::{KeySet, KeySource, KeyStore};

/// A JWKS with one fresh ES256 key named `kid`.
fn jwks(kid: &str) -> Vec<u8> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap()
}

fn http() -> reqwest::Client {
    crate::outbound::Trust::default()
        .client_builder()
        .build()
        .unwrap()
}

/// A store reading `path`, and a counter of its fetches.
fn file_store(path: &std::path::Path, refetch_min: Duration) -> (KeyStore, Arc<AtomicUsize>) {
    let store = KeyStore::new(
        KeySource::File(path.to_string_lossy().into_owned()),
        refetch_min,
        http(),
    );
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    store.on_refresh(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    (store, fetches)
}

#[test]
fn jwks_keeps_signing_keys_and_skips_the_rest() {
    let json = br#"{"keys":[
        {"kty":"EC","crv":"P-256","kid":"ec1","alg":"ES256","use":"sig",
         "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty":"EC","crv":"P-256","kid":"enc1","use":"enc",
         "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty":"weird","kid":"w"}
    ]}"#;
    let set = KeySet::from_jwks(json).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.get(Some("ec1")).unwrap().alg, Some(Algorithm::ES256));
    assert!(set.get(Some("enc1")).is_none());
    assert!(
        set.get(None).is_some(),
        "a single key serves tokens without kid"
    );
    assert!(KeySet::from_jwks(b"{}").is_err());
}

#[test]
fn a_token_without_kid_matches_only_a_single_key_set() {
    let mut two: serde_json::Value = serde_json::from_slice(&jwks("a")).unwrap();
    let other: serde_json::Value = serde_json::from_slice(&jwks("b")).unwrap();
    two["keys"]
        .as_array_mut()
        .unwrap()
        .push(other["keys"][0].clone());
    let set = KeySet::from_jwks(&serde_json::to_vec(&two).unwrap()).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.get(Some("b")).is_some());
    assert!(set.get(None).is_none());
}

#[tokio::test]
async fn fetches_are_reported_by_outcome_and_the_last_keys_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks("k1")).unwrap();
    let store = KeyStore::new(
        KeySource::File(path.to_string_lossy().into_owned()),
        Duration::ZERO,
        http(),
    );
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    store.on_refresh(move |ok| seen.lock().unwrap().push(ok));
    assert!(!store.is_loaded() && store.age().is_none());
    assert_eq!(store.refresh().await, Ok(1));
    std::fs::remove_file(&path).unwrap();
    assert!(store.refresh().await.is_err());
    assert_eq!(*outcomes.lock().unwrap(), [true, false]);
    assert!(store.is_loaded());
    assert!(store.current().get(Some("k1")).is_some());
    // Stale keys whose refresh fails still serve.
    assert_eq!(store.ensure_fresh(Duration::ZERO).await, Ok(()));
}

#[tokio::test]
async fn ensure_fresh_fails_only_while_nothing_ever_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.json");
    let (store, fetches) = file_store(&path, Duration::ZERO);
    assert!(store.ensure_fresh(Duration::from_secs(60)).await.is_err());
    std::fs::write(&path, jwks("k1")).unwrap();
    assert_eq!(store.ensure_fresh(Duration::from_secs(60)).await, Ok(()));
    assert_eq!(store.ensure_fresh(Duration::from_secs(60)).await, Ok(()));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "fresh keys are not refetched"
    );
    assert!(store.age().unwrap() < Duration::from_secs(60));
    assert_eq!(store.ensure_fresh(Duration::ZERO).await, Ok(()));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        3,
        "stale keys are refetched"
    );
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks("k1")).unwrap();
    let (store, fetches) = file_store(&path, Duration::from_secs(3600));
    store.refresh().await.unwrap();
    std::fs::write(&path, jwks("k2")).unwrap();
    assert!(!store.refresh_for_unknown_kid().await);
    assert!(store.current().get(Some("k2")).is_none());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    let (store, fetches) = file_store(&path, Duration::ZERO);
    store.refresh().await.unwrap();
    std::fs::write(&path, jwks("k3")).unwrap();
    assert!(store.refresh_for_unknown_kid().await);
    assert!(store.current().get(Some("k3")).is_some());
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fixed_keys_are_loaded_and_never_fetched() {
    let store = KeyStore::fixed(KeySet::from_jwks(&jwks("k")).unwrap());
    assert!(store.is_loaded());
    assert_eq!(store.ensure_fresh(Duration::ZERO).await, Ok(()));
    assert!(!store.refresh_for_unknown_kid().await);
    assert_eq!(store.refresh().await, Ok(1));
    assert_eq!(store.source(), &KeySource::Static);
}

/// Serves `body` over HTTP after `delay`, counting requests.
async fn slow_jwks_server(body: Vec<u8>, delay: Duration) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_callers_share_one_fetch() {
    let (url, hits) = slow_jwks_server(jwks("k1"), Duration::from_millis(200)).await;
    let store = Arc::new(KeyStore::new(KeySource::Url(url), Duration::ZERO, http()));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_fresh(Duration::from_secs(60)).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Ok(()));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(store.current().get(Some("k1")).is_some());
}

#[tokio::test]
async fn an_empty_key_set_replaces_the_keys_and_an_unusable_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks("k1")).unwrap();
    let (store, _) = file_store(&path, Duration::ZERO);
    store.refresh().await.unwrap();
    // Only keys this store cannot use (an encryption key): an error, the last keys serve.
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"oct","use":"enc","k":"c2VjcmV0"}]}"#,
    )
    .unwrap();
    assert!(store.refresh().await.is_err());
    assert!(store.current().get(Some("k1")).is_some());
    // The IdP lists no key at all (every key revoked at once): nothing verifies any more.
    std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
    assert_eq!(store.refresh().await, Ok(0));
    assert!(store.current().get(Some("k1")).is_none());
}

#[tokio::test]
async fn a_failed_first_fetch_is_retried_once_per_interval_not_per_caller() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.json");
    let (store, fetches) = file_store(&path, Duration::from_secs(3600));
    assert!(store.ensure_fresh(Duration::from_secs(60)).await.is_err());
    std::fs::write(&path, jwks("k1")).unwrap();
    let err = store
        .ensure_fresh(Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.contains("refetch_min_interval"), "{err}");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_oversized_document_is_refused_not_buffered() {
    let huge = vec![b' '; 2 * 1024 * 1024];
    let (url, _) = slow_jwks_server(huge, Duration::ZERO).await;
    let store = KeyStore::new(KeySource::Url(url), Duration::ZERO, http());
    let err = store.refresh().await.unwrap_err();
    assert!(err.contains("more than 1048576 bytes"), "{err}");
}
