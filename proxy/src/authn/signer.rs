//! ES256 signing keys generated at start: the proxy's assertion key and the dev issuer's key.
//!
//! Keys live only in memory; their public halves are published as a JWKS (the assertion key on
//! the admin listener at `/.well-known/jwks.json`).

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::keys::KeySet;

/// A freshly generated P-256 key with a random `kid`.
pub struct Signer {
    key: EncodingKey,
    kid: String,
    jwk: Jwk,
}

impl Signer {
    /// Generates a new key.
    pub fn generate() -> anyhow::Result<Self> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?;
        let kid = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { key, kid, jwk })
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
}
