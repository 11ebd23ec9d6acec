//! The real remote agent (`tests/peers/a2a_delegate_agent.py`, a2a-sdk from the peers venv) and a
//! gateway in front of it (a `ScriptedUpstream`) that answers `503` to the first N requests, then
//! forwards.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use palisade_e2e::peers::{python, workspace};
use palisade_e2e::upstream::{ScriptedUpstream, Upstream};

/// A running `a2a_delegate_agent.py`; killed on drop.
pub struct Agent {
    /// Its JSON-RPC endpoint, `http://127.0.0.1:<port>/a2a`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    child: Child,
}

impl Agent {
    /// Starts the agent (also speaking A2A 0.3 when `v03`) and waits for its ready line.
    pub fn start(v03: bool) -> Self {
        let mut cmd = Command::new(python());
        cmd.arg(workspace().join("tests/peers/a2a_delegate_agent.py"))
            .args(["--port", "0"]);
        if v03 {
            cmd.arg("--v03");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the a2a agent starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("a2a agent did not start: {line:?}"))
            .to_owned();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/a2a")
            .parse()
            .unwrap();
        Self { url, addr, child }
    }

    /// JSON-RPC calls the agent executed (its `/count`).
    pub async fn served(&self) -> usize {
        palisade_e2e::client()
            .get(format!("http://{}/count", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A gateway in front of `agent` that answers `503` to the first `fail_first` requests on `/a2a`
/// and forwards the rest; its record counts every request it saw (failed and forwarded).
pub async fn flaky_gateway(agent: &Agent, fail_first: usize) -> Upstream {
    ScriptedUpstream::new()
        .respond("/a2a", 503, &[("content-type", "text/plain")], "warming up")
        .times(fail_first)
        .forward("/a2a", &format!("http://{}", agent.addr))
        .start()
        .await
}
