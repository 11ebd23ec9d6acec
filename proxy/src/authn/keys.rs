//! An issuer's verification keys: the key set and cached, refreshed key store shared with the
//! orchestrator ([`palisade_wire::jwks`]), plus what only the proxy knows about them: which
//! source an issuer's config names ([`key_source`]) and the refresh counters
//! ([`count_refreshes`]).

pub use palisade_wire::jwks::{KeySet, KeySource, KeyStore, VerifyKey};

use super::config::KeySourceSpec;

/// The source for a configured issuer (an HMAC `secret_env` is a fixed [`KeySet::hmac`] and
/// never reaches here; with no source set, `Static`).
pub fn key_source(spec: &KeySourceSpec, issuer: &str) -> KeySource {
    if let Some(url) = &spec.jwks_url {
        KeySource::Url(url.clone())
    } else if let Some(path) = &spec.jwks_file {
        KeySource::File(path.clone())
    } else if spec.discovery {
        KeySource::Discovery(issuer.to_string())
    } else {
        KeySource::Static
    }
}

/// Counts every fetch of `store` from now on in `success` / `failure` (fixed keys are never
/// fetched).
pub fn count_refreshes(
    store: &KeyStore,
    success: prometheus::IntCounter,
    failure: prometheus::IntCounter,
) {
    store.on_refresh(move |ok| if ok { success.inc() } else { failure.inc() });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_configured_source_wins_in_order() {
        let spec = |f: fn(&mut KeySourceSpec)| {
            let mut s = KeySourceSpec::default();
            f(&mut s);
            key_source(&s, "https://idp")
        };
        assert_eq!(
            spec(|s| s.jwks_url = Some("https://idp/jwks".into())),
            KeySource::Url("https://idp/jwks".into())
        );
        assert_eq!(
            spec(|s| s.jwks_file = Some("/k.json".into())),
            KeySource::File("/k.json".into())
        );
        assert_eq!(
            spec(|s| s.discovery = true),
            KeySource::Discovery("https://idp".into())
        );
        assert_eq!(spec(|_| ()), KeySource::Static);
    }

    #[tokio::test]
    async fn fetches_are_counted_by_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let signer = crate::authn::signer::Signer::generate().unwrap();
        std::fs::write(&path, serde_json::to_vec(&signer.jwks()).unwrap()).unwrap();
        let store = KeyStore::new(
            KeySource::File(path.to_string_lossy().into_owned()),
            Duration::ZERO,
            crate::outbound::Trust::default()
                .client_builder()
                .build()
                .unwrap(),
        );
        let (ok, failed) = (
            prometheus::IntCounter::new("ok", "ok").unwrap(),
            prometheus::IntCounter::new("failed", "failed").unwrap(),
        );
        count_refreshes(&store, ok.clone(), failed.clone());
        assert_eq!(store.refresh().await, Ok(1));
        std::fs::remove_file(&path).unwrap();
        assert!(store.refresh().await.is_err());
        assert_eq!((ok.get(), failed.get()), (1, 1));
        // The old keys keep serving after the failed fetch.
        assert_eq!(store.current().len(), 1);
    }
}
