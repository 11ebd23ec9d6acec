//! Starting and driving third-party peers: the Python servers from `examples/` (each prints a
//! `ready <url>` line once listening on the port it was given, `0` = a free one), the official
//! clients (the AG-UI TypeScript client under `tests/peers/agui-client`, the `mcp` and `a2a-sdk`
//! Python clients beside this file), and a JWT issuer the proxy trusts.
//!
//! Missing tools fail loudly with what to run (`bash tests/run.sh` installs all of them); a peer
//! test never skips.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use palisade_e2e::agui_client::agui_client;
pub use palisade_e2e::issuer::Issuer;
pub use palisade_e2e::peers::{python, workspace};
use serde_json::Value;

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
        Self::start(&workspace().join("examples").join(script), script, args)
    }

    /// Runs `tests/peers/<script>` (a test-only server) like [`Peer::example`].
    pub fn test_server(script: &str, args: &[&str]) -> Peer {
        Self::start(&workspace().join("tests/peers").join(script), script, args)
    }

    fn start(path: &std::path::Path, script: &str, args: &[&str]) -> Peer {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(python())
            .arg(path)
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

/// The admin token of [`approvals_yaml`].
pub const ADMIN_TOKEN: &str = "peers-admin-token-0123456789abcdef0123456789";

/// `authentication` trusting `issuer` with [`ADMIN_TOKEN`] written to a file in `dir`, and
/// `authorization` enforcing the policy directory `policies` (for the approval scenarios,
/// `docs/approvals.md`).
pub fn approvals_yaml(
    issuer: &Issuer,
    policies: &std::path::Path,
    dir: &std::path::Path,
) -> String {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    format!(
        "{}  revocation: {{admin_token_file: \"{}\"}}\nauthorization:\n  policy_sets:\n    - name: main\n      path: \"{}\"\n      mode: enforce\n",
        issuer.authentication_yaml(),
        token_file.display(),
        policies.display()
    )
}

/// Waits (bounded) for one approval pending on `proxy`, then `verb`s it (`approve` or `deny`)
/// as `approver` through the admin API; returns the approval as it was listed.
pub async fn decide_pending(proxy: &palisade_e2e::Proxy, approver: &str, verb: &str) -> Value {
    let c = palisade_e2e::client();
    let mut found = None;
    for _ in 0..1000 {
        let list: Value = c
            .get(proxy.admin_url("/admin/approvals"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(a) = list["approvals"].as_array().and_then(|l| l.first()) {
            found = Some(a.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = found.expect("an approval became pending within 20 s");
    let id = a["id"].as_str().unwrap();
    let resp = c
        .post(proxy.admin_url(&format!("/admin/approvals/{id}/{verb}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-palisade-approver", format!("Bearer {approver}"))
        .json(&serde_json::json!({"reason": format!("{verb}d by the peer test")}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{verb} {id}: {}",
        resp.text().await.unwrap()
    );
    a
}
