//! Token revocation (`jti` deny-list) and the verified-token cache.
//!
//! The deny-list is in-process by default; entries expire with the token they revoke. The cache
//! is keyed by a SHA-256 of the token (the token itself is never stored), honours `exp`, and is
//! checked against the deny-list on every hit, so a revocation takes effect at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::principal::Principal;

/// Revoked token ids.
#[derive(Default)]
pub struct RevocationList {
    /// jti → unix seconds after which the entry may be forgotten (the token's own `exp`).
    revoked: DashMap<String, u64>,
}

impl RevocationList {
    /// Revokes `jti` until `forget_after` (default: 24 h from now).
    pub fn revoke(&self, jti: &str, forget_after: Option<SystemTime>) {
        let until = forget_after.unwrap_or_else(|| SystemTime::now() + Duration::from_secs(86_400));
        self.revoked.insert(jti.to_string(), unix(until));
    }

    /// Whether `jti` is revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// Revoked ids now listed.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.revoked.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    /// Forgets entries whose tokens have expired anyway.
    pub fn purge_expired(&self) {
        let now = unix(SystemTime::now());
        self.revoked.retain(|_, until| *until > now);
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Verified tokens, so a repeated token costs a hash and a lookup instead of a signature check.
pub struct TokenCache {
    entries: DashMap<[u8; 32], Arc<Principal>>,
    max_entries: usize,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens (0 disables it).
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: DashMap::new(),
            max_entries,
        }
    }

    /// The cache key of a token.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The principal of a previously verified, unexpired, unrevoked token.
    pub fn get(&self, key: &[u8; 32], revoked: &RevocationList) -> Option<Arc<Principal>> {
        let hit = self.entries.get(key)?.value().clone();
        let expired = hit.expires_at.is_some_and(|t| t <= SystemTime::now());
        let is_revoked = hit
            .token_id
            .as_deref()
            .is_some_and(|j| revoked.is_revoked(j));
        if expired || is_revoked {
            self.entries.remove(key);
            return None;
        }
        Some(hit)
    }

    /// Remembers a verified token's principal.
    pub fn insert(&self, key: [u8; 32], principal: Arc<Principal>) {
        if self.max_entries == 0 {
            return;
        }
        if self.entries.len() >= self.max_entries {
            let now = SystemTime::now();
            self.entries
                .retain(|_, p| p.expires_at.is_none_or(|t| t > now));
            if self.entries.len() >= self.max_entries {
                // Still full of live tokens: make room by dropping an arbitrary entry, keeping
                // the bound strict.
                // Bind first: the iterator holds a shard lock that `remove` needs.
                let victim = self.entries.iter().next().map(|e| *e.key());
                if let Some(victim) = victim {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(key, principal);
    }

    /// Entries cached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{AuthMethod, PrincipalKind};

    fn principal(jti: &str, expires_in: i64) -> Arc<Principal> {
        let mut p = Principal::new(PrincipalKind::User, "iss|sub", AuthMethod::Jwt);
        p.token_id = Some(jti.into());
        p.expires_at = Some(if expires_in >= 0 {
            SystemTime::now() + Duration::from_secs(expires_in as u64)
        } else {
            SystemTime::now() - Duration::from_secs((-expires_in) as u64)
        });
        Arc::new(p)
    }

    #[test]
    fn cache_honours_expiry_and_revocation() {
        let cache = TokenCache::new(10);
        let revoked = RevocationList::default();
        let (a, b) = (TokenCache::key("a"), TokenCache::key("b"));
        cache.insert(a, principal("ja", 60));
        cache.insert(b, principal("jb", -1));
        assert!(cache.get(&a, &revoked).is_some());
        assert!(
            cache.get(&b, &revoked).is_none(),
            "expired entries are not served"
        );
        revoked.revoke("ja", None);
        assert!(
            cache.get(&a, &revoked).is_none(),
            "revocation applies to cached tokens"
        );
    }

    #[test]
    fn cache_stays_bounded() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(TokenCache::key(&i.to_string()), principal("j", 60));
        }
        assert!(cache.len() <= 3);
        let off = TokenCache::new(0);
        off.insert(TokenCache::key("x"), principal("j", 60));
        assert!(off.is_empty());
    }

    #[test]
    fn revocations_expire_with_their_tokens() {
        let list = RevocationList::default();
        list.revoke("old", Some(SystemTime::now() - Duration::from_secs(1)));
        list.revoke("new", None);
        list.purge_expired();
        assert_eq!(list.list(), ["new"]);
    }
}
