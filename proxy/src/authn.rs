//! Authentication: every request gets a [`Principal`] or is refused.
//!
//! Nothing downstream trusts a header the client could have written: identity comes from a
//! verified credential (JWT, API key) or from identity headers sent by a configured, trusted edge
//! gateway — from anyone else those headers are removed.
//!
//! [`Authenticator::identify`] is the pipeline's one call; [`Authenticator::forward`] writes the
//! identity headers and the signed `X-Palisade-Assertion` for the upstream.

pub mod admin_token;
pub mod apikey;
pub mod claims;
pub mod config;
pub mod jwt;
pub mod keys;
pub mod revocation;
pub mod session;
pub mod shared;
pub mod signer;
mod spec;
mod trusted;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use pingora_http::RequestHeader;

pub use crate::principal::{AuthMethod, Principal, PrincipalKind};
pub use config::{AuthRequirement, AuthnSpec};
pub use spec::validate_spec;

use crate::error::ProxyError;
use apikey::{ApiKeyStore, KeyIndex};
use jwt::Issuer;
use revocation::{RevocationList, TokenCache};
use signer::Signer;

/// The authentication stage and its state.
pub struct Authenticator {
    issuers: Vec<Arc<Issuer>>,
    api_keys: Option<ApiKeyStore>,
    trusted: Option<trusted::TrustedHeaders>,
    cache: TokenCache,
    /// Revoked token ids (`palisade tokens revoke`, admin `POST /revocations`).
    pub revocations: RevocationList,
    /// The admin API's bearer token; `None` turns the admin API off.
    pub admin_token: Option<admin_token::AdminToken>,
    shared: Option<shared::SharedRevocations>,
    /// Hashed with ahash, randomly keyed per process (see `authz`'s `Hasher` on why that is
    /// acceptable for caller-influenced keys in a bounded map): one lookup a request.
    assertions: dashmap::DashMap<String, (u64, String), ahash::RandomState>,
    max_token_bytes: usize,
    assertion: signer::AssertionKeys,
    assertion_spec: config::AssertionSpec,
    dev: Option<(Signer, config::DevIssuerSpec)>,
    /// Browser sessions (`authentication.sessions`), when configured.
    sessions: Option<session::Sessions>,
}

impl Authenticator {
    /// Builds the stage from a validated spec: generates the assertion (and dev issuer) keys and
    /// reads HMAC secrets from the environment.
    pub fn new(spec: &AuthnSpec) -> anyhow::Result<Self> {
        // JWKS and discovery: web roots + system store + `authentication.ca_file`.
        let http = crate::outbound::http_client(
            Duration::from_secs(10),
            "authentication.ca_file",
            spec.ca_file.as_deref(),
        )?;
        let mut issuers = spec::build_issuers(spec, &http)?;
        let dev = match &spec.dev_issuer {
            Some(dev_spec) => {
                let signer = Signer::generate()?;
                issuers.push(Arc::new(spec::dev_issuer(dev_spec, &signer)));
                Some((signer, dev_spec.clone()))
            }
            None => None,
        };
        let api_keys = match &spec.api_keys {
            Some(k) => {
                let file = k.file.as_ref().map(std::path::PathBuf::from);
                let from_file = match &file {
                    Some(path) => apikey::KeysFile::load(path)?.keys,
                    None => Vec::new(),
                };
                Some(ApiKeyStore {
                    index: ArcSwap::from_pointee(KeyIndex::new(apikey::KeysFile {
                        keys: from_file.clone(),
                    })),
                    file,
                    redis: apikey::SharedApiKeys::new(
                        k.redis_url.as_deref(),
                        &k.redis_cluster,
                        &k.redis_key,
                    ),
                    from_file: ArcSwap::from_pointee(from_file),
                    from_redis: ArcSwap::from_pointee(Vec::new()),
                })
            }
            None => None,
        };
        Ok(Self {
            issuers,
            api_keys,
            trusted: spec
                .trusted_headers
                .as_ref()
                .map(trusted::TrustedHeaders::new),
            cache: TokenCache::new(spec.token_cache.max_entries),
            revocations: RevocationList::default(),
            admin_token: spec
                .revocation
                .admin_token_file
                .as_deref()
                .map(admin_token::AdminToken::load_or_create)
                .transpose()?,
            shared: shared::SharedRevocations::new(&spec.revocation),
            assertions: dashmap::DashMap::default(),
            max_token_bytes: spec.max_token_bytes,
            assertion: signer::AssertionKeys::load(&spec.assertion)?,
            assertion_spec: spec.assertion.clone(),
            dev,
            sessions: spec
                .sessions
                .as_ref()
                .map(|s| session::Sessions::new(s, http.clone()))
                .transpose()?,
        })
    }

