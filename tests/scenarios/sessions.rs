//! Browser sessions (`authentication.sessions`, routes with `auth: session`) against the real
//! OpenID provider (`tests/oidc`), its login and consent forms driven by a scripted browser
//! (`palisade_e2e::browser`): sign-in with PKCE, `state` and `nonce`, the session cookie on
//! plain and AG-UI routes, refresh, logout, the Redis store shared by two replicas, CSRF.

mod csrf;
mod flow;
mod logout;
mod refresh;

use std::time::Duration;

use palisade_e2e::browser::{random_cookie_key, Browser, Page};
use palisade_e2e::oidc::Idp;
use palisade_e2e::upstream::{self, SseScript, SseUpstream, Upstream};
use palisade_e2e::{eventually, Proxy, TestProxy};
use reqwest::Url;

/// A proxy with sessions in front of an echo (`/app`) and an AG-UI stream (`/agent`).
struct Site {
    idp: Idp,
    proxy: Proxy,
    echo: Upstream,
    sse: SseUpstream,
    /// Holds the client secret and the cookie key.
    dir: tempfile::TempDir,
    options: SiteOptions,
}

/// How a [`Site`] is set up.
struct SiteOptions {
    /// The OAuth client (`web`, or `web-short-lived` for 3-second access tokens).
    client: &'static str,
    /// The AG-UI stream's events and their pace.
    stream: SseScript,
    /// Extra YAML under `authentication.sessions` (4-space indented lines).
    sessions_extra: String,
    /// Extra YAML under `authentication` (2-space indented lines).
    authn_extra: String,
    /// Extra route YAML lines for `/app` (e.g. `cors:`).
    app_extra: String,
}

impl Default for SiteOptions {
    fn default() -> Self {
        Self {
            client: "web",
            stream: SseScript {
                agui: true,
                count: 5,
                interval: Duration::from_millis(20),
                ..SseScript::default()
            },
            sessions_extra: String::new(),
            authn_extra: String::new(),
            app_extra: String::new(),
        }
    }
}

impl Site {
    async fn start(options: SiteOptions) -> Site {
        let idp = Idp::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("secret"),
            palisade_e2e::oidc::client_secret(options.client),
        )
        .unwrap();
        std::fs::write(dir.path().join("cookie.key"), random_cookie_key()).unwrap();
        let (echo, sse) = (upstream::echo().await, upstream::sse(options.stream).await);
        let proxy = Self::proxy(&idp, &dir, &options, &echo, &sse, "audit.jsonl");
        Self::ready(&proxy).await;
        Site {
            idp,
            proxy,
            echo,
            sse,
            dir,
            options,
        }
    }

    /// Another replica with the same configuration (same cookie key, same store), ready.
    async fn replica(&self) -> Proxy {
        let proxy = Self::proxy(
            &self.idp,
            &self.dir,
            &self.options,
            &self.echo,
            &self.sse,
            "replica-audit.jsonl",
        );
        Self::ready(&proxy).await;
        proxy
    }

    fn proxy(
        idp: &Idp,
        dir: &tempfile::TempDir,
        options: &SiteOptions,
        echo: &Upstream,
        sse: &SseUpstream,
        audit: &str,
    ) -> Proxy {
        let path = |f: &str| dir.path().join(f).display().to_string();
        TestProxy::new()
            .upstream("echo", echo.addr)
            .upstream("sse", sse.addr)
            .route(
                "app",
                "/app",
                "echo",
                &format!("auth: session\n{}", options.app_extra),
            )
            .route("agent", "/agent", "sse", "auth: session\nprotocol: agui")
            .top_yaml(&format!(
                "authentication:\n  issuers:\n    - issuer: \"{iss}\"\n      audiences: [palisade]\n      \
                 keys: {{discovery: true}}\n{authn_extra}  sessions:\n    issuer: \"{iss}\"\n    \
                 client_id: {client}\n    client_secret_file: \"{secret}\"\n    \
                 scopes: [openid, email, \"agents:run\"]\n    \
                 authorization_params: {{resource: \"urn:palisade\"}}\n    \
                 refresh_before: 1s\n    cookie: {{key_file: \"{key}\"}}\n{extra}\
                 audit:\n  file: {{path: \"{audit}\"}}\n",
                iss = idp.issuer,
                client = options.client,
                secret = path("secret"),
                key = path("cookie.key"),
                audit = path(audit),
                authn_extra = options.authn_extra,
                extra = options.sessions_extra,
            ))
            .start()
    }

    async fn ready(proxy: &Proxy) {
        eventually(Duration::from_secs(10), || {
            proxy.running.lifecycle.is_ready().then_some(())
        })
        .await
        .expect("ready once the IdP's keys loaded");
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&self.proxy.url(path)).unwrap()
    }

    /// A browser on this site, signed in as `login`, landed on `/app`.
    async fn signed_in(&self, login: &str) -> (Browser, Page) {
        let mut browser = Browser::new();
        browser.origin = Some(self.origin());
        let landed = browser.sign_in(self.url("/app").as_str(), login).await;
        (browser, landed)
    }

    /// `http://127.0.0.1:<port>`.
    fn origin(&self) -> String {
        self.url("/").origin().ascii_serialization()
    }

    /// The audit records written so far by the first replica.
    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The session cookie the browser holds for this site.
    fn session_cookie(&self, browser: &Browser) -> Option<String> {
        browser.cookie("127.0.0.1", "palisade-session")
    }
}

/// An AG-UI run body.
fn run_body() -> serde_json::Value {
    serde_json::json!({
        "threadId": "t1", "runId": "r1",
        "messages": [{"id": "m1", "role": "user", "content": "hello"}],
        "tools": [], "context": [], "state": {}, "forwardedProps": {}
    })
}
