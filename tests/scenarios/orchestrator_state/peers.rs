//! The real remote agent (`tests/peers/a2a_delegate_agent.py`, a2a-sdk from the peers venv) and a
//! gateway in front of it that answers `503` to the first N requests, then forwards.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use palisade_e2e::peers::{python, workspace};

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
        reqwest::get(format!("http://{}/count", self.addr))
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

/// A gateway that answers `503` to the first `fail_first` requests and forwards the rest to the
/// agent (path `/a2a`), counting every request it saw.
pub struct FlakyGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests seen (failed and forwarded).
    pub seen: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Front {
    target: String,
    fail_first: usize,
    seen: Arc<AtomicUsize>,
    http: reqwest::Client,
}

async fn front(State(front): State<Front>, headers: HeaderMap, body: Bytes) -> Response {
    let n = front.seen.fetch_add(1, Ordering::SeqCst);
    if n < front.fail_first {
        return (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response();
    }
    let mut request = front.http.post(&front.target).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let content_type = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let body = answer.bytes().await.unwrap_or_default();
            (status, [("content-type", content_type)], body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

impl FlakyGateway {
    /// Starts the gateway in front of `agent`.
    pub async fn start(agent: &Agent, fail_first: usize) -> Self {
        let seen = Arc::new(AtomicUsize::new(0));
        let state = Front {
            target: agent.url.clone(),
            fail_first,
            seen: Arc::clone(&seen),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        let app = Router::new().route("/a2a", post(front)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, seen }
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://{}/a2a", self.addr)
    }
}

/// An endpoint that takes requests on any path and never answers; returns its address.
pub async fn black_hole() -> SocketAddr {
    let app = Router::new().fallback(|| async {
        std::future::pending::<()>().await;
        StatusCode::OK
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