    /// Identifies the caller. Runs first among the policy stages: authorization and limits key on
    /// the principal. Removes untrusted identity headers from `req` as it goes.
    ///
    /// A principal whose attributes cannot be forwarded unambiguously (a control character in a
    /// claim, a role like `user,admin`; see [`Principal::check_attributes`]) is refused with
    /// `UNAUTHENTICATED`: the credential is unusable, whoever signed it.
    pub async fn identify(
        &self,
        req: &mut RequestHeader,
        client_ip: Option<std::net::IpAddr>,
        client_cert: Option<&str>,
        requirement: AuthRequirement,
    ) -> Result<Arc<Principal>, ProxyError> {
        let principal = self
            .identify_unchecked(req, client_ip, client_cert, requirement)
            .await?;
        if let Err(e) = principal.check_attributes() {
            tracing::info!(principal = %principal.entity_uid_header(), error = %e, "credential refused");
            return Err(ProxyError::Unauthenticated);
        }
        Ok(principal)
    }

    async fn identify_unchecked(
        &self,
        req: &mut RequestHeader,
        client_ip: Option<std::net::IpAddr>,
        client_cert: Option<&str>,
        requirement: AuthRequirement,
    ) -> Result<Arc<Principal>, ProxyError> {
        if let Some(trusted) = &self.trusted {
            if let Some(p) = trusted.identify(req, client_ip) {
                return Ok(Arc::new(p));
            }
        }
        match credential(req) {
            Some(Credential::Bearer(token)) | Some(Credential::ApiKey(token)) => {
                let token = token.to_string();
                self.verify(&token).await
            }
            Some(Credential::Unsupported) => Err(ProxyError::Unauthenticated),
            // A browser without a bearer credential: its session cookie (authn/session).
            None if requirement == AuthRequirement::Session => self.identify_session(req).await,
            // A workload with a verified client certificate and no other credential.
            None if client_cert.is_some() => Ok(Arc::new(Principal::new(
                PrincipalKind::Service,
                client_cert.unwrap_or_default(),
                AuthMethod::Mtls,
            ))),
            None if requirement == AuthRequirement::Optional => {
                let ip = client_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
                Ok(Arc::new(Principal::new(
                    PrincipalKind::Anonymous,
                    ip,
                    AuthMethod::Anonymous,
                )))
            }
            None => Err(ProxyError::Unauthenticated),
        }
    }

    /// The principal of a token; a verified JWT's is shared with the token cache (a cache hit
    /// costs no copy of its claims).
    async fn verify(&self, token: &str) -> Result<Arc<Principal>, ProxyError> {
        if token.len() > self.max_token_bytes {
            return Err(ProxyError::Unauthenticated);
        }
        if token.starts_with(apikey::PREFIX) {
            let store = self.api_keys.as_ref().ok_or(ProxyError::Unauthenticated)?;
            return store.index.load().verify(token).map(Arc::new);
        }
        let key = TokenCache::key(token);
        if let Some(hit) = self.cache.get(&key, &self.revocations) {
            return Ok(hit);
        }
        let principal = jwt::verify(&self.issuers, token, self.max_token_bytes).await?;
        if let Some(jti) = &principal.token_id {
            if self.revocations.is_revoked(jti) {
                return Err(ProxyError::TokenRevoked);
            }
        }
        let principal = Arc::new(principal);
        self.cache.insert(key, principal.clone());
        Ok(principal)
    }

