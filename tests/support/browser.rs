//! A scripted browser over HTTP for the browser-session scenarios: a cookie jar, redirects
//! followed one hop at a time (so each hop can be looked at or tampered with), and the real
//! OpenID provider's login and consent forms (`tests/oidc`) filled in.
//!
//! ```no_run
//! # async fn demo(proxy: palisade_e2e::Proxy, idp: palisade_e2e::oidc::Idp) {
//! use palisade_e2e::browser::Browser;
//! let mut browser = Browser::new();
//! let landed = browser.sign_in(&proxy.url("/app"), "admin").await;
//! assert_eq!(landed.status, 200);
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;

/// A fresh random 32-byte cookie key as base64 (`authentication.sessions.cookie.key_file`):
/// from the standard library's randomly keyed hasher, never a fixed key in the repository.
pub fn random_cookie_key() -> String {
    use base64::Engine;
    use std::hash::{BuildHasher, Hasher};
    let bytes: Vec<u8> = (0..4)
        .flat_map(|_| {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                .to_le_bytes()
        })
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Most redirects followed by [`Browser::follow`].
const MAX_HOPS: usize = 20;

/// One response, read whole.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where it came from.
    pub url: Url,
    /// Status.
    pub status: u16,
    /// Headers (names lower case; `set-cookie` may repeat).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Page {
    /// The first header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie` line.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The absolute `Location` of a redirect.
    pub fn location(&self) -> Option<Url> {
        self.url.join(self.header("location")?).ok()
    }

    /// The documented error code of a JSON error body.
    pub fn error_code(&self) -> String {
        crate::error_code(self.body.as_bytes())
    }

    /// The `action` of the first `<form>` on the page.
    pub fn form_action(&self) -> Option<Url> {
        let start = self.body.find("<form")?;
        let rest = &self.body[start..];
        let action = rest.split("action=\"").nth(1)?.split('"').next()?;
        self.url.join(&action.replace("&amp;", "&")).ok()
    }
}

/// A cookie kept by the jar.
#[derive(Debug, Clone)]
struct Cookie {
    value: String,
    path: String,
}

/// A browser: cookies by host (ports share cookies, as in browsers) and no automatic redirects.
pub struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<(String, String), Cookie>,
    /// Sent as `Origin` on POSTs (a page of this origin submitted the form).
    pub origin: Option<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty jar.
    pub fn new() -> Self {
        let http = crate::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            http,
            jar: BTreeMap::new(),
            origin: None,
        }
    }

    /// The value of cookie `name` for `host`, when the jar has it.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar
            .get(&(host.to_string(), name.to_string()))
            .map(|c| c.value.clone())
    }

    /// Puts cookie `name=value` for `host` (path `/`) into the jar: a stolen or kept cookie.
    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.jar.insert(
            (host.to_string(), name.to_string()),
            Cookie {
                value: value.to_string(),
                path: "/".into(),
            },
        );
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?;
        let pairs: Vec<String> = self
            .jar
            .iter()
            .filter(|((h, _), c)| h == host && url.path().starts_with(&c.path))
            .map(|((_, name), c)| format!("{name}={}", c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn keep_cookies(&mut self, url: &Url, headers: &reqwest::header::HeaderMap) {
        let Some(host) = url.host_str() else { return };
        for line in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let mut path = "/".to_string();
            let mut gone = value.is_empty();
            for attr in parts {
                let attr = attr.trim();
                let lower = attr.to_ascii_lowercase();
                if let Some(p) = lower.strip_prefix("path=") {
                    path = attr[5..5 + p.len()].to_string();
                }
                if lower == "max-age=0" || lower.contains("expires=thu, 01 jan 1970") {
                    gone = true;
                }
            }
            let key = (host.to_string(), name.to_string());
            if gone {
                self.jar.remove(&key);
            } else {
                self.jar.insert(
                    key,
                    Cookie {
                        value: value.to_string(),
                        path,
                    },
                );
            }
        }
    }

    /// Sends `request` for `url` with the jar's cookies, keeps the cookies it sets.
    pub async fn send(&mut self, mut request: reqwest::RequestBuilder, url: &Url) -> Page {
        if let Some(cookies) = self.cookie_header(url) {
            request = request.header(reqwest::header::COOKIE, cookies);
        }
        let resp = request.send().await.expect("request sent");
        self.keep_cookies(url, resp.headers());
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp.text().await.unwrap_or_default();
        Page {
            url: url.clone(),
            status,
            headers,
            body,
        }
    }

    /// A page navigation (`GET`, `Sec-Fetch-Mode: navigate`, asking for HTML).
    pub async fn navigate(&mut self, url: &Url) -> Page {
        let request = self
            .http
            .get(url.clone())
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate");
        self.send(request, url).await
    }

    /// A `fetch()` from a page: `GET` asking for JSON.
    pub async fn fetch(&mut self, url: &Url) -> Page {
        let request = self
            .http
            .get(url.clone())
            .header("accept", "application/json");
        self.send(request, url).await
    }

    /// A form submission.
    pub async fn submit(&mut self, url: &Url, form: &[(&str, &str)]) -> Page {
        let mut request = self.http.post(url.clone()).form(form);
        if let Some(origin) = &self.origin {
            request = request.header("origin", origin);
        }
        self.send(request, url).await
    }

    /// Navigates to `url` and follows redirects until a page that is not one.
    pub async fn follow(&mut self, url: &Url) -> Page {
        let mut page = self.navigate(url).await;
        for _ in 0..MAX_HOPS {
            if !(300..400).contains(&page.status) {
                return page;
            }
            let next = page.location().expect("redirect has a Location");
            page = self.navigate(&next).await;
        }
        panic!("more than {MAX_HOPS} redirects from {url}");
    }

    /// Fills the provider's login form with `login` (any password) and consents, from the
    /// provider page `page`; returns the first response that leaves the provider (the
    /// redirect to the callback, not followed).
    pub async fn sign_in_at_provider(&mut self, mut page: Page, login: &str) -> Page {
        let provider = page.url.origin();
        for _ in 0..MAX_HOPS {
            if page.url.origin() != provider {
                return page;
            }
            if (300..400).contains(&page.status) {
                let next = page.location().expect("redirect has a Location");
                if next.origin() != provider {
                    return page;
                }
                page = self.navigate(&next).await;
                continue;
            }
            assert_eq!(page.status, 200, "provider page: {}", page.body);
            let action = page.form_action().unwrap_or_else(|| {
                panic!("no form on the provider's page {}: {}", page.url, page.body)
            });
            page = if page.body.contains("name=\"login\"") {
                self.submit(
                    &action,
                    &[("prompt", "login"), ("login", login), ("password", "x")],
                )
                .await
            } else {
                self.submit(&action, &[("prompt", "consent")]).await
            };
        }
        panic!("the provider never redirected back");
    }

    /// The whole sign-in from a navigation to `start` (a page behind the proxy): redirected to
    /// sign-in, through the provider's forms as `login`, back through the callback, and the
    /// page it lands on.
    pub async fn sign_in(&mut self, start: &str, login: &str) -> Page {
        let start = Url::parse(start).expect("URL");
        let mut page = self.navigate(&start).await;
        // Proxy hops (the page → sign-in → the provider).
        while (300..400).contains(&page.status) && page.url.origin() == start.origin() {
            let next = page.location().expect("Location");
            page = self.navigate(&next).await;
        }
        let back = self.sign_in_at_provider(page, login).await;
        let callback = back.location().expect("redirect back to the callback");
        self.follow(&callback).await
    }
}
