//! The sign-in, callback and logout endpoints (answered at admission, before routing).
//!
//! The sign-in in progress (`state`, `nonce`, the PKCE verifier, where to return) travels in a
//! short-lived sealed cookie rather than in the store, so a callback may reach any replica.

use std::borrow::Cow;

use pingora_http::RequestHeader;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::super::{jwt, Authenticator};
use super::cookie::{self, Attributes};
use super::identify::{own_origin, printable};
use super::oidc::{self, ProviderError};
use super::store::{unix_now, SessionRecord};
use super::{expiry, unverified_claim, Answer, Endpoint, Sessions};
use crate::error::ProxyError;

/// How long a sign-in may take between `login` and `callback`.
const LOGIN_TTL_SECS: u64 = 600;
/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 2048;

/// The sign-in in progress, sealed into the sign-in cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    return_to: String,
    started: u64,
}

impl Sessions {
    /// Where a navigation without a session goes: the sign-in path, returning to this URL.
    pub(super) fn login_url(&self, req: &RequestHeader) -> String {
        let here = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("return_to", here);
        format!("{}?{}", self.spec.paths.login, query.finish())
    }

    fn attributes(&self, tls: bool) -> Attributes {
        Attributes {
            secure: tls,
            same_site: self.spec.cookie.same_site,
        }
    }

    fn redirect_uri(&self, origin: &str) -> String {
        self.spec
            .redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{origin}{}", self.spec.paths.callback))
    }
}

/// The query parameters of `req`, decoded.
fn query(req: &RequestHeader) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    req.uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).collect())
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(Cow<'_, str>, Cow<'_, str>)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

/// A `return_to` that stays on this origin: an absolute path, not `//host` or `/\host`
/// (which browsers read as another host), no backslash or control character anywhere.
fn same_origin_path(value: &str) -> Result<&str, ProxyError> {
    let ok = value.starts_with('/')
        && !value.starts_with("//")
        && value.len() <= MAX_RETURN_TO
        && !value.contains('\\')
        && !value.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(value)
    } else {
        Err(ProxyError::LoginRejected(
            "return_to must be a path on this site (an open redirect is refused)".into(),
        ))
    }
}

fn unavailable(e: ProviderError) -> ProxyError {
    match e {
        ProviderError::Refused(e) => {
            ProxyError::LoginRejected(format!("the provider refused: {e}"))
        }
        ProviderError::Unavailable(e) => {
            tracing::warn!(error = %e, "identity provider unavailable for sign-in");
            ProxyError::UpstreamUnavailable
        }
    }
}

impl Authenticator {
    /// Which of the session paths `path` is (none when sessions are off).
    pub fn session_endpoint(&self, path: &str) -> Option<Endpoint> {
        self.sessions.as_ref()?.endpoint(path)
    }

    /// Answers a session endpoint. `origin` is `scheme://host` as the browser addressed this
    /// proxy, `tls` whether it did over TLS (cookies are `Secure` then).
    pub async fn answer_session(
        &self,
        endpoint: Endpoint,
        req: &RequestHeader,
        origin: &str,
        tls: bool,
    ) -> Result<Answer, ProxyError> {
        let sessions = self.sessions.as_ref().ok_or(ProxyError::NotFound)?;
        // TLS ended in front of Palisade: the browser's origin is https all the same.
        let tls = tls || sessions.spec.cookie.https;
        let origin = match origin.strip_prefix("http://") {
            Some(rest) if tls => format!("https://{rest}"),
            _ => origin.to_string(),
        };
        let origin = origin.as_str();
        let method = &req.method;
        let allowed = match endpoint {
            Endpoint::Login | Endpoint::Callback => method == http::Method::GET,
            Endpoint::Logout => method == http::Method::GET || method == http::Method::POST,
        };
        if !allowed {
            return Err(ProxyError::MethodNotAllowed {
                allow: if endpoint == Endpoint::Logout {
                    "GET, POST".into()
                } else {
                    "GET".into()
                },
            });
        }
        match endpoint {
            Endpoint::Login => login(sessions, req, origin, tls).await,
            Endpoint::Callback => self.callback(sessions, req, tls).await,
            Endpoint::Logout => self.logout(sessions, req, origin, tls).await,
        }
    }

