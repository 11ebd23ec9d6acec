//! Per-route CORS: browser front-ends (AG-UI web apps) call Palisade from another origin.
//!
//! A route with `cors:` answers preflights itself, before authentication (a browser never sends
//! credentials on a preflight), and puts the CORS headers on every response of the route — the
//! upstream's and Palisade's own refusals alike, so a page can read a 401, 403 or 429 and its
//! `Retry-After`. The upstream's own `Access-Control-*` headers are dropped on such a route: the
//! policy is the one in the config, not whatever the runtime says.
//!
//! Origins are compared as exact, case-sensitive ASCII serializations (`scheme://host[:port]`,
//! as browsers send them); `*` allows any origin — `null` (sandboxed frames, `file:` pages)
//! included, as browsers read it — and cannot be combined with credentials (browsers refuse that
//! combination, and echoing any origin with credentials would let every site act with the
//! user's cookies). With a list, `null` is allowed only when listed.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use schemars::JsonSchema;
use serde::Deserialize;

/// `routes[].cors` as written in the config.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Origins allowed to call the route, e.g. `https://app.example.com` (scheme, host and port
    /// exactly as a browser sends `Origin`), or `["*"]` for any origin (not with
    /// `allow_credentials`). Required, at least one.
    pub allow_origins: Vec<String>,
    /// Let the browser send cookies or HTTP authentication and read the answer
    /// (`Access-Control-Allow-Credentials: true`). Default: `false` (bearer tokens in
    /// `Authorization` need no credentials mode).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Request headers a page may send. Default: `authorization`, `content-type`, `accept`,
    /// `x-api-key`, `x-request-id`, `idempotency-key`, `last-event-id`, `traceparent`,
    /// `tracestate`, `mcp-session-id`, `mcp-protocol-version`.
    #[serde(default = "default_allow_headers")]
    pub allow_headers: Vec<String>,
    /// Response headers a page may read besides the CORS-safelisted ones. Default: `x-request-id`,
    /// `ratelimit`, `ratelimit-policy`, `retry-after`, `www-authenticate`, `mcp-session-id`.
    #[serde(default = "default_expose_headers")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer. Default: `10m` (browsers cap it: Chromium
    /// at 2 h, Firefox at 24 h).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_age: Duration,
}

fn default_allow_headers() -> Vec<String> {
    [
        "authorization",
        "content-type",
        "accept",
        "x-api-key",
        "x-request-id",
        "idempotency-key",
        "last-event-id",
        "traceparent",
        "tracestate",
        "mcp-session-id",
        "mcp-protocol-version",
    ]
    .map(String::from)
    .to_vec()
}

fn default_expose_headers() -> Vec<String> {
    [
        "x-request-id",
        "ratelimit",
        "ratelimit-policy",
        "retry-after",
        "www-authenticate",
        "mcp-session-id",
    ]
    .map(String::from)
    .to_vec()
}

fn default_max_age() -> Duration {
    Duration::from_secs(600)
}

/// A route's validated CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `None`: any origin (`*`).
    origins: Option<Vec<String>>,
    credentials: bool,
    /// Lower-case header names.
    allow_headers: Vec<String>,
    allow_headers_value: HeaderValue,
    expose_headers_value: Option<HeaderValue>,
    max_age_value: HeaderValue,
}

