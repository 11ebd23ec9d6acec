//! Starting and driving third-party peers: the Python servers from `examples/` (each prints a
//! `ready <url>` line once listening on the port it was given, `0` = a free one), the official
//! clients (the AG-UI TypeScript client under `tests/peers/agui-client`, the `mcp` and `a2a-sdk`
//! Python clients beside this file), and a JWT issuer the proxy trusts.
//!
//! Missing tools fail loudly with what to run (`bash tests/run.sh` installs all of them); a peer
//! test never skips.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_proxy::authn::signer::Signer;
use serde_json::{json, Value};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The Python with the peers' packages (`tests/peers/requirements.txt`):
/// `PALISADE_PEERS_PYTHON`, else `target/peers-venv/bin/python`.
pub fn python() -> PathBuf {
    let path = std::env::var_os("PALISADE_PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/peers-venv/bin/python"));
    assert!(
        path.exists(),
        "no Python with the peer packages at {}: run `bash tests/run.sh` once (it creates \
         target/peers-venv from tests/peers/requirements.txt) or set PALISADE_PEERS_PYTHON",
        path.display()
    );
    path
}

/// A peer server process, killed (and reaped) on drop.
pub struct Peer {
    child: Child,
    /// What it listens on.
    pub addr: SocketAddr,
    /// The URL from its ready line.
    pub url: String,
    stderr: tempfile::NamedTempFile,
}

impl Peer {
    /// Runs `examples/<script>` with `args` under the peers' Python and waits (up to 30 s) for
    /// its `ready http://host:port/...` line.
    pub fn example(script: &str, args: &[&str]) -> Peer {
        let path = workspace().join("examples").join(script);
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(python())
            .arg(&path)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then keeps draining stdout so the peer never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("ready ") {
                    let url = url.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        let mut peer = Peer {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            url: String::new(),
            stderr,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => {
                let authority = url
                    .strip_prefix("http://")
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_else(|| panic!("bad ready line from {script}: {url}"));
                peer.addr = authority.parse().unwrap();
                peer.url = url;
                peer
            }
            Err(_) => {
                let status = peer.child.try_wait().ok().flatten();
                panic!(
                    "{script} {args:?} did not print its ready line (exit: {status:?}); stderr:\n{}",
                    peer.stderr_text()
                )
            }
        }
    }

    /// What the peer wrote to stderr so far (for failure messages).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/peers/<script>` under the peers' Python and parses the last stdout line as JSON.
pub async fn python_client(script: &str, args: &[&str]) -> Value {
    let path = workspace().join("tests/peers").join(script);
    let out = tokio::process::Command::new(python())
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 60 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        out.status.success() && last.starts_with('{'),
        "{script} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(last).unwrap()
}

/// What the official AG-UI client received in one run (see tests/peers/agui-client/README.md).
#[derive(Debug)]
pub struct AguiRun {
    /// Every event the client applied, in order.
    pub events: Vec<Value>,
    /// Milliseconds since the run started at which each event was applied.
    pub at_ms: Vec<f64>,
    /// The outcome line: `{"outcome": "finished", "messages": ...}` or
    /// `{"outcome": "error", "error": {"message", "status", "payload"}}`.
    pub outcome: Value,
}

impl AguiRun {
    /// The `type` of every event.
    pub fn types(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect()
    }

    /// The names of the tools the client saw called (`TOOL_CALL_START`).
    pub fn tool_calls(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e["type"] == "TOOL_CALL_START")
            .map(|e| e["toolCallName"].as_str().unwrap_or(""))
            .collect()
    }

    /// Whether any event mentions `tool_call_id`.
    pub fn mentions(&self, tool_call_id: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.to_string().contains(tool_call_id))
    }

    /// The HTTP status the client reported for a failed request.
    pub fn error_status(&self) -> Option<u64> {
        self.outcome["error"]["status"].as_u64()
    }

    /// `error.code` of Palisade's error body as the client reported it.
    pub fn error_code(&self) -> Option<&str> {
        self.outcome["error"]["payload"]["error"]["code"].as_str()
    }

    /// Whether the client completed the run without raising.
    pub fn finished(&self) -> bool {
        self.outcome["outcome"] == "finished"
    }
}

/// Runs the official AG-UI client (`@ag-ui/client` HttpAgent) against `url` with `input`.
pub async fn agui_client(url: &str, token: Option<&str>, input: &Value) -> AguiRun {
    let dir = workspace().join("tests/peers/agui-client");
    assert!(
        dir.join("node_modules/@ag-ui/client").exists(),
        "the AG-UI client is not installed: run `npm ci --prefix tests/peers/agui-client` (bash \
         tests/run.sh does) — needs Node.js >= 20.18"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("run.mjs"))
        .arg(url)
        .arg(input.to_string())
        .env_remove("AGUI_TOKEN")
        .kill_on_drop(true);
    if let Some(token) = token {
        cmd.env("AGUI_TOKEN", token);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the AG-UI client did not finish within 60 s")
        .unwrap_or_else(|e| panic!("cannot run `node` (install Node.js >= 20.18): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut run = AguiRun {
        events: Vec::new(),
        at_ms: Vec::new(),
        outcome: Value::Null,
    };
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|_| panic!("AG-UI client printed a non-JSON line: {line}"));
        if v.get("event").is_some() {
            run.at_ms.push(v["at_ms"].as_f64().unwrap_or(0.0));
            run.events.push(v["event"].clone());
        } else {
            run.outcome = v;
        }
    }
    assert!(
        out.status.success() && !run.outcome.is_null(),
        "the AG-UI client failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

/// The issuer the peer tests' proxies trust: ES256 tokens signed with a key generated per test.
pub struct Issuer {
    signer: Signer,
    dir: tempfile::TempDir,
}

/// `iss` of the test tokens.
pub const ISS: &str = "https://idp.peers.test";

impl Issuer {
    /// A new issuer with a fresh key, its JWKS written to a temporary file.
    pub fn new() -> Self {
        let signer = Signer::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jwks = serde_json::to_string(&signer.jwks()).unwrap();
        std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
        Self { signer, dir }
    }

    /// A token for `sub` with `roles`; `extra` adds or overrides claims.
    pub fn token(&self, sub: &str, roles: &[&str], extra: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": ISS, "sub": sub, "aud": "palisade", "iat": now, "exp": now + 300,
            "jti": format!("{sub}-{now}"), "roles": roles,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.signer.sign(&claims).unwrap()
    }

    /// A token whose only role is `role`.
    pub fn role(&self, role: &str) -> String {
        self.token(role, &[role], json!({}))
    }

    /// `authentication:` trusting this issuer and `authorization:` with the seed policies in
    /// `policies/`, as top-level YAML.
    pub fn yaml(&self) -> String {
        format!(
            "authentication:\n  issuers:\n    - issuer: {ISS}\n      audiences: [palisade]\n      \
             algorithms: [ES256]\n      keys: {{jwks_file: \"{}\"}}\n      claims: {{roles: [roles]}}\n\
             authorization:\n  policy_sets:\n    - name: main\n      path: \"{}\"\n      mode: enforce\n",
            self.dir.path().join("jwks.json").display(),
            workspace().join("policies").display()
        )
    }
}
