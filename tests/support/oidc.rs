//! A real OpenID provider for end-to-end tests: `tests/oidc/server.mjs` (the npm package
//! `oidc-provider`) run by Node.js on a free loopback port, one per [`Idp`].
//!
//! ```no_run
//! # async fn demo() {
//! use palisade_e2e::oidc::{decode_unverified, Idp, TokenRequest};
//! let idp = Idp::start().await;
//! let token = idp.token("admin").await; // RS256, aud "palisade", tenant "acme", roles [admin]
//! let expired = idp
//!     .token_with("developer", &TokenRequest::new().alg("ES256").claim("exp", 1))
//!     .await;
//! let kid_before = decode_unverified(&token).header["kid"].clone();
//! idp.rotate_keys().await; // new kids from now on; the proxy must refetch the JWKS
//! let kid_after = decode_unverified(&idp.token("admin").await).header["kid"].clone();
//! assert_ne!(kid_before, kid_after);
//! assert!(idp.jwks_hits().await < 5);
//! # }
//! ```
//!
//! Clients (secret `test-secret-<name>`; claims and algorithms are listed in
//! `tests/oidc/README.md`): `rs256`, `ps256`, `es256`, `eddsa` (one per algorithm, role `user`,
//! tenant `acme`), `admin`, `developer`, `agent_operator` (tenant `acme`), `user`, `viewer`,
//! `globex-admin` (tenant `globex`), `short-lived` (2-second tokens) and `bare` (registered
//! claims only). Browser sign-in clients (authorization code + PKCE, refresh tokens, loopback
//! redirect URIs on any port): `web` and `web-short-lived` (3-second access tokens); the login
//! form takes any password, and a login named like a client above gets its claims.
//!
//! Node.js ≥ 20.18 and npm must be installed; a missing one fails the test with a message saying
//! so. `npm ci` runs once per checkout when `tests/oidc/node_modules` is missing or stale, under a
//! file lock, so parallel test processes don't race (`tests/run.sh` runs it before the tests).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};

/// The audience of tokens from [`Idp::token`] (resource indicator `urn:palisade`).
pub const AUDIENCE: &str = "palisade";

/// How long the IdP may take to print `READY` after it was spawned: about half a second on an
/// idle machine, but loading oidc-provider took over 30 s on the 2-core CI machine with both
/// cores busy compiling, and twice over 90 s in the full test run on a slow disk, sleeping
/// (not computing) after 0.4 s of CPU (seen 2026-12-07).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The oldest Node.js that `oidc-provider` runs on (`URL.parse`, `crypto.hash`).
const MIN_NODE: (u32, u32) = (20, 18);

/// A running OpenID provider; killed when dropped.
pub struct Idp {
    /// `http://127.0.0.1:<port>`, the `iss` of every token it signs.
    pub issuer: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

/// Options for one token request beyond the client's defaults; see [`Idp::token_with`].
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    alg: Option<String>,
    ttl_secs: Option<u64>,
    audience: Option<String>,
    scope: Option<String>,
    claims: Map<String, Value>,
    header: Map<String, Value>,
}

impl TokenRequest {
    /// The client's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signs with `alg` instead of the client's algorithm: `RS256`, `PS256`, `ES256` or `EdDSA`.
    pub fn alg(mut self, alg: &str) -> Self {
        self.alg = Some(alg.to_string());
        self
    }

    /// Token lifetime in seconds instead of the client's (300 s, 2 s for `short-lived`).
    pub fn ttl_secs(mut self, secs: u64) -> Self {
        self.ttl_secs = Some(secs);
        self
    }

    /// Asks for audience `aud` (resource indicator `urn:<aud>`) instead of [`AUDIENCE`].
    pub fn audience(mut self, aud: &str) -> Self {
        self.audience = Some(aud.to_string());
        self
    }

    /// Requests these space-separated scopes (a subset of `agents:run tools:list tools:call
    /// admin`) instead of the client's default scope.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_string());
        self
    }

    /// Sets claim `name` in the payload, replacing whatever the IdP put there (`exp`, `iss`,
    /// `sub` and `nbf` included; `aud` must stay non-empty).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_string(), value.into());
        self
    }

    /// Removes claim `name` from the payload.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.insert(name.to_string(), Value::Null);
        self
    }

    /// Adds or replaces a JOSE header field (`kid`, `jku`, `x5u`, `jwk`, `typ`…; not `alg`).
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.to_string(), value.into());
        self
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        let aud = self.audience.as_deref().unwrap_or(AUDIENCE);
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("resource", format!("urn:{aud}")),
        ];
        if let Some(alg) = &self.alg {
            form.push(("alg", alg.clone()));
        }
        if let Some(ttl) = self.ttl_secs {
            form.push(("ttl", ttl.to_string()));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        if !self.claims.is_empty() {
            form.push((
                "extra_claims",
                Value::Object(self.claims.clone()).to_string(),
            ));
        }
        if !self.header.is_empty() {
            form.push((
                "extra_header",
                Value::Object(self.header.clone()).to_string(),
            ));
        }
        form
    }
}

