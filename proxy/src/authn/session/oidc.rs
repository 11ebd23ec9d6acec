//! The small OAuth/OIDC client side of browser sign-in: discovery of the provider's endpoints,
//! PKCE, the authorization URL, the code exchange, refresh (RFC 6749), revocation (RFC 7009)
//! and the RP-initiated logout URL.
//!
//! Written here rather than taken from the `oauth2` / `openidconnect` crates: those bring their
//! own HTTP client stack and JWT verification, while Palisade must use its one outbound trust
//! (`outbound::Trust`, reqwest 0.13) and verify ID tokens with the same issuer keys and rules as
//! every bearer token (`authn/jwt.rs`). What is needed is a few form posts.

use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The endpoints a provider's discovery document names.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    /// `issuer` (must equal the configured issuer).
    pub issuer: String,
    /// Where the browser signs in.
    pub authorization_endpoint: String,
    /// Code exchange and refresh.
    pub token_endpoint: String,
    /// RP-initiated logout, when offered.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 7009 revocation, when offered.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT the configured issuer verifies).
    pub access_token: String,
    /// Seconds until the access token expires, when said.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// A refresh token, when issued (a refresh may rotate it).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The ID token (sign-in; refreshes may include one).
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Why a call to the provider failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider answered with an OAuth error (`invalid_grant`…).
    Refused(String),
    /// The provider could not be reached or answered something unusable.
    Unavailable(String),
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "the identity provider refused: {e}"),
            Self::Unavailable(e) => write!(f, "the identity provider is unavailable: {e}"),
        }
    }
}

/// The provider as a client of it: endpoints discovered once (retried until they load).
pub struct Provider {
    issuer: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    endpoints: ArcSwapOption<Endpoints>,
}

/// Largest provider answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// A fresh random value for `state`, `nonce` or a PKCE verifier: 32 bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE `S256` challenge of `verifier` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Provider {
    /// A client `client_id` of `issuer`.
    pub fn new(
        issuer: &str,
        client_id: &str,
        client_secret: String,
        http: reqwest::Client,
    ) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret,
            http,
            endpoints: ArcSwapOption::empty(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The discovered endpoints (fetched on first use; a failure is retried on the next).
    pub async fn endpoints(&self) -> Result<std::sync::Arc<Endpoints>, ProviderError> {
        if let Some(e) = self.endpoints.load_full() {
            return Ok(e);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("discovery: {e}")))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Unavailable(format!(
                "discovery: status {}",
                resp.status()
            )));
        }
        let body = read_bounded(resp).await?;
        let doc: Endpoints = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unavailable(format!("discovery document: {e}")))?;
        if doc.issuer.trim_end_matches('/') != self.issuer {
            return Err(ProviderError::Unavailable(format!(
                "discovery names issuer {:?}, not {:?}",
                doc.issuer, self.issuer
            )));
        }
        let doc = std::sync::Arc::new(doc);
        self.endpoints.store(Some(doc.clone()));
        Ok(doc)
    }

    /// The authorization request URL.
    pub fn authorize_url(&self, endpoints: &Endpoints, params: &[(&str, &str)]) -> String {
        let mut url = endpoints.authorization_endpoint.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("response_type", "code");
        query.append_pair("client_id", &self.client_id);
        for (k, v) in params {
            query.append_pair(k, v);
        }
        url.push_str(&query.finish());
        url
    }

    /// The authorization code exchange (with the PKCE verifier).
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let endpoints = self.endpoints().await?;
        self.token(
            &endpoints.token_endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// A refresh (the refresh token may come back rotated).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ProviderError> {
        let endpoints = self.endpoints().await?;
        self.token(
            &endpoints.token_endpoint,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// RFC 7009 revocation of `token`, when the provider offers it (`Ok(false)` when not).
    pub async fn revoke(&self, token: &str, hint: &str) -> Result<bool, ProviderError> {
        let endpoints = self.endpoints().await?;
        let Some(url) = &endpoints.revocation_endpoint else {
            return Ok(false);
        };
        let resp = self
            .post(url, &[("token", token), ("token_type_hint", hint)])
            .await?;
        if resp.status().is_success() {
            Ok(true)
        } else {
            Err(ProviderError::Refused(format!(
                "revocation: status {}",
                resp.status()
            )))
        }
    }

    /// The RP-initiated logout URL, when the provider offers one.
    pub fn end_session_url(
        &self,
        endpoints: &Endpoints,
        id_token: Option<&str>,
        post_logout: &str,
    ) -> Option<String> {
        let mut url = endpoints.end_session_endpoint.clone()?;
        url.push(if url.contains('?') { '&' } else { '?' });
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("client_id", &self.client_id);
        if let Some(hint) = id_token {
            query.append_pair("id_token_hint", hint);
        }
        query.append_pair("post_logout_redirect_uri", post_logout);
        url.push_str(&query.finish());
        Some(url)
    }

    async fn token(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, ProviderError> {
        let resp = self.post(url, form).await?;
        let status = resp.status();
        let body = read_bounded(resp).await?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
            }
            let error = serde_json::from_slice::<OAuthError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("status {status}"));
            // Only the OAuth error code travels on (it reaches logs and error messages).
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(ProviderError::Refused(error));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unavailable(format!("token answer: {e}")))
    }

    /// A form post with `client_secret_basic` (RFC 6749 §2.3.1: id and secret form-encoded).
    async fn post(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, ProviderError> {
        let body = {
            let mut body = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                body.append_pair(k, v);
            }
            body.finish()
        };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&self.client_id),
            enc(&self.client_secret)
        ));
        self.http
            .post(url)
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))
    }
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))?
    {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(ProviderError::Unavailable("answer too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_the_base64url_sha256_of_the_verifier() {
        // `printf %s VERIFIER | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d =`
        assert_eq!(
            challenge("dBjftJeZ4CVP-mJ92IXVqjyeBmmEdENawVzBJCZh9cU"),
            "mMMtM4JRHrP4awCGurYXdqv5gHWsRtsc7tBSiPUVcO8"
        );
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }
}
