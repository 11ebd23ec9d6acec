//! The `authentication.sessions:` section: browser sign-in (OIDC authorization code + PKCE) and
//! the session cookie that routes with `auth: session` accept (docs/authentication.md#browser-sessions).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Browser sessions: Palisade signs the user in at an OIDC provider and keeps the tokens; the
/// browser only holds an opaque, sealed cookie.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsSpec {
    /// The `iss` of the OIDC provider users sign in at; it must be one of
    /// `authentication.issuers` (whose keys verify the ID token and the access tokens, and whose
    /// discovery document names the endpoints). Required.
    pub issuer: String,
    /// The OAuth client id Palisade is registered as at the provider. Required.
    pub client_id: String,
    /// Name of an environment variable holding the client secret (`client_secret_basic`).
    /// Default: absent; set it or `client_secret_file`.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (surrounding whitespace ignored). Default: absent.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Scopes asked for at sign-in (`openid` is always sent). Add `offline_access` where the
    /// provider only issues refresh tokens for it (Auth0). Default: `[openid, email, profile]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Extra parameters of the authorization request, e.g. `{audience: https://api.example}`
    /// (Auth0) or `{resource: urn:palisade}` (RFC 8707), so the access token is one the
    /// configured issuer's `audiences` accept. Default: none.
    #[serde(default)]
    pub authorization_params: BTreeMap<String, String>,
    /// The redirect URI registered at the provider. Default: the origin the browser used
    /// (`Host` and the listener's scheme) followed by `paths.callback`; set it in production so
    /// the `Host` header never decides it.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Where the provider sends the browser after RP-initiated logout. Default: the origin the
    /// browser used, followed by `/`.
    #[serde(default)]
    pub post_logout_redirect_uri: Option<String>,
    /// The sign-in, callback and logout paths Palisade answers itself (before routing).
    #[serde(default)]
    pub paths: SessionPathsSpec,
    /// The session cookie and the keys that seal it.
    #[serde(default)]
    pub cookie: SessionCookieSpec,
    /// A session unused for this long ends. Default: `30m`.
    #[serde(default = "default_idle", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active. Default: `12h`.
    #[serde(default = "default_absolute", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub absolute_timeout: Duration,
    /// The access token is refreshed when less than this is left of it (at most half of its
    /// lifetime). Default: `60s`.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refresh_before: Duration,
    /// Where sessions live. Default: in this process (one replica).
    #[serde(default)]
    pub store: SessionStoreSpec,
}

/// The paths of the sign-in flow.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionPathsSpec {
    /// Starts a sign-in; `?return_to=/path` (same-origin path only) is where the browser lands
    /// afterwards. Default: `/.palisade/login`.
    #[serde(default = "default_login")]
    pub login: String,
    /// The redirect URI's path: the provider sends the browser here with the code. Default:
    /// `/.palisade/callback`.
    #[serde(default = "default_callback")]
    pub callback: String,
    /// Ends the session (here, at the provider and in the shared store). Default:
    /// `/.palisade/logout`.
    #[serde(default = "default_logout")]
    pub logout: String,
}

impl Default for SessionPathsSpec {
    fn default() -> Self {
        Self {
            login: default_login(),
            callback: default_callback(),
            logout: default_logout(),
        }
    }
}

/// `SameSite` of the session cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations from other sites.
    #[default]
    Lax,
    /// Sent on same-site requests only (a link from another site arrives signed out).
    Strict,
}

/// The session cookie.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCookieSpec {
    /// Cookie name; the sign-in cookie is this name followed by `-login`. Default:
    /// `palisade-session`.
    #[serde(default = "default_cookie_name")]
    pub name: String,
    /// `SameSite` attribute: `lax` or `strict`. Default: `lax`.
    #[serde(default)]
    pub same_site: SameSite,
    /// Treat every request as HTTPS: cookies always `Secure`, this site's origin `https://…`
    /// (CSRF check, default redirect URIs). Set it when TLS ends in front of Palisade (a load
    /// balancer). Default: `false` (`Secure` exactly when the listener speaks TLS).
    #[serde(default)]
    pub https: bool,
    /// A file holding the 32-byte key (base64) that seals cookies (AES-256-GCM); replicas must
    /// share it. `openssl rand -base64 32` makes one. Default: absent (a key generated at start:
    /// one replica, sessions end on restart).
    #[serde(default)]
    pub key_file: Option<String>,
    /// The same as `key_file`, from the named environment variable. Default: absent.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Keys that still open cookies but never seal new ones (the old key after a rotation).
    /// Default: none.
    #[serde(default)]
    pub previous_key_files: Vec<String>,
}

impl Default for SessionCookieSpec {
    fn default() -> Self {
        Self {
            name: default_cookie_name(),
            same_site: SameSite::Lax,
            https: false,
            key_file: None,
            key_env: None,
            previous_key_files: Vec::new(),
        }
    }
}

/// Where sessions live.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStoreSpec {
    /// `redis://host:port` of a standalone Redis shared by every replica. Default: absent
    /// (sessions in this process).
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster instead of `redis_url`. Default: none.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::urls")]
    pub redis_cluster: Vec<String>,
    /// Prefix of the session keys in Redis. Default: `palisade:session:`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

impl Default for SessionStoreSpec {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_cluster: Vec::new(),
            key_prefix: default_key_prefix(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_absolute() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}
fn default_login() -> String {
    "/.palisade/login".into()
}
fn default_callback() -> String {
    "/.palisade/callback".into()
}
fn default_logout() -> String {
    "/.palisade/logout".into()
}
fn default_cookie_name() -> String {
    "palisade-session".into()
}
fn default_key_prefix() -> String {
    "palisade:session:".into()
}

/// The issuer `authentication.sessions.issuer` names, as [`validate`] needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedIssuer {
    /// Not among `authentication.issuers`.
    Missing,
    /// An HMAC issuer (a shared secret: no provider to sign in at).
    Hmac,
    /// An issuer with public keys (discovery or a JWKS).
    Keys,
}

