//! Browser sessions (`authentication.sessions`, routes with `auth: session`): Palisade signs
//! the user in at an OIDC provider (authorization code + PKCE `S256`, `state`, `nonce`), keeps
//! the provider's tokens itself, and gives the browser only an opaque, sealed, HttpOnly cookie.
//!
//! - [`Sessions::endpoint`]: the sign-in, callback and logout paths, answered at admission
//!   before routing and identity (`endpoint.rs`);
//! - [`super::Authenticator::identify`] on a `session` route without a bearer credential reads
//!   the cookie (`identify.rs`): the session's access token is refreshed shortly before it
//!   expires (one refresh per session however many requests arrive, [`Sessions::refreshed`]),
//!   then verified exactly like a bearer JWT, so the principal, its Cedar entity and its audit
//!   fields are the same, with `auth_method: session`;
//! - state-changing requests carrying the cookie must come from this site
//!   ([`super::Authenticator::check_csrf`]).
//!
//! Sessions live in this process or in Redis ([`store`]); the cookie keys rotate ([`cookie`]).

pub mod config;
pub mod cookie;
mod endpoint;
mod identify;
pub mod oidc;
pub mod store;

use std::sync::Arc;

use crate::error::ProxyError;
use config::SessionsSpec;
use cookie::KeyRing;
use oidc::{Provider, ProviderError, TokenResponse};
use store::{unix_now, SessionRecord, SessionStore};

/// One of the paths Palisade answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Starts a sign-in.
    Login,
    /// The provider's redirect back, with the code.
    Callback,
    /// Ends the session.
    Logout,
}

/// A response Palisade writes itself for an [`Endpoint`]: a status (a redirect) and its
/// headers, no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers (`location`, `set-cookie`…), in order.
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn redirect(location: String) -> Self {
        Self {
            status: 302,
            headers: vec![("location", location)],
        }
    }

    fn cookie(mut self, set_cookie: String) -> Self {
        self.headers.push(("set-cookie", set_cookie));
        self
    }
}

/// The sessions of one provider and client.
pub struct Sessions {
    spec: SessionsSpec,
    keys: KeyRing,
    provider: Provider,
    store: SessionStore,
    /// One refresh at a time per session (keyed by session id).
    flights: dashmap::DashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>,
    login_cookie: String,
}

