//! The MCP client against a scripted Streamable HTTP server (JSON answers, sessions): headers
//! carried, a forgotten session re-opened once, error results and JSON-RPC refusals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Json;
use serde_json::{json, Value};

use super::McpServer;
use crate::config::McpServerConfig;
use crate::identity::Caller;
use crate::tools::{Tool, ToolContext};

#[derive(Default)]
struct Script {
    sessions: AtomicUsize,
    forgot_first: AtomicUsize,
    seen: Mutex<Vec<(String, HeaderMap)>>,
    closed: Mutex<Vec<String>>,
}

async fn handle(script: Arc<Script>, headers: HeaderMap, Json(msg): Json<Value>) -> Response {
    let method = msg["method"].as_str().unwrap_or_default().to_owned();
    script
        .seen
        .lock()
        .unwrap()
        .push((method.clone(), headers.clone()));
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reply = |result: Value| Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}));
    match method.as_str() {
        "initialize" => {
            let n = script.sessions.fetch_add(1, Ordering::SeqCst) + 1;
            let mut resp = reply(json!({"protocolVersion": "2025-06-18", "capabilities": {},
                "serverInfo": {"name": "fake", "version": "1"}}))
            .into_response();
            resp.headers_mut()
                .insert("mcp-session-id", format!("s{n}").parse().unwrap());
            resp
        }
        "notifications/initialized" => StatusCode::ACCEPTED.into_response(),
        _ if session.is_none() => StatusCode::BAD_REQUEST.into_response(),
        "tools/list" => reply(json!({"tools": [
            {"name": "echo", "description": "echoes", "inputSchema": {"type": "object"}},
            {"name": "boom", "inputSchema": {"type": "object"}},
            {"name": "denied"}
        ]}))
        .into_response(),
        "tools/call" => {
            // The server forgets the first session once, mid-run.
            if session.as_deref() == Some("s1")
                && script.forgot_first.fetch_add(1, Ordering::SeqCst) == 0
            {
                return StatusCode::NOT_FOUND.into_response();
            }
            match msg["params"]["name"].as_str() {
                Some("echo") => reply(json!({"content": [
                    {"type": "text", "text": format!("echo: {}", msg["params"]["arguments"])}]}))
                .into_response(),
                Some("boom") => reply(json!({"isError": true,
                    "content": [{"type": "text", "text": "it broke"}]}))
                .into_response(),
                _ => Json(json!({"jsonrpc": "2.0", "id": msg["id"],
                    "error": {"code": -32030, "message": "forbidden by policy"}}))
                .into_response(),
            }
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn server() -> (String, Arc<Script>) {
    let script = Arc::new(Script::default());
    let s = script.clone();
    let c = script.clone();
    let app = axum::Router::new().route(
        "/mcp",
        post(move |h: HeaderMap, body: Json<Value>| handle(s.clone(), h, body)).merge(delete(
            move |h: HeaderMap| {
                let c = c.clone();
                async move {
                    let id = h["mcp-session-id"].to_str().unwrap().to_owned();
                    assert_eq!(h["authorization"], "Bearer user-token");
                    c.closed.lock().unwrap().push(id);
                    StatusCode::OK
                }
            },
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/mcp"), script)
}

fn ctx() -> ToolContext {
    ToolContext {
        caller: Caller {
            principal: "User::\"iss|alice\"".into(),
            credential: Some("Bearer user-token".into()),
            ..Caller::default()
        },
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        run_id: "r1".into(),
        request_id: None,
    }
}

#[tokio::test]
async fn lists_and_calls_tools_with_the_callers_credential_in_one_session() {
    let (url, script) = server().await;
    let cfg = McpServerConfig {
        name: "fake".into(),
        url,
        tools_cache: std::time::Duration::from_millis(0),
    };
    let server = Arc::new(McpServer::new(
        &cfg,
        Duration::from_secs(5),
        &crate::tls::Trust::default(),
    ));
    let ctx = ctx();
    let tools = server.list(&ctx).await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(names, ["echo", "boom", "denied"]);
    assert_eq!(tools[2].spec().parameters, json!({"type": "object"}));

    // The first call finds its session forgotten (404): one new session, then success.
    let out = tools[0].call(json!({"x": 1}), &ctx).await.unwrap();
    assert_eq!(out, r#"echo: {"x":1}"#);
    assert_eq!(script.sessions.load(Ordering::SeqCst), 2);
    let err = tools[1].call(json!({}), &ctx).await.unwrap_err();
    assert_eq!(err.0, "it broke");
    let err = tools[2].call(json!({}), &ctx).await.unwrap_err();
    assert!(
        err.0.contains("forbidden by policy") && err.0.contains("-32030"),
        "{err}"
    );
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        2,
        "the session is reused"
    );

    // The run ends (its tools are dropped): the session is closed with DELETE.
    drop(tools);
    let mut closed = Vec::new();
    for _ in 0..200 {
        closed = script.closed.lock().unwrap().clone();
        if !closed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(closed, ["s2"]);

    for (method, headers) in script.seen.lock().unwrap().iter() {
        assert_eq!(headers["authorization"], "Bearer user-token", "{method}");
        assert!(headers["traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        let accept = headers["accept"].to_str().unwrap();
        assert!(accept.contains("application/json") && accept.contains("text/event-stream"));
        if method != "initialize" {
            assert_eq!(headers["mcp-protocol-version"], "2025-06-18", "{method}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_panic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = McpServerConfig {
        name: "gone".into(),
        url: format!("http://127.0.0.1:{port}/mcp"),
        tools_cache: std::time::Duration::from_millis(0),
    };
    let server = Arc::new(McpServer::new(
        &cfg,
        Duration::from_secs(2),
        &crate::tls::Trust::default(),
    ));
    let err = server.list(&ctx()).await.err().unwrap();
    assert!(err.to_string().contains("`gone` unreachable"), "{err}");
}

#[tokio::test]
async fn a_callers_tool_list_is_cached_and_the_session_opened_only_to_call() {
    let (url, script) = server().await;
    let cfg = McpServerConfig {
        name: "fake".into(),
        url,
        tools_cache: std::time::Duration::from_millis(60_000),
    };
    let server = Arc::new(McpServer::new(
        &cfg,
        Duration::from_secs(5),
        &crate::tls::Trust::default(),
    ));
    let methods = |script: &Script| -> Vec<String> {
        script
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    };
    let first = server.list(&ctx()).await.unwrap();
    assert_eq!(first.len(), 3);
    drop(first);
    assert_eq!(
        methods(&script),
        ["initialize", "notifications/initialized", "tools/list"]
    );
    // The same caller again: no request until a tool is called.
    let second = server.list(&ctx()).await.unwrap();
    assert_eq!(second.len(), 3);
    assert_eq!(methods(&script).len(), 3);
    second[2].call(json!({}), &ctx()).await.unwrap_err();
    assert_eq!(
        methods(&script)[3..],
        ["initialize", "notifications/initialized", "tools/call"]
    );
    // Another caller (another credential) is listed afresh.
    let mut other = ctx();
    other.caller.credential = Some("Bearer someone-else".into());
    server.list(&other).await.unwrap();
    assert_eq!(methods(&script).last().unwrap(), "tools/list");
}
