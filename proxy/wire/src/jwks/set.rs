//! [`KeySet`]: one issuer's usable keys by `kid`.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One usable key.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key.
    pub key: Arc<DecodingKey>,
    /// The algorithm the JWK pins (`alg`), if it does.
    pub alg: Option<Algorithm>,
}

/// Keys of one issuer by `kid` (the empty string for a key without `kid`).
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
}

impl KeySet {
    /// Parses a JWKS document, skipping keys that cannot verify signatures (e.g. `use: enc`,
    /// unknown `kty`) instead of rejecting the whole set.
    pub fn from_jwks(json: &[u8]) -> Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc["keys"]
            .as_array()
            .ok_or_else(|| "JWKS has no `keys` array".to_string())?;
        let mut by_kid = HashMap::new();
        for raw in keys {
            if raw
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk.common.key_algorithm.and_then(key_algorithm);
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            by_kid.insert(
                kid,
                VerifyKey {
                    key: Arc::new(key),
                    alg,
                },
            );
        }
        Ok(Self { by_kid })
    }

    /// A set with one HMAC secret.
    pub fn hmac(secret: &[u8]) -> Self {
        let mut by_kid = HashMap::new();
        by_kid.insert(
            String::new(),
            VerifyKey {
                key: Arc::new(DecodingKey::from_secret(secret)),
                alg: None,
            },
        );
        Self { by_kid }
    }

    /// The key for `kid`; a token without `kid` matches only when the set has a single key.
    pub fn get(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None if self.by_kid.len() == 1 => self.by_kid.values().next(),
            None => None,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
