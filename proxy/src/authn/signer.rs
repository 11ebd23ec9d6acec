//! ES256 signing keys: the proxy's assertion key and the dev issuer's key.
//!
//! A key is generated at start (in memory only) unless one is configured: replicas behind one
//! Service share an assertion key from a file or the environment (`authentication.assertion`),
//! so an upstream verifies what any replica signed. The public halves are published as a JWKS
//! (the assertion keys on the admin listener at `/.well-known/jwks.json`).
//!
//! A key's `kid` is its RFC 7638 thumbprint, so every replica holding the same key names it the
//! same way, and a rotated-out key keeps its name while it is still published.

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::keys::KeySet;

/// A P-256 signing key and its public JWK.
pub struct Signer {
    key: EncodingKey,
    kid: String,
    jwk: Jwk,
}

impl Signer {
    /// Generates a new key.
    pub fn generate() -> anyhow::Result<Self> {
        Self::from_pem(&generate_pem()?)
    }

    /// A P-256 private key in PKCS#8 PEM (`PRIVATE KEY`; convert a SEC1 `EC PRIVATE KEY` with
    /// `openssl pkcs8 -topk8 -nocrypt`).
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("not a P-256 private key in PEM: {e}"))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|e| anyhow::anyhow!("not a P-256 private key: {e}"))?;
        // 16 characters of the thumbprint: 96 bits, plenty to tell a handful of keys apart.
        let kid: String = jwk
            .thumbprint(ThumbprintHash::SHA256)?
            .chars()
            .take(16)
            .collect();
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { key, kid, jwk })
    }

    /// This key's `kid` (its thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` as an ES256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        self.sign_with_header(header, claims)
    }

    /// Signs `claims` with a caller-built header (its `alg` and `kid` are set to this key's).
    pub fn sign_with_header(
        &self,
        mut header: Header,
        claims: &impl Serialize,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        header.alg = Algorithm::ES256;
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }

    /// The public key as a JWKS document.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// The public key as a verification key set.
    pub fn key_set(&self) -> KeySet {
        let json = serde_json::to_vec(&self.jwks()).unwrap_or_default();
        KeySet::from_jwks(&json).unwrap_or_default()
    }
}

/// A new P-256 private key as PKCS#8 PEM (`palisade assertion-key generate`).
pub fn generate_pem() -> anyhow::Result<String> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(pair.serialize_pem())
}

/// The assertion keys: the one that signs, and the ones rotated out that upstreams may still
/// hold assertions from (published, never used to sign).
pub struct AssertionKeys {
    /// Signs every new assertion.
    pub current: Signer,
    /// Published next to `current` during a rotation's overlap.
    pub previous: Vec<Signer>,
}

impl AssertionKeys {
    /// Loads the configured keys, or generates one (a single replica needs nothing configured).
    pub fn load(spec: &super::config::AssertionSpec) -> anyhow::Result<Self> {
        let current = match (&spec.signing_key_file, &spec.signing_key_env) {
            (Some(path), _) => Signer::from_pem(&read_key_file(path)?).map_err(|e| {
                anyhow::anyhow!("authentication.assertion.signing_key_file {path}: {e}")
            })?,
            (None, Some(var)) => {
                let pem = std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("authentication.assertion.signing_key_env: ${var} is not set")
                })?;
                Signer::from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("authentication.assertion.signing_key_env ${var}: {e}")
                })?
            }
            (None, None) => Signer::generate()?,
        };
        let previous = spec
            .previous_key_files
            .iter()
            .map(|path| {
                Signer::from_pem(&read_key_file(path)?).map_err(|e| {
                    anyhow::anyhow!("authentication.assertion.previous_key_files {path}: {e}")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { current, previous })
    }

    /// Every published key as a JWKS: the current one first, a previous one only once (the same
    /// key listed twice, or a previous key that is the current one, is published once).
    pub fn jwks(&self) -> JwkSet {
        let mut keys: Vec<Jwk> = vec![self.current.public_jwk().clone()];
        for old in &self.previous {
            if !keys
                .iter()
                .any(|k| k.common.key_id.as_deref() == Some(old.kid()))
            {
                keys.push(old.public_jwk().clone());
            }
        }
        JwkSet { keys }
    }
}

fn read_key_file(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_tokens_its_jwks_verifies() {
        let signer = Signer::generate().unwrap();
        let token = signer
            .sign(&serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}))
            .unwrap();
        let set = signer.key_set();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let key = set.get(header.kid.as_deref()).expect("kid in jwks");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &key.key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "x");
        let jwks = serde_json::to_value(signer.jwks()).unwrap();
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "no private part published"
        );
    }

    #[test]
    fn the_same_key_gets_the_same_kid_wherever_it_is_loaded() {
        let pem = generate_pem().unwrap();
        let (a, b) = (
            Signer::from_pem(&pem).unwrap(),
            Signer::from_pem(&pem).unwrap(),
        );
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.kid().len(), 16);
        assert_ne!(a.kid(), Signer::generate().unwrap().kid());
        // What replica `a` signs, replica `b`'s published keys verify.
        let token = a
            .sign(&serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert!(b.key_set().get(header.kid.as_deref()).is_some());
    }

    #[test]
    fn rotation_publishes_the_previous_key_and_signs_with_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
        std::fs::write(&old, generate_pem().unwrap()).unwrap();
        std::fs::write(&new, generate_pem().unwrap()).unwrap();
        let spec = |current: &std::path::Path, previous: Vec<&std::path::Path>| {
            super::super::config::AssertionSpec {
                signing_key_file: Some(current.display().to_string()),
                previous_key_files: previous.iter().map(|p| p.display().to_string()).collect(),
                ..Default::default()
            }
        };
        let before = AssertionKeys::load(&spec(&old, vec![])).unwrap();
        let during = AssertionKeys::load(&spec(&new, vec![&old, &new])).unwrap();
        assert_eq!(before.jwks().keys.len(), 1);
        let kids: Vec<_> = during
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(kids, [during.current.kid(), before.current.kid()]);
        assert_ne!(during.current.kid(), before.current.kid());
    }

    #[test]
    fn a_bad_or_missing_key_is_refused_with_the_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let spec = super::super::config::AssertionSpec {
            signing_key_file: Some(bad.display().to_string()),
            ..Default::default()
        };
        let err = AssertionKeys::load(&spec).err().unwrap().to_string();
        assert!(err.contains("signing_key_file"), "{err}");
        let spec = super::super::config::AssertionSpec {
            signing_key_env: Some("PALISADE_TEST_UNSET_ASSERTION_KEY".into()),
            ..Default::default()
        };
        let err = AssertionKeys::load(&spec).err().unwrap().to_string();
        assert!(err.contains("is not set"), "{err}");
    }
}