    /// Writes the identity headers for the upstream and removes the client's credentials unless
    /// the route forwards them (the session cookies are removed always).
    pub fn forward(
        &self,
        upstream: &mut RequestHeader,
        principal: &Principal,
        route: &str,
        request_id: &str,
        keep_credentials: bool,
    ) -> pingora_core::Result<()> {
        if !keep_credentials {
            upstream.remove_header(&http::header::AUTHORIZATION);
            upstream.remove_header("x-api-key");
        }
        // The session cookies are Palisade's own credentials, of no use to any upstream: never
        // forwarded, not even on a route that forwards the client's token (an upstream holding
        // one could replay it on every session route).
        if let Some(sessions) = &self.sessions {
            sessions.strip_cookies(upstream)?;
        }
        // Every value below passed `Principal::check_attributes` in `identify`: plain ASCII,
        // roles and tenant identity tokens, so the comma-joined roles split back exactly.
        upstream.insert_header("x-palisade-principal", principal.entity_uid_header())?;
        upstream.insert_header("x-palisade-roles", principal.roles.join(","))?;
        if let Some(tenant) = &principal.tenant {
            upstream.insert_header("x-palisade-tenant", tenant.as_str())?;
        }
        let assertion = self.assertion(principal, route, request_id).map_err(|e| {
            pingora_core::Error::because(pingora_core::ErrorType::InternalError, "assertion", e)
        })?;
        upstream.insert_header("x-palisade-assertion", assertion)?;
        Ok(())
    }

    /// The signed identity assertion (ES256, at most 60 s).
    ///
    /// An ES256 signature costs far more than the rest of the request path, so an assertion is
    /// reused for the same principal (every attribute) and route during the first half of its
    /// lifetime; the upstream correlates requests by `X-Request-Id`, not by the assertion.
    pub fn assertion(
        &self,
        p: &Principal,
        route: &str,
        _request_id: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let ttl = self
            .assertion_spec
            .ttl
            .min(Duration::from_secs(60))
            .as_secs();
        let key = assertion_key(p, route);
        if let Some(hit) = self.assertions.get(&key) {
            let (issued, token) = hit.value();
            if now.saturating_sub(*issued) * 2 < ttl {
                return Ok(token.clone());
            }
        }
        let token = self.sign_assertion(p, route, now, ttl)?;
        if self.assertions.len() >= ASSERTION_CACHE_MAX {
            self.assertions
                .retain(|_, (issued, _)| now.saturating_sub(*issued) * 2 < ttl);
        }
        if self.assertions.len() < ASSERTION_CACHE_MAX {
            self.assertions.insert(key, (now, token.clone()));
        }
        Ok(token)
    }

    fn sign_assertion(
        &self,
        p: &Principal,
        route: &str,
        now: u64,
        ttl: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.assertion.current.sign(&serde_json::json!({
            "iss": self.assertion_spec.issuer,
            "sub": p.entity_uid(),
            "aud": route,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid::Uuid::new_v4().to_string(),
            "principal_type": p.kind.entity_type(),
            "principal_id": p.id,
            "roles": p.roles,
            "groups": p.groups,
            "scopes": p.scopes,
            "tenant": p.tenant,
            "email": p.email,
            "mfa": p.mfa,
            "auth_method": p.auth_method.as_str(),
        }))
    }

    /// The public keys of the assertions (the signing one and any rotated out), as JWKS JSON
    /// (served on the admin listener).
    pub fn assertion_jwks(&self) -> serde_json::Value {
        serde_json::to_value(self.assertion.jwks()).unwrap_or_default()
    }

