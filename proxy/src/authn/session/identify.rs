//! A request on a `session` route: from the cookie to the principal, and the CSRF rule for
//! state-changing requests that carry it.

use std::sync::Arc;

use pingora_http::RequestHeader;

use super::super::Authenticator;
use super::cookie;
use crate::error::ProxyError;
use crate::principal::{AuthMethod, Principal};
use crate::route::Route;

impl Authenticator {
    /// The principal of the request's session: its access token (refreshed first when due)
    /// verified like a bearer token, with `auth_method: session`. Without a live session a page
    /// navigation is sent to sign-in (`LOGIN_REQUIRED`, a `302`), anything else gets `401`.
    pub(in crate::authn) async fn identify_session(
        &self,
        req: &RequestHeader,
    ) -> Result<Arc<Principal>, ProxyError> {
        let Some(sessions) = &self.sessions else {
            return Err(ProxyError::Unauthenticated);
        };
        let to_login = |err: ProxyError| {
            if is_navigation(req) {
                ProxyError::LoginRequired {
                    location: sessions.login_url(req),
                }
            } else {
                err
            }
        };
        let Some(value) = cookie::find(&req.headers, &sessions.spec.cookie.name) else {
            return Err(to_login(ProxyError::Unauthenticated));
        };
        let Some((sid, record)) = sessions.live(value).await? else {
            return Err(to_login(ProxyError::SessionExpired));
        };
        let record = sessions.refreshed(&sid, record).await.map_err(to_login)?;
        let principal = self.verify(&record.access_token).await.map_err(to_login)?;
        let mut principal = Principal::clone(&principal);
        principal.auth_method = AuthMethod::Session;
        Ok(Arc::new(principal))
    }

    /// Refuses a state-changing request (not `GET`, `HEAD`, `OPTIONS`) identified by a session
    /// cookie unless it comes from this site: `Sec-Fetch-Site: same-origin`, or an `Origin`
    /// that is this origin or one the route's `cors` allows with credentials. Browsers send one
    /// of them on every such request; a cookie alone proves nothing about who asked.
    pub fn check_csrf(
        &self,
        principal: &Principal,
        req: &RequestHeader,
        route: &Route,
        tls: bool,
    ) -> Result<(), ProxyError> {
        if principal.auth_method != AuthMethod::Session
            || matches!(
                req.method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            )
        {
            return Ok(());
        }
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let fetch_site = header("sec-fetch-site");
        if fetch_site == Some("same-origin") {
            return Ok(());
        }
        let Some(origin) = header("origin") else {
            return Err(ProxyError::CsrfRejected(match fetch_site {
                Some(site) => format!("Sec-Fetch-Site is {site}"),
                None => "a state-changing request with a session cookie needs an Origin or \
                         Sec-Fetch-Site header"
                    .into(),
            }));
        };
        let https = self.sessions.as_ref().is_some_and(|s| s.spec.cookie.https);
        let own = own_origin(req, tls || https);
        if own.as_deref() == Some(origin)
            || route
                .cors
                .as_ref()
                .is_some_and(|c| c.allows_credentials_from(origin))
        {
            return Ok(());
        }
        Err(ProxyError::CsrfRejected(format!(
            "origin {} is not this site",
            printable(origin)
        )))
    }
}

/// `scheme://host[:port]` of this request as the browser addressed it.
pub(super) fn own_origin(req: &RequestHeader, tls: bool) -> Option<String> {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Whether the request is a page navigation (which is redirected to sign-in, where an API call
/// gets a 401): `Sec-Fetch-Mode: navigate`, or without fetch metadata a `GET` asking for HTML.
fn is_navigation(req: &RequestHeader) -> bool {
    match req.headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() == b"navigate",
        None => {
            req.method == http::Method::GET
                && req
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"))
        }
    }
}

/// At most 100 printable ASCII characters of a client-sent value, for a message.
pub(super) fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect()
}
