//! Cedar authorization end to end: real JWTs from a test issuer, the seed policies in
//! `policies/`, per role and per ABAC rule; AG-UI tool filtering in the request and in the
//! stream; MCP `tools/call` / `tools/list` against a real MCP server (the `mcp` package from
//! PyPI, started on a free port); A2A methods; shadow mode; a broken reload keeping the last
//! good set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use palisade_e2e::issuer::Issuer;
use palisade_e2e::{client, error_code, eventually, upstream, Proxy, TestProxy};
use serde_json::{json, Value};

fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// What the AG-UI upstream saw: every run request body.
type Seen = Arc<Mutex<Vec<Value>>>;

/// An AG-UI agent: records the run request, then streams a run that calls `search_docs`
/// (low risk) and `write_file` (high risk) and ends with a `MESSAGES_SNAPSHOT`.
async fn agui_agent() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let router = Router::new().fallback(move |req: Request| {
        let record = record.clone();
        async move {
            let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
            let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            record.lock().unwrap().push(input);
            let events = [
                json!({"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"}),
                json!({"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search_docs"}),
                json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "{\"query\":\"x\"}"}),
                json!({"type": "TOOL_CALL_END", "toolCallId": "c1"}),
                json!({"type": "TOOL_CALL_START", "toolCallId": "c2", "toolCallName": "write_file"}),
                json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c2", "delta": "{\"path\":\"/tmp/x\"}"}),
                json!({"type": "TOOL_CALL_END", "toolCallId": "c2"}),
                json!({"type": "TOOL_CALL_RESULT", "messageId": "m3", "toolCallId": "c2", "content": "ok"}),
                json!({"type": "MESSAGES_SNAPSHOT", "messages": [
                    {"id": "m1", "role": "user", "content": "go"},
                    {"id": "m2", "role": "assistant", "toolCalls": [
                        {"id": "c1", "type": "function", "function": {"name": "search_docs", "arguments": "{}"}},
                        {"id": "c2", "type": "function", "function": {"name": "write_file", "arguments": "{}"}}
                    ]},
                    {"id": "m3", "role": "tool", "toolCallId": "c2", "content": "ok"},
                    {"id": "m4", "role": "tool", "toolCallId": "c1", "content": "found"}
                ]}),
                json!({"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}),
            ];
            let sse: String = events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(sse))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    (addr, seen)
}

fn run_input(tools: &[&str]) -> Value {
    json!({
        "threadId": "t1", "runId": "r1",
        "messages": [{"id": "m1", "role": "user", "content": "go"}],
        "tools": tools.iter().map(|t| json!({"name": t, "description": "", "parameters": {}})).collect::<Vec<_>>(),
    })
}

/// The `data:` JSON of every event in an SSE body.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn metric(proxy: &Proxy, line_start: &str) -> f64 {
    proxy
        .running
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

struct Stack {
    proxy: Proxy,
    issuer: Issuer,
    seen: Seen,
    _echo: upstream::Upstream,
}

/// The proxy with the seed policies: `/agent` (AG-UI, tool calls dropped), `/agent-strict`
/// (AG-UI, `run_error`), `/api` (HTTP), `/a2a` (A2A, agent `assistant`), `/mcp-echo` (MCP in
/// front of an echo server).
async fn stack(sets: &[(&str, &Path, &str)]) -> Stack {
    stack_with(sets, "").await
}

/// [`stack`] with more top-level YAML.
async fn stack_with(sets: &[(&str, &Path, &str)], extra: &str) -> Stack {
    let issuer = Issuer::new();
    let (agent, seen) = agui_agent().await;
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("agent", agent)
        .upstream("echo", echo.addr)
        .route(
            "agent",
            "/agent",
            "agent",
            "protocol: agui\nauthorization: {agent: assistant}",
        )
        .route(
            "agent-strict",
            "/strict",
            "agent",
            "protocol: agui\nauthorization: {agent: assistant, denied_tool_call: run_error}",
        )
        .route("api", "/api", "echo", "")
        .route(
            "a2a",
            "/a2a",
            "echo",
            "protocol: a2a\nauthorization: {agent: assistant}",
        )
        .route("mcp-echo", "/mcp-echo", "echo", "protocol: mcp")
        .route(
            "ops",
            "/ops",
            "echo",
            "authorization: {rules: [{path_prefix: /ops/admin, action: admin, resource: 'Route::\"ops\"'}]}",
        )
        .top_yaml(&issuer.yaml_with_sets("  reload_interval: 100ms\n", sets))
        .top_yaml(extra)
        .start();
    Stack {
        proxy,
        issuer,
        seen,
        _echo: echo,
    }
}