    /// A token from the dev issuer, when one is configured.
    pub fn dev_token(&self) -> Option<String> {
        let (_, spec) = self.dev.as_ref()?;
        self.dev_token_for("dev-user", &spec.roles)
    }

    /// A token from the dev issuer for subject `sub` holding `roles` (`palisade dev` prints one
    /// per seed role, so a denied request is one `export` away).
    pub fn dev_token_for(&self, sub: &str, roles: &[String]) -> Option<String> {
        let (signer, spec) = self.dev.as_ref()?;
        let now = unix_now();
        signer
            .sign(&serde_json::json!({
                "iss": spec.issuer,
                "sub": sub,
                "aud": "palisade",
                "iat": now,
                "exp": now + spec.token_ttl.as_secs(),
                "jti": uuid::Uuid::new_v4().to_string(),
                "email": format!("{sub}@palisade.local"),
                "roles": roles,
                "tenant": spec.tenant,
            }))
            .ok()
    }

    /// Revokes `jti` here at once and, with shared revocation configured, on every replica
    /// (through Redis). The local revocation holds even when Redis is unreachable.
    pub async fn revoke(&self, jti: &str, until: Option<SystemTime>) -> Result<(), String> {
        self.revocations.revoke(jti, until);
        if let Some(shared) = &self.shared {
            let until = until.unwrap_or_else(|| SystemTime::now() + Duration::from_secs(86_400));
            shared
                .publish(jti, until)
                .await
                .map_err(|e| format!("revoked on this replica only; Redis: {e}"))?;
        }
        Ok(())
    }

    /// Issuer URLs of OIDC issuers (the `authorization_servers` of RFC 9728 metadata).
    pub fn authorization_servers(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter(|i| i.issuer.starts_with("https://") || i.issuer.starts_with("http://"))
            .map(|i| i.issuer.clone())
            .collect()
    }

