//! Test support for end-to-end scenarios: the whole proxy in-process on port 0, real upstreams on
//! port 0, and small clients that time what arrives.
//!
//! ```no_run
//! # async fn demo() {
//! use palisade_e2e::{TestProxy, upstream};
//! let echo = upstream::echo().await;
//! let proxy = TestProxy::new()
//!     .upstream("echo", echo.addr)
//!     .route("api", "/api", "echo", "")
//!     .start();
//! let resp = palisade_e2e::client().get(proxy.url("/api/x")).send().await.unwrap();
//! # }
//! ```

pub mod agui_client;
pub mod browser;
pub mod issuer;
pub mod oidc;
pub mod orchestrator;
pub mod otlp;
pub mod peers;
pub mod postgres;
pub mod redis;
pub mod sse_client;
pub mod upstream;
pub mod webdriver;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use palisade_proxy::config::Config;
use palisade_proxy::reload::ConfigSource;
use palisade_proxy::server::{self, Running, StartOptions};

/// Fluent builder for an in-process proxy.
#[derive(Default)]
pub struct TestProxy {
    upstreams: Vec<String>,
    routes: Vec<String>,
    listener_extra: String,
    top_extra: String,
    server_extra: String,
    drain_timeout: Option<String>,
}

impl TestProxy {
    /// An empty configuration: plain listener on 127.0.0.1:0, admin on 127.0.0.1:0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upstream named `name` at `addr`, with extra YAML fields (`connect_timeout: 1s`).
    pub fn upstream_with(mut self, name: &str, addr: SocketAddr, extra: &str) -> Self {
        let mut entry = format!("  {name}:\n    address: \"{addr}\"\n");
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            entry.push_str(&format!("    {}\n", line.trim()));
        }
        self.upstreams.push(entry);
        self
    }

    /// Adds an upstream named `name` at `addr`.
    pub fn upstream(self, name: &str, addr: SocketAddr) -> Self {
        self.upstream_with(name, addr, "")
    }

    /// Adds a route `name` for `path_prefix` to `upstream`; `extra` is YAML for further route
    /// fields, one per line (`protocol: agui`, `idle_timeout: 500ms`, `methods` go in `match`
    /// via [`TestProxy::route_matching`]).
    pub fn route(self, name: &str, path_prefix: &str, upstream: &str, extra: &str) -> Self {
        self.route_matching(
            name,
            &format!("path_prefix: {path_prefix}"),
            upstream,
            extra,
        )
    }

    /// Adds a route with a full `match` body in flow YAML (`path_prefix: /a, methods: [GET]`).
    pub fn route_matching(
        mut self,
        name: &str,
        matcher: &str,
        upstream: &str,
        extra: &str,
    ) -> Self {
        let mut entry =
            format!("  - name: {name}\n    match: {{{matcher}}}\n    upstream: {upstream}\n");
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            entry.push_str(&format!("    {}\n", line.trim()));
        }
        // Scenarios about forwarding and streaming run without credentials; the ones about
        // authentication say `auth: required` themselves.
        if !extra.contains("auth:") {
            entry.push_str("    auth: optional\n");
        }
        self.routes.push(entry);
        self
    }

    /// Extra YAML lines for the listener (e.g. a `tls:` block, pre-indented by the caller).
    pub fn listener_yaml(mut self, yaml: &str) -> Self {
        self.listener_extra = yaml.to_string();
        self
    }

    /// Extra top-level YAML (e.g. `limits: {max_body_bytes: 100}`).
    pub fn top_yaml(mut self, yaml: &str) -> Self {
        self.top_extra.push_str(yaml);
        self.top_extra.push('\n');
        self
    }

    /// Extra `server:` fields, one `key: value` per line (`header_timeout: 1s`).
    pub fn server_yaml(mut self, yaml: &str) -> Self {
        for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
            self.server_extra.push_str(&format!("  {}\n", line.trim()));
        }
        self
    }

    /// Sets `server.drain_timeout` (default `5s` in tests).
    pub fn drain_timeout(mut self, value: &str) -> Self {
        self.drain_timeout = Some(value.to_string());
        self
    }

    /// The YAML this builder produces.
    pub fn yaml(&self) -> String {
        let mut y = String::from("listeners:\n  - name: public\n    address: 127.0.0.1:0\n");
        y.push_str(&self.listener_extra);
        y.push_str("admin:\n  address: 127.0.0.1:0\n");
        y.push_str(&format!(
            "server:\n  threads: 2\n  log_level: warn\n  drain_timeout: {}\n",
            self.drain_timeout.as_deref().unwrap_or("5s")
        ));
        y.push_str(&self.server_extra);
        if !self.upstreams.is_empty() {
            y.push_str("upstreams:\n");
            self.upstreams.iter().for_each(|u| y.push_str(u));
        }
        if !self.routes.is_empty() {
            y.push_str("routes:\n");
            self.routes.iter().for_each(|r| y.push_str(r));
        }
        y.push_str(&self.top_extra);
        y
    }

    /// Validates the config and starts the proxy; panics with the config errors otherwise.
    pub fn start(self) -> Proxy {
        let yaml = self.yaml();
        let config = Config::from_yaml(&yaml, Vec::new())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{yaml}"));
        let options = StartOptions {
            handle_signals: false,
            source: Some(ConfigSource::embedded(&yaml, Vec::new())),
        };
        let running = server::start(config, options).expect("proxy starts");
        Proxy { running }
    }

    /// Like [`start`](Self::start), from a file at `path` (written here) that the proxy watches
    /// and reloads every `server.reload_interval` (set it with [`server_yaml`](Self::server_yaml)).
    pub fn start_from_file(self, path: &std::path::Path) -> Proxy {
        let yaml = self.yaml();
        std::fs::write(path, &yaml).expect("writing the test config");
        let config = Config::from_yaml(&yaml, Vec::new())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{yaml}"));
        let options = StartOptions {
            handle_signals: false,
            source: Some(ConfigSource {
                path: Some(path.to_path_buf()),
                text: yaml,
                env: Vec::new(),
            }),
        };
        let running = server::start(config, options).expect("proxy starts");
        Proxy { running }
    }
}