/// A JWT's header and payload, decoded without verifying anything.
#[derive(Clone, Debug)]
pub struct DecodedJwt {
    /// The JOSE header.
    pub header: Value,
    /// The claims.
    pub payload: Value,
}

/// The secret of a static client: a test fixture, not a secret.
pub fn client_secret(client: &str) -> String {
    format!("test-secret-{client}")
}

/// Decodes a compact JWS's header and payload (base64url JSON) without checking the signature.
pub fn decode_unverified(token: &str) -> DecodedJwt {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let part = |i: usize| -> Value {
        let bytes = base64url_decode(parts[i])
            .unwrap_or_else(|| panic!("JWT part {i} is not base64url: {token}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT part {i} is not JSON ({e}): {token}"))
    };
    DecodedJwt {
        header: part(0),
        payload: part(1),
    }
}

/// Decodes unpadded base64url (RFC 4648 §5); `None` on any other character.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl Idp {
    /// Installs the npm packages if needed, starts the IdP on a free loopback port and waits
    /// for it to listen. Panics, saying why, when Node.js or npm is missing or it won't start.
    pub async fn start() -> Idp {
        let (issuer, child, stderr) = tokio::task::spawn_blocking(spawn_ready)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let http = crate::client_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client");
        Idp {
            issuer,
            child,
            stderr,
            http,
        }
    }

    /// `<issuer>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// `<issuer>/jwks`, the `jwks_uri` discovery advertises.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// `<issuer>/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// A fresh access token for `client` with its default claims, algorithm and lifetime.
    pub async fn token(&self, client: &str) -> String {
        self.token_with(client, &TokenRequest::new()).await
    }

    /// A fresh access token for `client`, adjusted by `request`; panics on an IdP error.
    pub async fn token_with(&self, client: &str, request: &TokenRequest) -> String {
        let resp = self.request_token(client, request).await;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "IdP refused a token for client {client:?}: {status} {body}"
        );
        let json: Value = serde_json::from_str(&body).expect("token response is JSON");
        json["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string()
    }

    /// The raw token-endpoint response (`client_credentials`, client_secret_basic), for tests
    /// of the IdP's own errors.
    pub async fn request_token(&self, client: &str, request: &TokenRequest) -> reqwest::Response {
        self.http
            .post(self.token_endpoint())
            .basic_auth(client, Some(client_secret(client)))
            .form(&request.form())
            .send()
            .await
            .expect("token endpoint reachable")
    }

    /// The JWKS as served at [`Idp::jwks_uri`] (counts as a fetch in [`Idp::jwks_hits`]).
    pub async fn jwks(&self) -> Value {
        self.get_json(&self.jwks_uri()).await
    }

    /// The kid that currently signs each algorithm (`RS256`, `PS256`, `ES256`, `EdDSA`); does not
    /// touch the JWKS counter.
    pub async fn kids(&self) -> BTreeMap<String, String> {
        kid_map(&self.get_json(&format!("{}/test/kids", self.issuer)).await)
    }

    /// New signing keys with new kids for every algorithm; the previous ones stay published (so
    /// tokens they signed still verify) until the next rotation. Returns the new kids.
    pub async fn rotate_keys(&self) -> BTreeMap<String, String> {
        kid_map(&self.post_json("/test/rotate?keep=previous").await)
    }

    /// Like [`Idp::rotate_keys`], but the JWKS then holds only the new keys: tokens signed
    /// before no longer verify once a verifier refetches.
    pub async fn rotate_keys_dropping_previous(&self) -> BTreeMap<String, String> {
        kid_map(&self.post_json("/test/rotate?keep=none").await)
    }

    /// How many times the JWKS (`jwks_uri`) has been requested since start, by anyone.
    pub async fn jwks_hits(&self) -> u64 {
        let json = self
            .get_json(&format!("{}/test/jwks-hits", self.issuer))
            .await;
        json["hits"].as_u64().expect("hits is a number")
    }

    /// Makes the JWKS endpoint answer `status` (e.g. 503 for an outage; 200 restores it).
    /// Discovery and the token endpoint keep working.
    pub async fn set_jwks_status(&self, status: u16) {
        self.post_json(&format!("/test/jwks-status?status={status}"))
            .await;
    }

    /// Token-endpoint grants since start by `grant_type` (`authorization_code`,
    /// `refresh_token`, `client_credentials`), and the last `access_token` / `refresh_token`
    /// issued: `{"counts": {...}, "last": {...}}`.
    pub async fn grants(&self) -> Value {
        self.get_json(&format!("{}/test/grants", self.issuer)).await
    }

    /// How many grants of `grant_type` the token endpoint has made.
    pub async fn grant_count(&self, grant_type: &str) -> u64 {
        self.grants().await["counts"][grant_type]
            .as_u64()
            .unwrap_or(0)
    }

    /// While `on`, every token request is refused with `invalid_grant` (a refresh the IdP
    /// refuses).
    pub async fn refuse_tokens(&self, on: bool) {
        self.post_json(&format!("/test/token-refusal?on={}", u8::from(on)))
            .await;
    }

    async fn get_json(&self, url: &str) -> Value {
        let resp = self.http.get(url).send().await.expect("IdP reachable");
        json_body(resp).await
    }

    async fn post_json(&self, path_and_query: &str) -> Value {
        let url = format!("{}{path_and_query}", self.issuer);
        let resp = self.http.post(url).send().await.expect("IdP reachable");
        json_body(resp).await
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            eprintln!("--- oidc IdP ({}) stderr ---\n{log}", self.issuer);
        }
    }
}