    /// Registers `palisade_jwks_refreshes_total{issuer,result}`: every key fetch (periodic,
    /// unknown `kid`, start-up) by outcome, `success` or `failure`.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let refreshes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "palisade_jwks_refreshes_total",
                "JWKS / discovery key fetches by issuer and result.",
            ),
            &["issuer", "result"],
        )?;
        registry.register(Box::new(refreshes.clone()))?;
        for issuer in &self.issuers {
            keys::count_refreshes(
                &issuer.keys,
                refreshes.with_label_values(&[issuer.issuer.as_str(), "success"]),
                refreshes.with_label_values(&[issuer.issuer.as_str(), "failure"]),
            );
        }
        Ok(())
    }

    /// Whether every issuer that readiness waits for has its keys.
    pub fn is_ready(&self) -> bool {
        self.issuers
            .iter()
            .filter(|i| i.required_for_readiness)
            .all(|i| i.keys.is_loaded())
    }

    /// Loads keys now, then keeps them (and the API keys file) fresh. Runs until the runtime
    /// stops.
    pub async fn run_background(self: Arc<Self>) {
        for issuer in &self.issuers {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                loop {
                    let wait = match issuer.keys.refresh().await {
                        Ok(_) => issuer.refresh_every,
                        Err(e) => {
                            tracing::warn!(issuer = %issuer.issuer, error = %e, "loading keys failed; retrying");
                            Duration::from_secs(2).min(issuer.refresh_every)
                        }
                    };
                    tokio::time::sleep(wait).await;
                }
            });
        }
        if let Some(shared) = &self.shared {
            let this = self.clone();
            let interval = shared.interval();
            tokio::spawn(async move {
                loop {
                    if let Some(shared) = &this.shared {
                        if let Err(e) = shared.pull(&this.revocations).await {
                            tracing::warn!(error = %e, "pulling shared revocations failed");
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
            });
        }
        let mut last_modified = None;
        loop {
            if let Some(store) = &self.api_keys {
                store.refresh(&mut last_modified).await;
            }
            self.revocations.purge_expired();
            if let Some(sessions) = &self.sessions {
                sessions.purge();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Loads every issuer's keys once (benches and tools that do not run the background refresh).
pub async fn jwt_keys_ready(authn: &Authenticator) {
    for issuer in &authn.issuers {
        if let Err(e) = issuer.keys.refresh().await {
            tracing::warn!(issuer = %issuer.issuer, error = %e, "loading keys failed");
        }
    }
}

/// Most assertions kept for reuse.
const ASSERTION_CACHE_MAX: usize = 10_000;

/// `X-API-Key` (a typed name: looked up on every request without a bearer token).
const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// Cache key of an assertion: the route and every principal attribute it carries, serialized
/// unambiguously (a hash collision here would hand one caller another's identity).
fn assertion_key(p: &Principal, route: &str) -> String {
    serde_json::to_string(&(
        route,
        p.kind.entity_type(),
        &p.id,
        &p.roles,
        &p.groups,
        &p.scopes,
        (&p.tenant, &p.email, p.mfa, p.auth_method.as_str()),
    ))
    .unwrap_or_default()
}

/// The time `secs` seconds after the UNIX epoch, at most 9999-12-31T23:59:59Z: seconds from a
/// token's `exp`, a Redis score or an admin request can be any `u64`, and adding one that large
/// to a `SystemTime` panics. Every later time means the same here (not yet).
pub fn unix_time(secs: u64) -> SystemTime {
    const LAST: u64 = 253_402_300_799;
    UNIX_EPOCH + Duration::from_secs(secs.min(LAST))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
    Unsupported,
}

/// The credential a request presents: `Authorization: Bearer …` or `X-API-Key: …`.
fn credential(req: &RequestHeader) -> Option<Credential<'_>> {
    if let Some(value) = req.headers.get(http::header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Some(Credential::Unsupported);
        };
        return match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Some(Credential::Bearer(token.trim()))
            }
            _ => Some(Credential::Unsupported),
        };
    }
    let key = req.headers.get(X_API_KEY)?;
    Some(
        key.to_str()
            .map_or(Credential::Unsupported, |k| Credential::ApiKey(k.trim())),
    )
}

/// Identity as a pipeline stage: [`Authenticator::identify`] runs first and produces the
/// exchange's principal (the one fact every later stage reads); this hook writes the identity
/// headers and the signed assertion on the upstream request.
#[async_trait::async_trait]
impl crate::stage::Stage for Authenticator {
    type State = ();

    fn on_upstream_request(
        &self,
        x: &crate::stage::Exchange<'_>,
        _state: &(),
        upstream: &mut RequestHeader,
    ) -> Result<(), ProxyError> {
        let Some(principal) = x.principal else {
            return Ok(());
        };
        self.forward(
            upstream,
            principal,
            &x.route.name,
            x.request_id,
            x.route.forward_credentials,
        )
        .map_err(|_| ProxyError::Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertions_are_reused_only_for_the_same_identity_and_route() {
        let authn = Authenticator::new(&AuthnSpec::default()).unwrap();
        let mut alice = Principal::new(PrincipalKind::User, "iss|alice", AuthMethod::Jwt);
        alice.roles = vec!["user".into()];
        let first = authn.assertion(&alice, "agent", "r1").unwrap();
        assert_eq!(authn.assertion(&alice, "agent", "r2").unwrap(), first);
        assert_ne!(authn.assertion(&alice, "other-route", "r3").unwrap(), first);
        let mut admin = alice.clone();
        admin.roles = vec!["admin".into()];
        assert_ne!(
            authn.assertion(&admin, "agent", "r4").unwrap(),
            first,
            "new roles, new assertion"
        );
        let bob = Principal::new(PrincipalKind::User, "iss|bob", AuthMethod::Jwt);
        assert_ne!(authn.assertion(&bob, "agent", "r5").unwrap(), first);
    }
}
