//! The `mcp` Python SDK on both sides: examples/mcp-server/server.py (Streamable HTTP, in the 2025
//! session mode and in the stateless mode) behind Palisade with the seed policies, and the SDK's
//! client listing tools (filtered per role), calling an allowed and a denied tool, and receiving
//! progress notifications on an SSE response one by one (not buffered until the result).

use palisade_e2e::TestProxy;
use serde_json::{json, Value};

use crate::peer::{python_client, Issuer, Peer};

/// Runs the SDK client (`tests/peers/mcp_client.py`) as `role` in `mode` against `url`.
async fn client(url: &str, token: &str, mode: &str) -> Value {
    python_client("mcp_client.py", &[url, token, mode]).await
}

/// Starts the server with `flags`, puts Palisade in front and checks every role and client mode.
async fn check(flags: &[&str], sse: bool) {
    let mut args = vec!["--port", "0"];
    args.extend_from_slice(flags);
    let server = Peer::example("mcp-server/server.py", &args);
    let issuer = Issuer::new();
    let proxy = TestProxy::new()
        .upstream("mcp", server.addr)
        .route("mcp", "/mcp", "mcp", "protocol: mcp\nauth: required")
        .top_yaml(&issuer.yaml())
        .start();
    let url = proxy.url("/mcp");
    let stateless = flags.contains(&"--stateless");
    for mode in ["legacy", "auto"] {
        let what = format!("{flags:?} {mode}");
        let user = client(&url, &issuer.role("user"), mode).await;
        assert_eq!(user["tools"], json!(["search_docs"]), "{what}: {user}");
        assert_eq!(user["calls"]["search_docs"], "results for cedar", "{what}");
        assert_eq!(user["calls"]["read_file"], "refused -32030", "{what}");
        assert_eq!(user["calls"]["write_file"], "refused -32030", "{what}");
        if mode == "legacy" {
            // The handshake-era client keeps the server's session id through the proxy.
            assert_eq!(user["session"].is_string(), !stateless, "{what}: {user}");
        }
        if sse {
            // Three progress notifications 200 ms apart, then the result: each one reached the
            // client when the server sent it, not all together with the result.
            let at: Vec<f64> = serde_json::from_value(user["progress_ms"].clone()).unwrap();
            let result = user["result_ms"].as_f64().unwrap();
            assert_eq!(at.len(), 3, "{what}: {user}");
            // (Buffering would put them within a few ms of each other and of the result; the
            // spread allows for scheduling jitter on a busy machine.)
            assert!(
                at[2] - at[0] >= 250.0,
                "{what}: notifications bunched: {at:?}"
            );
            assert!(result - at[0] >= 300.0, "{what}: {at:?} then {result}");
            eprintln!("measured: {what}: progress at {at:?} ms, result at {result} ms");
        }

        let dev = client(&url, &issuer.role("developer"), mode).await;
        assert_eq!(
            dev["tools"],
            json!(["read_file", "search_docs"]),
            "{what}: {dev}"
        );
        assert_eq!(
            dev["calls"]["read_file"], "contents of /srv/a.txt",
            "{what}"
        );
        assert_eq!(dev["calls"]["write_file"], "refused -32030", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_session_mode_with_sse_responses() {
    check(&[], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stateless_mode_with_sse_responses() {
    check(&["--stateless"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stateless_mode_with_json_responses() {
    check(&["--stateless", "--json"], false).await;
}

/// Human approvals (`docs/approvals.md`) with the real SDK client: the seed policies hold an
/// operator's `write_file` (high risk, MFA); approved, the SDK gets the tool's result; denied,
/// it gets the JSON-RPC refusal; the low- and medium-risk calls before it are not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_high_risk_call_waits_for_an_approver() {
    let server = Peer::example("mcp-server/server.py", &["--port", "0", "--stateless"]);
    let issuer = Issuer::new();
    let dir = tempfile::tempdir().unwrap();
    let yaml = crate::peer::approvals_yaml(
        &issuer,
        &palisade_e2e::peers::workspace().join("policies"),
        dir.path(),
    );
    let proxy = TestProxy::new()
        .upstream("mcp", server.addr)
        .route("mcp", "/mcp", "mcp", "protocol: mcp\nauth: required")
        .top_yaml(&yaml)
        .start();
    let url = proxy.url("/mcp");
    let op = issuer.token("op", &["agent_operator"], json!({"amr": ["mfa"]}));
    let admin = issuer.token("boss", &["admin"], json!({}));
    for (verb, expected) in [
        ("approve", "wrote 2 bytes to /tmp/x"),
        ("deny", "refused -32030"),
    ] {
        let run = {
            let (url, op) = (url.clone(), op.clone());
            tokio::spawn(async move { client(&url, &op, "auto").await })
        };
        let held = crate::peer::decide_pending(&proxy, &admin, verb).await;
        assert_eq!(held["resource"], "Tool::\"write_file\"", "{held}");
        let out = run.await.unwrap();
        assert_eq!(out["calls"]["search_docs"], "results for cedar", "{out}");
        assert_eq!(out["calls"]["read_file"], "contents of /srv/a.txt", "{out}");
        assert_eq!(out["calls"]["write_file"], expected, "{verb}: {out}");
    }
}