async fn seed_stack() -> Stack {
    let p = repo_policies();
    stack(&[("main", &p, "enforce")]).await
}

async fn post(proxy: &Proxy, path: &str, token: &str, body: &Value) -> (u16, String) {
    palisade_e2e::post_json(&proxy.url(path), Some(token), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_runs_agents_as_the_seed_policies_say() {
    let s = seed_stack().await;
    for (role, expected) in [
        ("admin", 200),
        ("developer", 200),
        ("agent_operator", 200),
        ("user", 200),
        ("viewer", 403),
    ] {
        let (status, body) = post(&s.proxy, "/agent", &s.issuer.role(role), &run_input(&[])).await;
        assert_eq!(status, expected, "{role}: {body}");
        if status == 403 {
            assert_eq!(error_code(body.as_bytes()), "FORBIDDEN");
            // The body names no policy internals.
            for secret in [
                "viewer",
                "policy",
                "cedar",
                "Action::",
                "Agent::",
                "user-agents",
            ] {
                assert!(!body.contains(secret), "403 body leaks `{secret}`: {body}");
            }
        }
    }
    let allowed = metric(
        &s.proxy,
        "palisade_authz_decisions_total{action=\"run_agent\",decision=\"allow\",mode=\"enforce\",policy_set=\"main\"}",
    );
    let denied = metric(
        &s.proxy,
        "palisade_authz_decisions_total{action=\"run_agent\",decision=\"deny\",mode=\"enforce\",policy_set=\"main\"}",
    );
    assert_eq!((allowed, denied), (4.0, 1.0));

    // No token: refused (by authentication, or as `Anonymous` by the policies).
    let resp = client()
        .post(s.proxy.url("/agent"))
        .json(&run_input(&[]))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(resp.status().as_u16(), 401 | 403),
        "{}",
        resp.status()
    );

    // viewer: read-only HTTP.
    let viewer = s.issuer.role("viewer");
    let get = client()
        .get(s.proxy.url("/api/x"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let (status, _) = post(&s.proxy, "/api/x", &viewer, &json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = post(&s.proxy, "/api/x", &s.issuer.role("user"), &json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agui_run_request_loses_the_tools_the_caller_may_not_use() {
    let s = seed_stack().await;
    let offered = [
        "search_docs",
        "read_file",
        "write_file",
        "run_shell",
        "acme_crm_lookup",
        "mystery",
    ];
    let cases: [(&str, String, &[&str]); 6] = [
        ("user", s.issuer.role("user"), &["search_docs"]),
        (
            "developer",
            s.issuer.role("developer"),
            &["read_file", "search_docs"],
        ),
        // ABAC: tenant isolation lets acme's user use acme's tool.
        (
            "user of acme",
            s.issuer
                .token("u-acme", &["user"], json!({"tenant": "acme"})),
            &["acme_crm_lookup", "search_docs"],
        ),
        // ABAC: high-risk tools need MFA.
        (
            "operator without MFA",
            s.issuer.role("agent_operator"),
            &["read_file", "search_docs"],
        ),
        (
            "operator with MFA",
            s.issuer.token(
                "op-mfa",
                &["agent_operator"],
                json!({"amr": ["pwd", "otp"]}),
            ),
            &["read_file", "search_docs", "write_file"],
        ),
        // ABAC: run_shell requires the tools:exec scope (and, being high risk, MFA).
        (
            "operator with MFA and tools:exec",
            s.issuer.token(
                "op-exec",
                &["agent_operator"],
                json!({"amr": ["otp"], "scope": "openid tools:exec"}),
            ),
            &["read_file", "run_shell", "search_docs", "write_file"],
        ),
    ];
    for (who, token, expected) in cases {
        s.seen.lock().unwrap().clear();
        let (status, body) = post(&s.proxy, "/agent", &token, &run_input(&offered)).await;
        assert_eq!(status, 200, "{who}: {body}");
        let seen = s.seen.lock().unwrap().pop().expect("the agent got the run");
        let mut names: Vec<&str> = seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, expected, "{who}");
        assert_eq!(
            seen["messages"][0]["content"], "go",
            "the rest of the input is untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agui_stream_drops_denied_tool_calls_or_ends_the_run() {
    let s = seed_stack().await;
    // user: search_docs (low risk) passes, write_file (high risk) is dropped everywhere.
    let (status, body) = post(&s.proxy, "/agent", &s.issuer.role("user"), &run_input(&[])).await;
    assert_eq!(status, 200);
    let evs = events(&body);
    let kinds: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["toolCallId"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "RUN_STARTED ",
            "TOOL_CALL_START c1",
            "TOOL_CALL_ARGS c1",
            "TOOL_CALL_END c1",
            "MESSAGES_SNAPSHOT ",
            "RUN_FINISHED "
        ]
    );
    let snapshot = &evs[4]["messages"];
    assert_eq!(snapshot[1]["toolCalls"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot[1]["toolCalls"][0]["id"], "c1");
    let ids: Vec<&str> = snapshot
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["m1", "m2", "m4"],
        "the tool message answering c2 is gone"
    );

    // With MFA the operator sees everything.
    let op = s
        .issuer
        .token("op", &["agent_operator"], json!({"amr": ["otp"]}));
    let (_, body) = post(&s.proxy, "/agent", &op, &run_input(&[])).await;
    assert_eq!(events(&body).len(), 10);

    // run_error mode: the run ends with RUN_ERROR FORBIDDEN at the denied call.
    let (status, body) = post(&s.proxy, "/strict", &s.issuer.role("user"), &run_input(&[])).await;
    assert_eq!(status, 200);
    let evs = events(&body);
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "RUN_ERROR", "{body}");
    assert_eq!(last["code"], "FORBIDDEN");
    assert_eq!(
        evs.len(),
        5,
        "RUN_STARTED, c1 START/ARGS/END, RUN_ERROR: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_methods_map_to_actions_in_both_versions() {
    let s = seed_stack().await;
    let user = s.issuer.role("user");
    let op = s.issuer.role("agent_operator");
    let rpc =
        |id: u64, method: &str| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
    for (token, method, allowed) in [
        (&user, "message/send", true),
        (&user, "SendMessage", true),
        (&user, "message/stream", true),
        (&user, "tasks/get", true),
        (&user, "tasks/cancel", false),
        (&user, "CancelTask", false),
        (&op, "tasks/cancel", true),
        (&op, "CancelTask", true),
        (&op, "tasks/teleport", false),
    ] {
        let (status, body) = post(&s.proxy, "/a2a", token, &rpc(41, method)).await;
        assert_eq!(status, 200, "{method}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        if allowed {
            assert_eq!(json["method"], "POST", "{method} reached the agent: {body}");
        } else {
            assert_eq!(json["id"], 41, "{method}: {body}");
            assert_eq!(json["error"]["code"], -32030, "{method}: {body}");
            assert_eq!(json["error"]["data"]["code"], "FORBIDDEN");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_are_decided_and_headers_must_match_the_body() {
    let s = seed_stack().await;
    let user = s.issuer.role("user");
    let call = |name: &str| json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {}}});
    let (status, body) = post(&s.proxy, "/mcp-echo", &user, &call("search_docs")).await;
    assert_eq!(status, 200);
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echoed["headers"]["transfer-encoding"], "chunked",
        "a held body goes on chunked"
    );

    let (status, body) = post(&s.proxy, "/mcp-echo", &user, &call("write_file")).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        json!({"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32030, "message": "access denied",
        "data": {"code": "FORBIDDEN", "request_id": json["error"]["data"]["request_id"]}}})
    );

    // The 2026-07-28 transport's routing headers must agree with the body.
    for (method_h, name_h) in [("tools/list", "search_docs"), ("tools/call", "write_file")] {
        let resp = client()
            .post(s.proxy.url("/mcp-echo"))
            .bearer_auth(&user)
            .header("mcp-method", method_h)
            .header("mcp-name", name_h)
            .json(&call("search_docs"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{method_h} {name_h}");
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["id"], 7);
        assert_eq!(json["error"]["code"], -32600);
    }
    let resp = client()
        .post(s.proxy.url("/mcp-echo"))
        .bearer_auth(&user)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "search_docs")
        .json(&call("search_docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_sets_decide_and_record_but_never_block() {
    let deny_all = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_policies().join("palisade.cedarschema"),
        deny_all.path().join("palisade.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        deny_all.path().join("lockdown.cedar"),
        "@id(\"lockdown\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let seed = repo_policies();
    let s = stack(&[
        ("main", &seed, "enforce"),
        ("next", deny_all.path(), "shadow"),
    ])
    .await;
    let (status, _) = post(&s.proxy, "/agent", &s.issuer.role("user"), &run_input(&[])).await;
    assert_eq!(
        status, 200,
        "the enforcing set allows; the shadow deny does not block"
    );
    let shadow_denies = metric(
        &s.proxy,
        "palisade_authz_decisions_total{action=\"run_agent\",decision=\"deny\",mode=\"shadow\",policy_set=\"next\"}",
    );
    assert_eq!(shadow_denies, 1.0);

    // A shadow set alone never blocks.
    let s = stack(&[("next", deny_all.path(), "shadow")]).await;
    let (status, _) = post(
        &s.proxy,
        "/agent",
        &s.issuer.role("viewer"),
        &run_input(&[]),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_admin_rule_sees_the_client_behind_a_trusted_proxy() {
    // The test client plays a reverse proxy on loopback, listed as trusted.
    let p = repo_policies();
    let s = stack_with(
        &[("main", &p, "enforce")],
        "edge:\n  trusted_proxies: [127.0.0.1]\n",
    )
    .await;
    let get = |forwarded_for: Option<&'static str>| {
        let mut req = client()
            .get(s.proxy.url("/ops/admin/x"))
            .bearer_auth(s.issuer.role("admin"));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap())
        }
    };
    // A client on the internet, even one that wrote `127.0.0.1` itself (the proxy appends the
    // real peer): the proxy's loopback address no longer satisfies `isLoopback()`.
    assert_eq!(get(Some("203.0.113.9")).await.0, 403);
    assert_eq!(get(Some("127.0.0.1, 203.0.113.9")).await.0, 403);
    // A client in the operations network, forwarded: allowed as the seed policy says.
    assert_eq!(get(Some("10.1.2.3")).await.0, 200);
    // A trusted proxy that does not say who its client is: refused, not taken for loopback.
    let (status, body) = get(None).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_map_admin_endpoints_to_the_admin_action() {
    let s = seed_stack().await;
    let get = |path: &str, token: String| {
        let url = s.proxy.url(path);
        async move {
            let resp = client().get(url).bearer_auth(token).send().await.unwrap();
            resp.status().as_u16()
        }
    };
    // `admin` on Route::"ops": admins only (and from loopback/10/8, which the test client is).
    assert_eq!(get("/ops/admin/x", s.issuer.role("admin")).await, 200);
    assert_eq!(get("/ops/admin/x", s.issuer.role("developer")).await, 403);
    // The rest of the route is plain http_request.
    assert_eq!(get("/ops/status", s.issuer.role("developer")).await, 200);
    assert_eq!(get("/ops/status", s.issuer.role("viewer")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_hours_apply_end_to_end() {
    let s = seed_stack().await;
    // send_email is tagged business-hours: offered to a developer only Mon-Fri 08-18 UTC.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (hour, weekday) = ((now / 3600) % 24, (now / 86_400 + 3) % 7); // 1970-01-01: Thursday
    let open = weekday < 5 && (8..18).contains(&hour);
    let token = s.issuer.role("developer");
    let (status, _) = post(&s.proxy, "/agent", &token, &run_input(&["send_email"])).await;
    assert_eq!(status, 200);
    let seen = s.seen.lock().unwrap().pop().unwrap();
    let kept = seen["tools"].as_array().unwrap().len() == 1;
    // A run straddling 08:00 or 18:00 UTC could flip between the two reads of the clock.
    assert_eq!(
        kept, open,
        "hour {hour} weekday {weekday}: send_email kept = {kept}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_policies(), dir.path());
    let s = stack(&[("main", dir.path(), "enforce")]).await;
    let viewer = s.issuer.role("viewer");
    let (status, _) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 403);
    let ready = client()
        .get(s.proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // A policy that fails strict validation: refused, the old set stays live.
    std::fs::write(
        dir.path().join("viewer-agents.cedar"),
        "@id(\"viewer-agents\")\npermit (principal in Role::\"viewer\", action == Action::\"run_agent\", resource)\nwhen { resource.owner == \"me\" };\n",
    )
    .unwrap();
    let failed = eventually(Duration::from_secs(10), || {
        (metric(
            &s.proxy,
            "palisade_policy_reloads_total{result=\"failure\"}",
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert!(failed.is_some(), "the broken file was seen and refused");
    let (status, _) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 403, "still the last good set");
    let (status, _) = post(&s.proxy, "/agent", &s.issuer.role("user"), &run_input(&[])).await;
    assert_eq!(status, 200, "still the last good set");
    let ready = client()
        .get(s.proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "a refused reload does not make the proxy unready"
    );

    // Fixed: the new set goes live.
    std::fs::write(
        dir.path().join("viewer-agents.cedar"),
        "@id(\"viewer-agents\")\npermit (principal in Role::\"viewer\", action == Action::\"run_agent\", resource);\n",
    )
    .unwrap();
    let reloaded = eventually(Duration::from_secs(10), || {
        (metric(
            &s.proxy,
            "palisade_policy_reloads_total{result=\"success\"}",
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert!(reloaded.is_some());
    let (status, body) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 200, "{body}");
}

// ---- MCP against a real server -------------------------------------------------------------

const MCP_SERVER: &str = r#"
import sys
from mcp.server import MCPServer

port, json_response = int(sys.argv[1]), sys.argv[2] == "json"
mcp = MCPServer("palisade-e2e")

@mcp.tool()
def search_docs(query: str) -> str:
    """Search the documentation."""
    return f"results for {query}"

@mcp.tool()
def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"

@mcp.tool()
def write_file(path: str, content: str) -> str:
    """Write a file."""
    return f"wrote {len(content)} bytes to {path}"

mcp.run(transport="streamable-http", host="127.0.0.1", port=port,
        json_response=json_response, stateless_http=True)
"#;

const MCP_CLIENT: &str = r#"
import asyncio, json, sys
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]

async def main():
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
    out = {}
    async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        for name, args in [("search_docs", {"query": "cedar"}), ("read_file", {"path": "/srv/a.txt"}),
                           ("read_file", {"path": "/etc/shadow"}), ("write_file", {"path": "/tmp/x", "content": "hi"})]:
            key = f"{name} {args.get('path', args.get('query'))}"
            try:
                r = await client.call_tool(name, args)
                out[key] = "error" if r.is_error else r.content[0].text
            except Exception as e:
                out[key] = f"refused {getattr(getattr(e, 'error', None), 'code', None)}"
    print(json.dumps(out, sort_keys=True))

asyncio.run(main())
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_list_and_call_are_filtered_against_a_real_mcp_server() {
    // tests/run.sh always installs it; a bare `cargo test` without it says so loudly.
    let python = palisade_e2e::peers::python();
    let scripts = tempfile::tempdir().unwrap();
    std::fs::write(scripts.path().join("server.py"), MCP_SERVER).unwrap();
    std::fs::write(scripts.path().join("client.py"), MCP_CLIENT).unwrap();
    for flavour in ["json", "sse"] {
        let port = palisade_e2e::closed_port().port();
        let _server = Child(
            std::process::Command::new(&python)
                .arg(scripts.path().join("server.py"))
                .arg(port.to_string())
                .arg(flavour)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let up = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).ok()
        })
        .await;
        assert!(up.is_some(), "the MCP server did not start");

        let issuer = Issuer::new();
        let seed = repo_policies();
        let proxy = TestProxy::new()
            .upstream("mcp", addr)
            .route("mcp", "/mcp", "mcp", "protocol: mcp")
            .top_yaml(
                &issuer.yaml_with_sets("  reload_interval: 100ms\n", &[("main", &seed, "enforce")]),
            )
            .start();
        let url = proxy.url("/mcp");
        for mode in ["legacy", "auto"] {
            let run = |token: String| {
                let out = std::process::Command::new(&python)
                    .arg(scripts.path().join("client.py"))
                    .args([url.as_str(), token.as_str(), mode])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "client failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                serde_json::from_slice::<Value>(&out.stdout).unwrap()
            };
            let user = run(issuer.role("user"));
            assert_eq!(
                user["tools"],
                json!(["search_docs"]),
                "{flavour} {mode}: {user}"
            );
            assert_eq!(
                user["search_docs cedar"], "results for cedar",
                "{flavour} {mode}"
            );
            assert_eq!(
                user["read_file /srv/a.txt"], "refused -32030",
                "{flavour} {mode}"
            );
            assert_eq!(
                user["write_file /tmp/x"], "refused -32030",
                "{flavour} {mode}"
            );

            let dev = run(issuer.role("developer"));
            assert_eq!(
                dev["tools"],
                json!(["read_file", "search_docs"]),
                "{flavour} {mode}: {dev}"
            );
            assert_eq!(dev["read_file /srv/a.txt"], "contents of /srv/a.txt");
            // ABAC on arguments: system paths are refused whatever the role.
            assert_eq!(
                dev["read_file /etc/shadow"], "refused -32030",
                "{flavour} {mode}"
            );
            assert_eq!(dev["write_file /tmp/x"], "refused -32030");
        }
    }
}