    /// The provider's redirect back: checks `state` (and `iss`), exchanges the code with the
    /// PKCE verifier, verifies the ID token (issuer keys, `aud` = client id, `nonce`) and that
    /// the access token is one the routes accept, then starts the session.
    async fn callback(
        &self,
        sessions: &Sessions,
        req: &RequestHeader,
        tls: bool,
    ) -> Result<Answer, ProxyError> {
        let params = query(req);
        let pending = cookie::find(&req.headers, &sessions.login_cookie)
            .and_then(|v| sessions.keys.open(&sessions.login_cookie, v))
            .and_then(|plain| serde_json::from_slice::<Pending>(&plain).ok())
            .filter(|p| unix_now().saturating_sub(p.started) <= LOGIN_TTL_SECS)
            .ok_or_else(|| {
                ProxyError::LoginRejected(
                    "no sign-in in progress (the sign-in cookie is missing or expired)".into(),
                )
            })?;
        if let Some(error) = param(&params, "error") {
            return Err(ProxyError::LoginRejected(format!(
                "the provider answered {}",
                printable(error)
            )));
        }
        let state = param(&params, "state").unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(pending.state.as_bytes())) {
            return Err(ProxyError::LoginRejected(
                "state does not match the sign-in in progress".into(),
            ));
        }
        // RFC 9207: a provider that names itself must be ours (mix-up defence).
        if let Some(iss) = param(&params, "iss") {
            if iss.trim_end_matches('/') != sessions.issuer().trim_end_matches('/') {
                return Err(ProxyError::LoginRejected("iss is not the provider".into()));
            }
        }
        let code = param(&params, "code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ProxyError::LoginRejected("no code".into()))?;
        let tokens = sessions
            .provider
            .exchange(code, &pending.redirect_uri, &pending.verifier)
            .await
            .map_err(|e| match e {
                ProviderError::Refused(e) => {
                    ProxyError::LoginRejected(format!("the code exchange was refused ({e})"))
                }
                other => unavailable(other),
            })?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| ProxyError::LoginRejected("the provider sent no ID token".into()))?;
        let issuers: Vec<_> = self
            .issuers
            .iter()
            .filter(|i| i.issuer == sessions.issuer())
            .cloned()
            .collect();
        let audience = [sessions.provider.client_id().to_string()];
        let (_, claims) =
            jwt::verify_claims(&issuers, id_token, self.max_token_bytes, Some(&audience))
                .await
                .map_err(|_| ProxyError::LoginRejected("the ID token did not verify".into()))?;
        let nonce = claims.get("nonce").and_then(|n| n.as_str()).unwrap_or("");
        if !bool::from(nonce.as_bytes().ct_eq(pending.nonce.as_bytes())) {
            return Err(ProxyError::LoginRejected(
                "nonce does not match the sign-in in progress".into(),
            ));
        }
        // The routes verify the access token like a bearer token: refuse a session they
        // would refuse on every request.
        self.verify(&tokens.access_token).await.map_err(|e| {
            ProxyError::LoginRejected(format!(
                "the access token is not accepted by authentication.issuers ({})",
                e.kind().code
            ))
        })?;
        let mut sid = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut sid);
        let now = unix_now();
        let record = SessionRecord {
            access_expires: expiry(&tokens, now),
            access_issued: now,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            id_token: Some(id_token.to_string()),
            created: now,
        };
        sessions
            .store
            .put(&sid, record, sessions.spec.idle_timeout)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "session not stored");
                ProxyError::SessionStoreUnavailable
            })?;
        let attrs = sessions.attributes(tls);
        let name = &sessions.spec.cookie.name;
        Ok(Answer::redirect(pending.return_to)
            .cookie(cookie::set(
                name,
                &sessions.keys.seal(name, &sid),
                sessions.spec.absolute_timeout.as_secs(),
                attrs,
            ))
            .cookie(cookie::set(&sessions.login_cookie, "", 0, attrs)))
    }

    /// Ends the session: deleted from the store (every replica), its access token's `jti`
    /// revoked here and shared, its tokens revoked at the provider (RFC 7009) when it offers
    /// that, the cookie cleared, and the browser sent to the provider's RP-initiated logout.
    async fn logout(
        &self,
        sessions: &Sessions,
        req: &RequestHeader,
        origin: &str,
        tls: bool,
    ) -> Result<Answer, ProxyError> {
        // A cross-site form must not sign the user out: a POST needs this site's Origin (a GET
        // logout link works like any provider's).
        if req.method == http::Method::POST {
            let site = req.headers.get("sec-fetch-site").map(|v| v.as_bytes());
            let from = req.headers.get("origin").and_then(|v| v.to_str().ok());
            if site != Some(b"same-origin") && from != own_origin(req, tls).as_deref() {
                return Err(ProxyError::CsrfRejected(
                    "logout must come from this site".into(),
                ));
            }
        }
        let name = &sessions.spec.cookie.name;
        let live = match cookie::find(&req.headers, name) {
            Some(value) => sessions.live(value).await?,
            None => None,
        };
        let mut id_token = None;
        if let Some((sid, record)) = live {
            sessions.delete(&sid).await;
            if let Some(jti) = unverified_claim(&record.access_token, "jti") {
                let until = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(record.access_expires.max(unix_now()) + 60);
                if let Some(jti) = jti.as_str() {
                    if let Err(e) = self.revoke(jti, Some(until)).await {
                        tracing::warn!(error = %e, "session access token revoked here only");
                    }
                }
            }
            let provider = &sessions.provider;
            if let Some(refresh) = &record.refresh_token {
                if let Err(e) = provider.revoke(refresh, "refresh_token").await {
                    tracing::warn!(error = %e, "refresh token not revoked at the provider");
                }
            }
            if let Err(e) = provider.revoke(&record.access_token, "access_token").await {
                tracing::debug!(error = %e, "access token not revoked at the provider");
            }
            id_token = record.id_token.clone();
        }
        let post_logout = sessions
            .spec
            .post_logout_redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{origin}/"));
        let location = match sessions.provider.endpoints().await {
            Ok(endpoints) => sessions
                .provider
                .end_session_url(&endpoints, id_token.as_deref(), &post_logout)
                .unwrap_or(post_logout),
            Err(e) => {
                tracing::warn!(error = %e, "provider logout skipped");
                post_logout
            }
        };
        Ok(Answer::redirect(location).cookie(cookie::set(name, "", 0, sessions.attributes(tls))))
    }
}