impl Sessions {
    /// Builds the sessions of `spec` (the client secret and cookie keys are read now).
    pub fn new(spec: &SessionsSpec, http: reqwest::Client) -> anyhow::Result<Self> {
        let secret = match (&spec.client_secret_file, &spec.client_secret_env) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("client secret {file}: {e}"))?
                .trim()
                .to_string(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?,
            (None, None) => anyhow::bail!("authentication.sessions: no client secret"),
        };
        Ok(Self {
            keys: KeyRing::load(&spec.cookie)?,
            provider: Provider::new(&spec.issuer, &spec.client_id, secret, http),
            store: SessionStore::new(&spec.store),
            flights: dashmap::DashMap::new(),
            login_cookie: format!("{}-login", spec.cookie.name),
            spec: spec.clone(),
        })
    }

    /// Which of Palisade's own paths `path` is, if any.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let paths = &self.spec.paths;
        if path == paths.login {
            Some(Endpoint::Login)
        } else if path == paths.callback {
            Some(Endpoint::Callback)
        } else if path == paths.logout {
            Some(Endpoint::Logout)
        } else {
            None
        }
    }

    /// Removes the session and sign-in cookies from the `Cookie` headers of a request going
    /// upstream (other cookies stay, in order).
    pub fn strip_cookies(
        &self,
        upstream: &mut pingora_http::RequestHeader,
    ) -> pingora_core::Result<()> {
        let ours = [self.spec.cookie.name.as_str(), self.login_cookie.as_str()];
        if let Some(kept) = cookie::without(&upstream.headers, &ours) {
            upstream.remove_header(&http::header::COOKIE);
            if !kept.is_empty() {
                upstream.insert_header(http::header::COOKIE, kept)?;
            }
        }
        Ok(())
    }

    /// The provider's issuer.
    pub fn issuer(&self) -> &str {
        &self.spec.issuer
    }

    /// Drops idle and expired in-process sessions (the background loop calls it).
    pub fn purge(&self) {
        self.store
            .purge(self.spec.idle_timeout, self.spec.absolute_timeout);
        self.flights.retain(|_, f| Arc::strong_count(f) > 1);
    }

    /// The live session behind a cookie value: `None` when the cookie does not open, the
    /// session is unknown, idle too long or past its absolute lifetime (then it is deleted).
    async fn live(
        &self,
        cookie: &str,
    ) -> Result<Option<(Vec<u8>, Arc<SessionRecord>)>, ProxyError> {
        let Some(sid) = self.keys.open(&self.spec.cookie.name, cookie) else {
            return Ok(None);
        };
        let Some(record) = self.get(&sid).await? else {
            return Ok(None);
        };
        if unix_now().saturating_sub(record.created) > self.spec.absolute_timeout.as_secs() {
            self.delete(&sid).await;
            return Ok(None);
        }
        Ok(Some((sid, record)))
    }

    async fn get(&self, sid: &[u8]) -> Result<Option<Arc<SessionRecord>>, ProxyError> {
        self.store
            .get(sid, self.spec.idle_timeout)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "session store unreachable");
                ProxyError::SessionStoreUnavailable
            })
    }

    async fn delete(&self, sid: &[u8]) {
        if let Err(e) = self.store.delete(sid).await {
            tracing::warn!(error = %e, "session not deleted from the store");
        }
    }

    /// Whether `record`'s access token is due for a refresh: less than `refresh_before` (at
    /// most half its lifetime) left.
    fn due(&self, record: &SessionRecord) -> bool {
        let lifetime = record.access_expires.saturating_sub(record.access_issued);
        let threshold = self.spec.refresh_before.as_secs().min(lifetime / 2);
        record.access_expires.saturating_sub(unix_now()) <= threshold
    }

    /// `record` with a fresh access token when it is due: one refresh per session at a time —
    /// requests arriving meanwhile wait for it and use its result. A refresh the provider
    /// refuses ends the session (`SESSION_EXPIRED`).
    async fn refreshed(
        &self,
        sid: &[u8],
        record: Arc<SessionRecord>,
    ) -> Result<Arc<SessionRecord>, ProxyError> {
        if !self.due(&record) {
            return Ok(record);
        }
        let flight = self.flights.entry(sid.to_vec()).or_default().clone();
        let _one_at_a_time = flight.lock().await;
        // Whoever held the lock before may have refreshed already (or ended the session).
        let current = self.get(sid).await?.ok_or(ProxyError::SessionExpired)?;
        if !self.due(&current) {
            return Ok(current);
        }
        let Some(refresh_token) = current.refresh_token.as_deref() else {
            if current.access_expires > unix_now() {
                return Ok(current);
            }
            self.delete(sid).await;
            return Err(ProxyError::SessionExpired);
        };
        // Across replicas (Redis): one of them refreshes, the others wait for its result.
        let ours = self
            .store
            .lock_refresh(sid, REFRESH_LOCK)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "session store unreachable");
                ProxyError::SessionStoreUnavailable
            })?;
        let Some(owner) = ours else {
            return self.refreshed_elsewhere(sid, current).await;
        };
        let refreshed = self.refresh_now(sid, &current, refresh_token).await;
        self.store.unlock_refresh(sid, &owner).await;
        refreshed
    }

    /// Waits (bounded by the lock's lifetime) for another replica's refresh of `sid` to land in
    /// the store; meanwhile, or if it never does, the current token serves while it is valid.
    async fn refreshed_elsewhere(
        &self,
        sid: &[u8],
        current: Arc<SessionRecord>,
    ) -> Result<Arc<SessionRecord>, ProxyError> {
        if current.access_expires > unix_now() + 1 {
            return Ok(current);
        }
        let polls = REFRESH_LOCK.as_millis() / REFRESH_POLL.as_millis();
        for _ in 0..polls {
            tokio::time::sleep(REFRESH_POLL).await;
            let record = self.get(sid).await?.ok_or(ProxyError::SessionExpired)?;
            if !self.due(&record) {
                return Ok(record);
            }
        }
        Err(ProxyError::SessionExpired)
    }

    /// The refresh itself (this replica holds the refresh lock).
    async fn refresh_now(
        &self,
        sid: &[u8],
        current: &Arc<SessionRecord>,
        refresh_token: &str,
    ) -> Result<Arc<SessionRecord>, ProxyError> {
        match self.provider.refresh(refresh_token).await {
            Ok(tokens) => {
                let rotated = tokens.refresh_token.clone();
                let record = Arc::new(next_record(current, tokens));
                let kept = self
                    .store
                    .replace(sid, (*record).clone(), self.spec.idle_timeout)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "refreshed session not stored");
                        ProxyError::SessionStoreUnavailable
                    })?;
                if !kept {
                    // Logged out while the provider answered: the session stays ended, and the
                    // refresh token it just rotated in is revoked like the one logout revoked.
                    tracing::info!("session ended during its refresh");
                    if let Some(token) = rotated {
                        let _ = self.provider.revoke(&token, "refresh_token").await;
                    }
                    return Err(ProxyError::SessionExpired);
                }
                tracing::debug!("session access token refreshed");
                Ok(record)
            }
            Err(ProviderError::Refused(e)) => {
                tracing::info!(error = %e, "session refresh refused: session ended");
                self.delete(sid).await;
                Err(ProxyError::SessionExpired)
            }
            Err(ProviderError::Unavailable(e)) => {
                tracing::warn!(error = %e, "session refresh failed");
                // The token still works for a while: keep using it; once it is gone, the caller
                // signs in again.
                if current.access_expires > unix_now() {
                    Ok(current.clone())
                } else {
                    Err(ProxyError::SessionExpired)
                }
            }
        }
    }
}

/// How long one replica may hold a session's refresh (the provider's token call has a 10-second
/// timeout).
const REFRESH_LOCK: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a replica waiting for another's refresh looks at the store.
const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The session after a refresh: new access token, the rotated refresh token when one came back
/// (else the old one), the same sign-in time and ID token.
fn next_record(old: &SessionRecord, tokens: TokenResponse) -> SessionRecord {
    let now = unix_now();
    SessionRecord {
        access_expires: expiry(&tokens, now),
        access_issued: now,
        refresh_token: tokens.refresh_token.or_else(|| old.refresh_token.clone()),
        id_token: tokens.id_token.or_else(|| old.id_token.clone()),
        access_token: tokens.access_token,
        created: old.created,
    }
}

/// When an access token expires: `expires_in` when the provider said, else its `exp`.
fn expiry(tokens: &TokenResponse, now: u64) -> u64 {
    tokens
        .expires_in
        .map(|s| now.saturating_add(s))
        .or_else(|| unverified_claim(&tokens.access_token, "exp").and_then(|v| v.as_u64()))
        .unwrap_or(now)
}

/// A claim of a JWT read without verification: only for bookkeeping of a token verified
/// elsewhere (its expiry, its `jti` at logout), never for a decision.
fn unverified_claim(token: &str, name: &str) -> Option<serde_json::Value> {
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    claims.get(name).cloned()
}
