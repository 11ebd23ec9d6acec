//! API keys: `pk_<id>_<secret>` tokens, stored only as SHA-256 hashes in a YAML file.
//!
//! The secret is 32 random bytes, so a plain SHA-256 is enough (nothing to brute-force); the
//! comparison is constant-time. The file is what `palisade keys create|list|revoke` edits and
//! what the proxy re-reads when it changes.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ProxyError;
use crate::principal::{AuthMethod, Principal, PrincipalKind};

/// Prefix of every API key.
pub const PREFIX: &str = "pk_";

/// The keys file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
}

/// One stored key (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Public key id (the `<id>` in `pk_<id>_<secret>`).
    pub id: String,
    /// `sha256:<hex>` of the secret.
    pub hash: String,
    /// Who the key belongs to.
    pub owner: String,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Rate-limit tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339), if any.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Revoked keys are refused with `TOKEN_REVOKED`.
    #[serde(default)]
    pub revoked: bool,
}

impl KeysFile {
    /// Reads `path`; a missing file is an empty key list.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(yaml_serde::from_str(&text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes atomically (temp file + rename), readable by the owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, yaml_serde::to_string(self)?)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }
}

/// A new key: the record to store and the token to hand out once.
pub fn generate(owner: &str) -> (KeyRecord, String) {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let record = KeyRecord {
        id: id.clone(),
        hash: hash_secret(&secret),
        owner: owner.to_string(),
        roles: Vec::new(),
        scopes: Vec::new(),
        tenant: None,
        tier: None,
        created_at: crate::text::now_rfc3339(),
        expires_at: None,
        revoked: false,
    };
    (record, format!("{PREFIX}{id}_{secret}"))
}

fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The keys the proxy checks against, by id.
#[derive(Default)]
pub struct KeyIndex {
    by_id: HashMap<String, KeyRecord>,
}

impl KeyIndex {
    /// Indexes a keys file.
    pub fn new(file: KeysFile) -> Self {
        Self {
            by_id: file.keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
        }
    }

    /// Verifies a `pk_…` token and returns its principal.
    pub fn verify(&self, token: &str) -> Result<Principal, ProxyError> {
        let rest = token
            .strip_prefix(PREFIX)
            .ok_or(ProxyError::Unauthenticated)?;
        let (id, secret) = rest.split_once('_').ok_or(ProxyError::Unauthenticated)?;
        let record = self.by_id.get(id).ok_or(ProxyError::Unauthenticated)?;
        let presented = hash_secret(secret);
        if !bool::from(presented.as_bytes().ct_eq(record.hash.as_bytes())) {
            return Err(ProxyError::Unauthenticated);
        }
        if record.revoked {
            return Err(ProxyError::TokenRevoked);
        }
        let expires_at = record.expires_at.as_deref().and_then(parse_time);
        if expires_at.is_some_and(|t| t <= SystemTime::now()) {
            return Err(ProxyError::TokenExpired);
        }
        let mut p = Principal::new(PrincipalKind::ApiKey, &record.id, AuthMethod::ApiKey);
        p.roles = record.roles.clone();
        p.scopes = record.scopes.clone();
        p.tenant = record.tenant.clone();
        p.limit_tier = record.tier.clone();
        p.expires_at = expires_at;
        Ok(p.normalize())
    }
}

/// Parses an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(super::unix_time(t.unix_timestamp().max(0) as u64))
}

/// API keys from a file and/or Redis, merged into one index (Redis wins on the same id).
pub(super) struct ApiKeyStore {
    pub(super) index: ArcSwap<KeyIndex>,
    pub(super) file: Option<std::path::PathBuf>,
    pub(super) redis: Option<SharedApiKeys>,
    pub(super) from_file: ArcSwap<Vec<KeyRecord>>,
    pub(super) from_redis: ArcSwap<Vec<KeyRecord>>,
}