/// A running in-process proxy.
pub struct Proxy {
    /// The started proxy.
    pub running: Running,
}

impl Proxy {
    /// The first public listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.running.listeners[0]
    }

    /// `http://<listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.admin, path)
    }

    /// Stops the proxy gracefully and returns once it is down (the drain done, the audit
    /// flushed, the span exporter flushed).
    pub async fn stop(self) {
        let Proxy { running } = self;
        running.shutdown();
        tokio::task::spawn_blocking(move || running.wait())
            .await
            .unwrap();
    }
}

/// Polls `check` every 10 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that never pools connections (each test request sees a fresh connection).
pub fn client() -> reqwest::Client {
    client_builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POSTs `body` as JSON to `url` with [`client`] (`token` as bearer credential when given):
/// the status and the answer's text.
pub async fn post_json(url: &str, token: Option<&str>, body: &serde_json::Value) -> (u16, String) {
    let mut request = client().post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Parses the documented error body and returns `error.code`.
pub fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    let error = &json["error"];
    for field in ["code", "message", "request_id", "trace_id", "timestamp"] {
        assert!(error[field].is_string(), "error.{field} missing in {json}");
    }
    error["code"].as_str().unwrap().to_string()
}

/// A port on loopback that nothing listens on, for as long as this test process runs.
///
/// The port stays bound (never listening) by a socket kept open until the process exits, and
/// without `SO_REUSEADDR`, so no other test process can be handed it: a connection to it is
/// refused every time, rather than reaching whatever another test started on a port just freed.
pub fn closed_port() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(false).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket); // held for the process's lifetime: see above
    addr
}

/// `reqwest::Client::builder()` with ring installed as rustls's provider: reqwest is built
/// without one of its own (the proxy hands it a preconfigured rustls configuration instead).
#[allow(clippy::disallowed_methods)] // installs the provider first (clippy.toml)
pub fn client_builder() -> reqwest::ClientBuilder {
    palisade_wire::outbound::install_default_provider();
    reqwest::Client::builder()
}

/// A free loopback port for a server the test starts itself (nginx, Redis, a Python peer).
///
/// Free when this returns; another process could take it before the server binds it, which the
/// callers' start-up retries or readiness checks notice.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
