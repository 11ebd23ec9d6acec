//! The `mcp` Python SDK on both sides: examples/mcp-server/server.py (Streamable HTTP, in the 2025
//! session mode and in the stateless mode) behind Palisade with the seed policies, and the SDK's
//! client listing tools (filtered per role), calling an allowed and a denied tool, and receiving
//! progress notifications on an SSE response one by one (not buffered until the result); and
//! tool-definition integrity against a real SDK server that pulls the rug (`mcp_rug_server.py`);
//! human approvals of held calls; and the step-up challenges as the SDK's OAuth helpers read them
//! (`mcp_challenge_client.py`).

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

// ---- Tool-definition integrity (docs/tool-integrity.md) ------------------------------------

/// `palisade tools <args>` as the binary would run it (off the test's runtime: it runs its own).
async fn tools_cli(args: &[&str]) -> std::process::ExitCode {
    let mut argv: Vec<String> = vec!["palisade".into(), "tools".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || palisade_proxy::cli::main_from(argv))
        .await
        .unwrap()
}

/// A real SDK server pulls the rug between two `tools/list` calls of the SDK client: the tool
/// whose description changed disappears from the list and its call is refused with
/// `TOOL_NOT_APPROVED`; the tool added with a prompt injection in its description is caught.
/// The lock is pinned from the live server by `palisade tools pin --url`.
async fn rug_pull(flags: &[&str]) {
    let mut args = vec!["--port", "0"];
    args.extend_from_slice(flags);
    let server = Peer::test_server("mcp_rug_server.py", &args);
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("mcp.lock.json");
    let lock_arg = lock.to_str().unwrap();
    let pinned = tools_cli(&["pin", "--url", &server.url, "--lock", lock_arg]).await;
    assert_eq!(
        pinned,
        std::process::ExitCode::SUCCESS,
        "{}",
        server.stderr_text()
    );
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("\"readOnlyHint\": true"), "{text}");
    assert_eq!(
        tools_cli(&["diff", "--url", &server.url, "--lock", lock_arg]).await,
        std::process::ExitCode::SUCCESS,
        "as pinned"
    );

    let proxy = TestProxy::new()
        .upstream("mcp", server.addr)
        .route(
            "mcp",
            "/mcp",
            "mcp",
            &format!("protocol: mcp\nauth: optional\ntool_integrity: {{lock: \"{lock_arg}\"}}"),
        )
        .start();
    let url = proxy.url("/mcp");
    let what = format!("{flags:?}");
    let before = python_client(
        "mcp_integrity_client.py",
        &[&url, "auto", "read_file", "helper"],
    )
    .await;
    assert_eq!(
        before["tools"],
        json!(["read_file", "search_docs"]),
        "{what}: {before}"
    );
    assert_eq!(
        before["calls"]["read_file"], "contents of /srv/a.txt",
        "{what}"
    );
    // Not yet listed, and not pinned: refused all the same.
    assert_eq!(
        before["calls"]["helper"], "refused -32032",
        "{what}: {before}"
    );

    let pulled = palisade_e2e::client()
        .post(server.url.replace("/mcp", "/rug-pull"))
        .send()
        .await
        .unwrap();
    assert!(pulled.status().is_success());

    for mode in ["legacy", "auto"] {
        let after = python_client(
            "mcp_integrity_client.py",
            &[&url, mode, "read_file", "helper", "search_docs"],
        )
        .await;
        let what = format!("{what} {mode}");
        assert_eq!(after["tools"], json!(["search_docs"]), "{what}: {after}");
        assert_eq!(
            after["calls"]["read_file"], "refused -32032",
            "{what}: {after}"
        );
        let message = after["messages"]["read_file"].as_str().unwrap();
        assert!(
            message.contains("changed since it was pinned"),
            "{what}: {message}"
        );
        assert_eq!(after["calls"]["helper"], "refused -32032", "{what}");
        let message = after["messages"]["helper"].as_str().unwrap();
        assert!(
            message.contains("flagged by `injection."),
            "{what}: {message}"
        );
        assert_eq!(after["calls"]["search_docs"], "results for cedar", "{what}");
    }
    let metrics = proxy.running.metrics.render();
    for kind in ["changed", "poisoned"] {
        assert!(
            metrics.contains(&format!(
                "palisade_tool_integrity_findings_total{{action=\"blocked\",kind=\"{kind}\",route=\"mcp\"}}"
            )),
            "{kind}"
        );
    }

    // The CLI sees the same: a diff, and a pin that refuses the poisoned tool.
    assert_eq!(
        tools_cli(&["diff", "--url", &server.url, "--lock", lock_arg]).await,
        std::process::ExitCode::from(1)
    );
    assert_eq!(
        tools_cli(&["pin", "--url", &server.url, "--lock", lock_arg]).await,
        std::process::ExitCode::FAILURE
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        text,
        "the lock is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_rug_pull_is_blocked_in_session_mode_with_sse_responses() {
    rug_pull(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_rug_pull_is_blocked_in_stateless_mode_with_json_responses() {
    rug_pull(&["--stateless", "--json"]).await;
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

/// Step-up challenges (`docs/policies.md`, "Step-up challenges") read by the `mcp` SDK's own
/// OAuth helpers (`mcp_challenge_client.py`): under the seed policies an admin's `run_shell`
/// without the `tools:exec` scope is the 403 `insufficient_scope` the SDK's client treats as a
/// scope step-up, naming that scope and a `resource_metadata` URL whose document the SDK's model
/// accepts; without MFA it is the RFC 9470 401 with `acr_values` and `max_age`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sdk_reads_the_step_up_challenges() {
    let server = Peer::example("mcp-server/server.py", &["--port", "0", "--stateless"]);
    let issuer = Issuer::new();
    let policies = palisade_e2e::peers::workspace().join("policies");
    let proxy = TestProxy::new()
        .upstream("mcp", server.addr)
        .route("mcp", "/mcp", "mcp", "protocol: mcp\nauth: required")
        .top_yaml(&issuer.yaml_with_sets(
            "  step_up: {acr_values: [gold], max_age: 5m}\n",
            &[("main", &policies, "enforce")],
        ))
        .start();
    let url = proxy.url("/mcp");

    let with_mfa = issuer.token("root", &["admin"], json!({"amr": ["mfa"]}));
    let scope = python_client("mcp_challenge_client.py", &[&url, &with_mfa, "run_shell"]).await;
    assert_eq!(scope["status"], 403, "{scope}");
    assert_eq!(scope["sdk_step_up"], true, "{scope}");
    assert_eq!(scope["error"], "insufficient_scope", "{scope}");
    assert_eq!(scope["scope"], "tools:exec", "{scope}");
    let metadata = scope["resource_metadata"].as_str().unwrap();
    assert!(
        metadata.ends_with("/.well-known/oauth-protected-resource/mcp"),
        "{scope}"
    );
    assert_eq!(scope["prm_resource"], url, "{scope}");

    let no_mfa = issuer.token("root", &["admin"], json!({"scope": "tools:exec"}));
    let mfa = python_client("mcp_challenge_client.py", &[&url, &no_mfa, "run_shell"]).await;
    assert_eq!(mfa["status"], 401, "{mfa}");
    assert_eq!(mfa["sdk_step_up"], false, "{mfa}");
    assert_eq!(mfa["error"], "insufficient_user_authentication", "{mfa}");
    assert_eq!(mfa["acr_values"], "gold", "{mfa}");
    assert_eq!(mfa["max_age"], "300", "{mfa}");
    assert!(mfa["resource_metadata"].as_str().is_some(), "{mfa}");
}