async fn json_body(resp: reqwest::Response) -> Value {
    let (status, url) = (resp.status(), resp.url().clone());
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "IdP {url}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("IdP {url}: not JSON ({e}): {body}"))
}

fn kid_map(json: &Value) -> BTreeMap<String, String> {
    json["kids"]
        .as_object()
        .expect("kids object")
        .iter()
        .map(|(alg, kid)| (alg.clone(), kid.as_str().expect("kid string").to_string()))
        .collect()
}

/// `tests/oidc`, where package.json and server.mjs live (symlinks resolved: `npm --prefix`
/// misreads a symlinked folder as a linked dependency).
fn oidc_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc");
    dir.canonicalize().unwrap_or(dir)
}

/// Blocking part of [`Idp::start`]: checks the toolchain, installs, spawns, waits for READY.
fn spawn_ready() -> (String, Child, Arc<Mutex<String>>) {
    check_node();
    let dir = oidc_dir();
    ensure_installed(&dir);

    let mut child = Command::new("node")
        .arg(dir.join("server.mjs"))
        .args(["--port", "0"])
        .current_dir(&dir)
        // The IdP exits when its stdin closes, so it cannot outlive a killed test process.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn node for the OIDC IdP: {e}"));

    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });

    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(line) if line.starts_with("READY http://127.0.0.1:") => {
            let issuer = line["READY ".len()..].trim().to_string();
            (issuer, child, stderr)
        }
        other => {
            // Whether node was running, sleeping or waiting on I/O, and how much CPU it had
            // used, before it is killed: a hang and a starved start look alike otherwise.
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                .unwrap_or_else(|e| format!("(no /proc stat: {e})"));
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100)); // let the stderr reader finish
            let log = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            panic!(
                "the OIDC IdP (node tests/oidc/server.mjs) did not become ready within \
                 {READY_TIMEOUT:?}: first stdout line {other:?}\n--- /proc/<pid>/stat (state \
                 is field 3, user and system clock ticks fields 14 and 15) ---\n{stat}\n\
                 --- its stderr ---\n{log}"
            );
        }
    }
}

/// Panics with instructions unless `node` ≥ [`MIN_NODE`] and `npm` run (checked once per process).
fn check_node() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(check_node_uncached);
}

fn check_node_uncached() {
    let version = |tool: &str| -> String {
        let out = Command::new(tool).arg("--version").output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => panic!(
                "`{tool}` is not installed or does not run, and the OIDC end-to-end tests need it \
                 (Node.js >= {}.{} with npm runs the real OpenID provider in tests/oidc). Install \
                 it, e.g. `apt-get install -y nodejs npm` where that gives Node 20+; tests/run.sh \
                 does this.",
                MIN_NODE.0, MIN_NODE.1
            ),
        }
    };
    let node = version("node");
    version("npm");
    let mut nums = node
        .trim_start_matches('v')
        .split('.')
        .map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().flatten(), nums.next().flatten());
    let ok = matches!((major, minor), (Some(ma), Some(mi)) if (ma, mi) >= MIN_NODE);
    assert!(
        ok,
        "node {node} is too old for oidc-provider (tests/oidc): need >= {}.{}",
        MIN_NODE.0, MIN_NODE.1
    );
}

/// Runs `npm ci` in `dir` unless its node_modules already matches package-lock.json. Holds an
/// exclusive lock on package-lock.json meanwhile, so concurrent test processes install once.
fn ensure_installed(dir: &Path) {
    if installed(dir) {
        return;
    }
    let lockfile = dir.join("package-lock.json");
    let guard =
        File::open(&lockfile).unwrap_or_else(|e| panic!("cannot open {}: {e}", lockfile.display()));
    guard
        .lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lockfile.display()));
    if !installed(dir) {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run npm: {e}"));
        assert!(
            out.status.success(),
            "`npm ci --prefix {}` failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The lock is released when `guard` drops.
}

/// Whether `node_modules` holds exactly the versions package-lock.json names, judged by the
/// hidden lockfile npm writes there (`node_modules/.package-lock.json`).
fn installed(dir: &Path) -> bool {
    let read =
        |p: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
    let (Some(wanted), Some(have)) = (
        read(dir.join("package-lock.json")),
        read(dir.join("node_modules/.package-lock.json")),
    ) else {
        return false;
    };
    let (Some(wanted), Some(have)) = (wanted["packages"].as_object(), have["packages"].as_object())
    else {
        return false;
    };
    let wanted: BTreeMap<_, _> = wanted
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, p)| (path, &p["version"]))
        .collect();
    let have: BTreeMap<_, _> = have.iter().map(|(path, p)| (path, &p["version"])).collect();
    wanted == have
}
