//! A held MCP call seen from the AG-UI stream (`docs/approvals.md`, "The orchestrator"): the
//! seed policies hold an operator's `write_file`; the proxy's webhook announces it to the
//! orchestrator, whose run shows a `CUSTOM` `palisade.approval` event `pending`, then — once an
//! admin approved through the admin API — `approved` and the tool's result.

use std::time::Duration;

use futures::StreamExt;
use palisade_e2e::issuer::Issuer;
use palisade_e2e::peers::workspace;
use palisade_e2e::{client, TestProxy};
use palisade_orchestrator::McpServerConfig;
use serde_json::{json, Value};

use super::{input, McpServer};

const ADMIN_TOKEN: &str = "orchestrator-approvals-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_mcp_call_shows_on_the_run_stream_then_its_outcome() {
    let issuer = Issuer::new();
    let mcp = tokio::task::spawn_blocking(McpServer::start).await.unwrap();
    let listener = palisade_e2e::orchestrator::Listener::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let yaml = format!(
        "{}  revocation: {{admin_token_file: \"{}\"}}\nauthorization:\n  policy_sets:\n    \
         - name: main\n      path: \"{}\"\n      mode: enforce\napprovals:\n  timeout: 30s\n  \
         webhook: {{url: \"http://{}/approvals/events\"}}\n",
        issuer.authentication_yaml(),
        token_file.display(),
        workspace().join("policies").display(),
        listener.addr
    );
    let proxy = TestProxy::new()
        .upstream("orchestrator", listener.addr)
        .route_matching(
            "agent",
            "path_prefix: /agent, methods: [POST]",
            "orchestrator",
            "protocol: agui\nauth: required\nforward_credentials: true",
        )
        .upstream("mcp", mcp.addr)
        .route("mcp", "/mcp", "mcp", "protocol: mcp\nauth: required")
        .top_yaml(&yaml)
        .start();
    let mut cfg = listener.config(0, &proxy);
    cfg.identity.audiences = vec!["agent".into()];
    cfg.store = palisade_orchestrator::store::StoreConfig::sqlite(":memory:");
    cfg.mcp_servers = vec![McpServerConfig {
        name: "files".into(),
        url: proxy.url("/mcp"),
        tools_cache: Duration::from_secs(30),
    }];
    listener.serve(cfg);

    let op = issuer.token("op", &["agent_operator"], json!({"amr": ["mfa"]}));
    let admin = issuer.token("boss", &["admin"], json!({}));
    let resp = client()
        .post(proxy.url("/agent"))
        .bearer_auth(&op)
        .header("accept", "text/event-stream")
        .json(&input(
            r#"mcp write_file {"path": "/tmp/x", "content": "hi"}"#,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut approved = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        // The pending event is on the stream while the call is held: approve it now.
        if !approved && text.contains("\"pending\"") {
            let list: Value = client()
                .get(proxy.admin_url("/admin/approvals"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = list["approvals"][0]["id"].as_str().unwrap().to_string();
            let resp = client()
                .post(proxy.admin_url(&format!("/admin/approvals/{id}/approve")))
                .bearer_auth(ADMIN_TOKEN)
                .header("x-palisade-approver", format!("Bearer {admin}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            approved = true;
        }
    }
    assert!(approved, "no pending approval event on the stream:\n{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let custom: Vec<&Value> = events.iter().filter(|e| e["type"] == "CUSTOM").collect();
    assert_eq!(custom.len(), 2, "{events:?}");
    assert_eq!(custom[0]["name"], "palisade.approval");
    assert_eq!(custom[0]["value"]["status"], "pending");
    assert_eq!(custom[0]["value"]["tool"], "write_file");
    assert_eq!(custom[1]["value"]["status"], "approved");
    assert_eq!(custom[0]["value"]["id"], custom[1]["value"]["id"]);
    let at = |t: &str| types.iter().position(|x| *x == t).unwrap();
    let pending = types.iter().position(|x| *x == "CUSTOM").unwrap();
    assert!(
        at("TOOL_CALL_END") < pending && pending < at("TOOL_CALL_RESULT"),
        "{types:?}"
    );
    let result = events
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_RESULT")
        .unwrap();
    assert_eq!(result["content"], "wrote 2 bytes to /tmp/x");
    assert_eq!(types.last(), Some(&"RUN_FINISHED"));
}