/// Checks `spec` (at `authentication.sessions`); one error per problem, with its field path.
/// `issuer` is what `authentication.issuers` says of the issuer it names. Secrets (the client
/// secret, the cookie keys) are read through `secrets`, which may excuse absent ones
/// (`--no-env`).
pub fn validate(
    spec: &SessionsSpec,
    issuer: NamedIssuer,
    secrets: &mut crate::secrets::Secrets,
    errors: &mut Vec<crate::error::FieldError>,
) {
    let at = "authentication.sessions";
    let mut push =
        |path: String, message: String| errors.push(crate::error::FieldError { path, message });
    match issuer {
        NamedIssuer::Missing => push(
            format!("{at}.issuer"),
            "must be one of authentication.issuers (its keys verify the ID and access tokens)"
                .into(),
        ),
        NamedIssuer::Hmac => push(
            format!("{at}.issuer"),
            "an HMAC issuer has no sign-in: use an OIDC issuer with discovery or a JWKS".into(),
        ),
        NamedIssuer::Keys => {}
    }
    if !(spec.issuer.starts_with("https://") || spec.issuer.starts_with("http://")) {
        push(format!("{at}.issuer"), "must be an http(s) URL".into());
    }
    if spec.client_id.is_empty() {
        push(format!("{at}.client_id"), "must not be empty".into());
    }
    match (&spec.client_secret_file, &spec.client_secret_env) {
        (Some(_), Some(_)) => push(
            at.into(),
            "set `client_secret_file` or `client_secret_env`, not both".into(),
        ),
        (None, None) => push(
            at.into(),
            "set `client_secret_file` or `client_secret_env` (Palisade is a confidential client)"
                .into(),
        ),
        (Some(file), None) => {
            let path = format!("{at}.client_secret_file");
            match secrets.read(&path, file) {
                Err(e) => push(path, format!("cannot read {file}: {e}")),
                Ok(Some(s)) if s.trim().is_empty() => push(path, format!("{file} is empty")),
                Ok(_) => {}
            }
        }
        (None, Some(var)) => {
            let path = format!("{at}.client_secret_env");
            if let Err(message) = secrets.var(&path, var) {
                push(path, message);
            }
        }
    }
    let paths = [
        ("login", &spec.paths.login),
        ("callback", &spec.paths.callback),
        ("logout", &spec.paths.logout),
    ];
    for (name, path) in paths {
        if !path.starts_with('/') || path.contains(['?', '#']) {
            push(
                format!("{at}.paths.{name}"),
                "must be a path starting with `/` (no query)".into(),
            );
        }
    }
    if paths[0].1 == paths[1].1 || paths[0].1 == paths[2].1 || paths[1].1 == paths[2].1 {
        push(
            format!("{at}.paths"),
            "login, callback and logout must differ".into(),
        );
    }
    for (name, uri) in [
        ("redirect_uri", &spec.redirect_uri),
        ("post_logout_redirect_uri", &spec.post_logout_redirect_uri),
    ] {
        if let Some(uri) = uri {
            if url::Url::parse(uri).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                push(
                    format!("{at}.{name}"),
                    "must be an absolute http(s) URL".into(),
                );
            }
        }
    }
    let cookie = &spec.cookie;
    if cookie.name.is_empty()
        || !cookie
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        push(
            format!("{at}.cookie.name"),
            "letters, digits, `_` and `-` only".into(),
        );
    }
    if cookie.key_file.is_some() && cookie.key_env.is_some() {
        push(
            format!("{at}.cookie"),
            "set `key_file` or `key_env`, not both".into(),
        );
    }
    let files = cookie
        .key_file
        .iter()
        .map(|f| (format!("{at}.cookie.key_file"), f))
        .chain(
            cookie
                .previous_key_files
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("{at}.cookie.previous_key_files[{i}]"), f)),
        );
    for (path, file) in files {
        match secrets.read(&path, file) {
            Err(e) => push(path, format!("cannot read {file}: {e}")),
            Ok(None) => {}
            Ok(Some(text)) => {
                if let Err(e) = parse_key(&text) {
                    push(path, format!("{file}: {e}"));
                }
            }
        }
    }
    if let Some(var) = &cookie.key_env {
        let path = format!("{at}.cookie.key_env");
        match secrets.var(&path, var) {
            Err(message) => push(path, message),
            Ok(None) => {}
            Ok(Some(text)) => {
                if let Err(e) = parse_key(&text) {
                    push(path, format!("${var}: {e}"));
                }
            }
        }
    }
    for (name, value) in [
        ("idle_timeout", spec.idle_timeout),
        ("absolute_timeout", spec.absolute_timeout),
    ] {
        if value.is_zero() {
            push(format!("{at}.{name}"), "must be greater than 0".into());
        }
    }
    let store = &spec.store;
    if store.redis_url.is_some() && !store.redis_cluster.is_empty() {
        push(
            format!("{at}.store"),
            "set `redis_url` or `redis_cluster`, not both".into(),
        );
    }
    if store
        .redis_url
        .as_deref()
        .is_some_and(|u| !u.starts_with("redis://") && !u.starts_with("rediss://"))
    {
        push(
            format!("{at}.store.redis_url"),
            "must be a redis:// URL".into(),
        );
    }
}

/// Reads a 32-byte key written as base64 (standard or URL-safe, padded or not).
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| "not base64 (`openssl rand -base64 32` makes a key)".to_string())?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes; the key must be 32 bytes", b.len()))
}