impl ApiKeyStore {
    /// Re-reads the file when it changed and Redis always; keeps the previous records of a source
    /// that fails.
    pub(super) async fn refresh(&self, last_modified: &mut Option<SystemTime>) {
        let mut changed = false;
        if let Some(path) = &self.file {
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified != *last_modified {
                match KeysFile::load(path) {
                    Ok(file) => {
                        self.from_file.store(std::sync::Arc::new(file.keys));
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "keeping the previous API keys")
                    }
                }
                *last_modified = modified;
            }
        }
        if let Some(redis) = &self.redis {
            match redis.load().await {
                Ok(mut keys) => {
                    keys.sort_by(|a, b| a.id.cmp(&b.id));
                    if **self.from_redis.load() != keys {
                        self.from_redis.store(std::sync::Arc::new(keys));
                        changed = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "keeping the previous API keys from Redis"),
            }
        }
        if changed {
            let mut keys: Vec<KeyRecord> = self.from_file.load().as_ref().clone();
            let redis = self.from_redis.load();
            keys.retain(|k| !redis.iter().any(|r| r.id == k.id));
            keys.extend(redis.iter().cloned());
            self.index
                .store(std::sync::Arc::new(KeyIndex::new(KeysFile { keys })));
        }
    }
}

/// API keys kept in a Redis hash (`id` → JSON [`KeyRecord`]).
pub struct SharedApiKeys {
    key: String,
    link: super::shared::RedisLink,
}

impl SharedApiKeys {
    /// The keys at `key` on `url` / `cluster`, or `None` when no Redis is configured.
    pub fn new(url: Option<&str>, cluster: &[String], key: &str) -> Option<Self> {
        Some(Self {
            key: key.to_string(),
            link: super::shared::RedisLink::new(url, cluster)?,
        })
    }

    /// Every stored key record.
    pub async fn load(&self) -> Result<Vec<KeyRecord>, redis::RedisError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&self.key);
        let entries: Vec<(String, String)> = self.link.query(&cmd).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, json)| {
                serde_json::from_str(&json)
                    .map_err(|e| tracing::warn!(key = %id, error = %e, "unreadable API key record in Redis"))
                    .ok()
            })
            .collect())
    }

    /// Stores (or replaces) a key record.
    pub async fn store(&self, record: &KeyRecord) -> Result<(), redis::RedisError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&self.key)
            .arg(&record.id)
            .arg(serde_json::to_string(record).unwrap_or_default());
        self.link.query::<i64>(&cmd).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_verify_and_nothing_else_does() {
        let (mut record, token) = generate("alice");
        record.roles = vec!["developer".into()];
        record.tier = Some("gold".into());
        let index = KeyIndex::new(KeysFile {
            keys: vec![record.clone()],
        });
        let p = index.verify(&token).unwrap();
        assert_eq!(p.kind, PrincipalKind::ApiKey);
        assert_eq!(p.id, record.id);
        assert_eq!(p.roles, ["developer"]);
        assert_eq!(p.limit_tier.as_deref(), Some("gold"));
        assert!(
            !token.contains(&record.hash[7..]),
            "the token is not the hash"
        );

        let mut wrong = token.clone();
        wrong.pop();
        wrong.push('x');
        for bad in [
            wrong.as_str(),
            "pk_",
            "pk_nope_secret",
            "bearer",
            &token[..token.len() - 1],
        ] {
            assert_eq!(index.verify(bad), Err(ProxyError::Unauthenticated), "{bad}");
        }
    }

    #[test]
    fn revoked_and_expired_keys_are_refused_with_their_codes() {
        let (mut revoked, t1) = generate("a");
        revoked.revoked = true;
        let (mut expired, t2) = generate("b");
        expired.expires_at = Some("2001-01-01T00:00:00Z".into());
        let index = KeyIndex::new(KeysFile {
            keys: vec![revoked, expired],
        });
        assert_eq!(index.verify(&t1), Err(ProxyError::TokenRevoked));
        assert_eq!(index.verify(&t2), Err(ProxyError::TokenExpired));
    }

    #[test]
    fn keys_file_round_trips_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        let (record, token) = generate("carol");
        KeysFile { keys: vec![record] }.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = token.rsplit_once('_').unwrap().1;
        assert!(!text.contains(secret));
        let loaded = KeysFile::load(&path).unwrap();
        assert!(KeyIndex::new(loaded).verify(&token).is_ok());
    }
}