/// Starts a sign-in: a fresh `state`, `nonce` and PKCE verifier sealed into the sign-in cookie,
/// and the browser sent to the provider.
async fn login(
    sessions: &Sessions,
    req: &RequestHeader,
    origin: &str,
    tls: bool,
) -> Result<Answer, ProxyError> {
    let params = query(req);
    let return_to = same_origin_path(param(&params, "return_to").unwrap_or("/"))?.to_string();
    let endpoints = sessions.provider.endpoints().await.map_err(unavailable)?;
    let pending = Pending {
        state: oidc::random_token(),
        nonce: oidc::random_token(),
        verifier: oidc::random_token(),
        redirect_uri: sessions.redirect_uri(origin),
        return_to,
        started: unix_now(),
    };
    let mut scopes = vec!["openid".to_string()];
    scopes.extend(
        sessions
            .spec
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .cloned(),
    );
    let scope = scopes.join(" ");
    let challenge = oidc::challenge(&pending.verifier);
    let mut auth: Vec<(&str, &str)> = vec![
        ("redirect_uri", &pending.redirect_uri),
        ("scope", &scope),
        ("state", &pending.state),
        ("nonce", &pending.nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    auth.extend(
        sessions
            .spec
            .authorization_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let location = sessions.provider.authorize_url(&endpoints, &auth);
    let sealed = sessions.keys.seal(
        &sessions.login_cookie,
        &serde_json::to_vec(&pending).unwrap_or_default(),
    );
    Ok(Answer::redirect(location).cookie(cookie::set(
        &sessions.login_cookie,
        &sealed,
        LOGIN_TTL_SECS,
        sessions.attributes(tls),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_this_site() {
        for ok in ["/", "/app?x=1", "/a/b#frag"] {
            assert_eq!(same_origin_path(ok).unwrap(), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil",
            "javascript:alert(1)",
            "/a\nb",
            "/a b",
            "",
        ] {
            assert!(same_origin_path(bad).is_err(), "{bad:?}");
        }
        assert!(same_origin_path(&format!("/{}", "a".repeat(MAX_RETURN_TO))).is_err());
    }
}