/// A header to add to a response: CORS names are static.
pub type CorsHeader = (&'static str, HeaderValue);

/// Why a preflight is refused (the message of the `CORS_REJECTED` answer).
pub type Rejection = String;

impl Cors {
    /// Validates `spec`; errors are `(field, message)` relative to `routes[i].cors`.
    pub fn new(spec: &CorsSpec) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if spec.allow_origins.is_empty() {
            errors.push((
                "allow_origins".into(),
                "list at least one origin (or `*`)".into(),
            ));
        }
        let any = spec.allow_origins.iter().any(|o| o == "*");
        if any && spec.allow_origins.len() > 1 {
            errors.push((
                "allow_origins".into(),
                "`*` already allows every origin: list it alone".into(),
            ));
        }
        if any && spec.allow_credentials {
            errors.push((
                "allow_credentials".into(),
                "cannot be true with `allow_origins: [\"*\"]`: list the origins".into(),
            ));
        }
        for (i, origin) in spec.allow_origins.iter().enumerate() {
            if origin != "*" && origin != "null" {
                if let Err(e) = check_origin(origin) {
                    errors.push((format!("allow_origins[{i}]"), e));
                }
            }
        }
        for (field, list) in [
            ("allow_headers", &spec.allow_headers),
            ("expose_headers", &spec.expose_headers),
        ] {
            for (i, name) in list.iter().enumerate() {
                if name == "*" {
                    errors.push((
                        format!("{field}[{i}]"),
                        "list the header names (`*` is not supported)".into(),
                    ));
                } else if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    errors.push((
                        format!("{field}[{i}]"),
                        format!("`{name}` is not a header name"),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let lower = |list: &[String]| -> Vec<String> {
            list.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        let allow_headers = lower(&spec.allow_headers);
        let joined = |list: &[String]| HeaderValue::from_str(&list.join(", ")).ok();
        Ok(Self {
            origins: (!any).then(|| spec.allow_origins.clone()),
            credentials: spec.allow_credentials,
            allow_headers_value: joined(&allow_headers).unwrap_or(HeaderValue::from_static("")),
            allow_headers,
            expose_headers_value: joined(&lower(&spec.expose_headers))
                .filter(|_| !spec.expose_headers.is_empty()),
            max_age_value: HeaderValue::from(spec.max_age.as_secs()),
        })
    }

    /// Whether pages from `origin` may call with credentials (listed, `allow_credentials`): the
    /// one cross-origin caller a session cookie is accepted from (authn/session CSRF check).
    /// `null` never is, even when listed: sandboxed frames, `data:` pages and cross-origin
    /// redirects all send it, so it names no site.
    pub fn allows_credentials_from(&self, origin: &str) -> bool {
        self.credentials
            && origin != "null"
            && self
                .origins
                .as_ref()
                .is_some_and(|list| list.iter().any(|o| o == origin))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => list
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
                .then(|| origin.clone()),
        }
    }

    /// The headers for an actual (non-preflight) response to a request from `origin`. Always
    /// `Vary: Origin` when the answer depends on it; the rest only for an allowed origin.
    pub fn response_headers(&self, origin: Option<&HeaderValue>) -> Vec<CorsHeader> {
        let mut out = Vec::with_capacity(4);
        if self.origins.is_some() {
            out.push(("vary", HeaderValue::from_static("origin")));
        }
        let Some(allowed) = origin.and_then(|o| self.allow_origin(o)) else {
            return out;
        };
        out.push(("access-control-allow-origin", allowed));
        if self.credentials {
            out.push((
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(expose) = &self.expose_headers_value {
            out.push(("access-control-expose-headers", expose.clone()));
        }
        out
    }

    /// Answers a preflight from `origin` asking for `method` and `requested` headers on a route
    /// that allows `method` (routing checked it): the headers of a `204`, or why it is refused.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        method: &Method,
        requested: Option<&HeaderValue>,
    ) -> Result<Vec<CorsHeader>, Rejection> {
        let mut vary = vec![(
            "vary",
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        )];
        let Some(allowed) = self.allow_origin(origin) else {
            return Err(format!(
                "origin {} may not call this route",
                shown(origin.as_bytes())
            ));
        };
        if let Some(requested) = requested {
            let text = requested
                .to_str()
                .map_err(|_| "Access-Control-Request-Headers is not ASCII".to_string())?;
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !self
                    .allow_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(name))
                {
                    return Err(format!(
                        "request header {} is not allowed",
                        shown(name.as_bytes())
                    ));
                }
            }
        }
        let method_value =
            HeaderValue::from_str(method.as_str()).map_err(|_| "bad method".to_string())?;
        vary.extend([
            ("access-control-allow-origin", allowed),
            ("access-control-allow-methods", method_value),
            (
                "access-control-allow-headers",
                self.allow_headers_value.clone(),
            ),
            ("access-control-max-age", self.max_age_value.clone()),
        ]);
        if self.credentials {
            vary.push((
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            ));
        }
        Ok(vary)
    }
}

/// A preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method` (Fetch §4.8). Returns
/// the origin and the method asked for.
pub fn preflight_request<'a>(
    method: &Method,
    headers: &'a HeaderMap,
) -> Option<(&'a HeaderValue, Method)> {
    if method != Method::OPTIONS {
        return None;
    }
    let origin = headers.get(http::header::ORIGIN)?;
    let asked = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let asked = Method::from_bytes(asked.as_bytes()).ok()?;
    Some((origin, asked))
}

/// A client-sent value as it appears in a refusal, the log line and the audit record: at most
/// 100 bytes of it.
fn shown(value: &[u8]) -> String {
    let cut = &value[..value.len().min(100)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if value.len() > cut.len() {
        text.push('…');
    }
    text
}

/// Whether `name` is a CORS response header (dropped from upstream responses on CORS routes).
pub fn is_cors_header(name: &http::HeaderName) -> bool {
    name.as_str().starts_with("access-control-")
}

/// `scheme://host[:port]` with nothing after, as browsers serialize an origin.
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{origin}` is not an origin: {why}"));
    let Some((scheme, rest)) = origin.split_once("://") else {
        return bad("expected scheme://host[:port]");
    };
    if !matches!(scheme, "http" | "https") {
        return bad("the scheme must be http or https");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return bad("no path, query, user or spaces after the host");
    }
    if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("browsers send origins in lower case");
    }
    if !origin.is_ascii() {
        return bad("browsers send an internationalized host in punycode (xn--…)");
    }
    // `[::1]:8080`: the port follows the last `:` after any bracketed IPv6 address.
    let after_host = rest.rsplit_once(']').map_or(rest, |(_, tail)| tail);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        let default = if scheme == "https" { "443" } else { "80" };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad("the port must be digits");
        }
        if port == default {
            return bad("browsers leave out the scheme's default port");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        Cors::new(&yaml_serde::from_str(yaml).unwrap()).unwrap()
    }

    fn value<'a>(headers: &'a [CorsHeader], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    const APP: &str = "https://app.example.com";

    #[test]
    fn an_allowed_origin_gets_its_preflight_and_response_headers() {
        let c = cors("allow_origins: [https://app.example.com]\nallow_credentials: true\n");
        let origin = HeaderValue::from_static(APP);
        let asked = HeaderValue::from_static("Authorization, Content-Type");
        let ok = c.preflight(&origin, &Method::POST, Some(&asked)).unwrap();
        assert_eq!(value(&ok, "access-control-allow-origin"), Some(APP));
        assert_eq!(value(&ok, "access-control-allow-methods"), Some("POST"));
        assert_eq!(value(&ok, "access-control-allow-credentials"), Some("true"));
        assert_eq!(value(&ok, "access-control-max-age"), Some("600"));
        assert!(value(&ok, "access-control-allow-headers")
            .unwrap()
            .contains("authorization"));
        let resp = c.response_headers(Some(&origin));
        assert_eq!(value(&resp, "access-control-allow-origin"), Some(APP));
        assert_eq!(value(&resp, "vary"), Some("origin"));
        assert!(value(&resp, "access-control-expose-headers")
            .unwrap()
            .contains("retry-after"));
    }

    #[test]
    fn other_origins_and_headers_are_refused() {
        let c = cors("allow_origins: [https://app.example.com]\n");
        for evil in [
            "https://evil.example.com",
            "https://app.example.com.evil.com",
            "http://app.example.com",
            "https://APP.example.com",
            "null",
        ] {
            let origin = HeaderValue::from_str(evil).unwrap();
            assert!(c.preflight(&origin, &Method::POST, None).is_err(), "{evil}");
            let resp = c.response_headers(Some(&origin));
            assert_eq!(value(&resp, "access-control-allow-origin"), None, "{evil}");
            assert_eq!(
                value(&resp, "vary"),
                Some("origin"),
                "caches keep answers apart"
            );
        }
        let origin = HeaderValue::from_static(APP);
        let cookie = HeaderValue::from_static("content-type, x-evil");
        let err = c
            .preflight(&origin, &Method::POST, Some(&cookie))
            .unwrap_err();
        assert!(err.contains("x-evil"), "{err}");
        assert_eq!(c.response_headers(None).len(), 1, "no origin: only Vary");
    }

    #[test]
    fn a_session_cookie_is_accepted_cross_origin_only_from_a_listed_site() {
        let c = cors("allow_origins: [https://app.example.com, 'null']\nallow_credentials: true\n");
        assert!(c.allows_credentials_from(APP));
        // Listed or not, `null` names no site (sandboxed frames, data: pages, redirects).
        assert!(!c.allows_credentials_from("null"));
        assert!(!c.allows_credentials_from("https://evil.example.com"));
        let without = cors("allow_origins: [https://app.example.com]\n");
        assert!(
            !without.allows_credentials_from(APP),
            "no allow_credentials"
        );
    }

    #[test]
    fn any_origin_means_star_without_credentials() {
        let c = cors("allow_origins: ['*']\nexpose_headers: []\n");
        for origin in [APP, "null"] {
            let resp = c.response_headers(Some(&HeaderValue::from_static(origin)));
            assert_eq!(value(&resp, "access-control-allow-origin"), Some("*"));
            assert_eq!(
                value(&resp, "vary"),
                None,
                "the same answer for every origin"
            );
        }
        let resp = c.response_headers(Some(&HeaderValue::from_static(APP)));
        assert_eq!(value(&resp, "access-control-expose-headers"), None);
        // A client's value is cut short in the refusal (it is also logged and audited).
        let long = HeaderValue::from_str(&"x".repeat(5000)).unwrap();
        let listed = cors("allow_origins: [https://a.example]\n");
        let err = listed.preflight(&long, &Method::GET, None).unwrap_err();
        assert!(err.len() < 200, "{}", err.len());
    }

    #[test]
    fn invalid_policies_are_refused_with_their_field() {
        let fields = |yaml: &str| -> Vec<String> {
            Cors::new(&yaml_serde::from_str(yaml).unwrap())
                .unwrap_err()
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        };
        assert_eq!(
            fields("allow_origins: ['*']\nallow_credentials: true\n"),
            ["allow_credentials"]
        );
        assert_eq!(fields("allow_origins: []\n"), ["allow_origins"]);
        assert_eq!(
            fields("allow_origins: [https://a.example/, 'https://B.example', ftp://c]\n"),
            ["allow_origins[0]", "allow_origins[1]", "allow_origins[2]"]
        );
        assert_eq!(
            fields("allow_origins: [https://a.example]\nallow_headers: ['bad header', '*']\n"),
            ["allow_headers[0]", "allow_headers[1]"]
        );
        assert_eq!(
            fields(
                "allow_origins: ['https://a.example:443', 'http://b.example:', \
                 'https://bücher.example', 'http://c.example:80']\n"
            ),
            [
                "allow_origins[0]",
                "allow_origins[1]",
                "allow_origins[2]",
                "allow_origins[3]"
            ]
        );
        // Other ports, IPv6 literals and punycode are origins as browsers send them.
        cors(
            "allow_origins: ['http://localhost:5173', 'http://[::1]:8080', \
             'https://xn--bcher-kva.example']\n",
        );
    }

    #[test]
    fn only_options_with_origin_and_a_requested_method_is_a_preflight() {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static(APP));
        assert!(preflight_request(&Method::OPTIONS, &h).is_none());
        h.insert(
            "access-control-request-method",
            HeaderValue::from_static("POST"),
        );
        assert_eq!(
            preflight_request(&Method::OPTIONS, &h).map(|(_, m)| m),
            Some(Method::POST)
        );
        assert!(preflight_request(&Method::POST, &h).is_none());
    }
}
