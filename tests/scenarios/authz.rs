//! Cedar authorization end to end: real JWTs from a test issuer, the seed policies in
//! `policies/`, per role and per ABAC rule; AG-UI tool filtering in the request and in the
//! stream; MCP `tools/call` / `tools/list` against a real MCP server (the `mcp` package from
//! PyPI, started on a free port); A2A methods; shadow mode; a broken reload keeping the last
//! good set.
//!
//! This file holds the shared stack (proxy, issuer, a scripted AG-UI agent, an echo server);
//! the scenarios live in the modules below, one per theme.

mod agui;
mod mcp;
mod policy_sets;
mod roles;
mod stepup;

use std::path::{Path, PathBuf};

use palisade_e2e::issuer::Issuer;
use palisade_e2e::upstream::{self, ScriptedUpstream, Upstream};
use palisade_e2e::{Proxy, TestProxy};
use serde_json::{json, Value};

fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// An AG-UI agent that streams (CRLF-framed, as one buffered body) a run calling `search_docs`
/// (low risk, `c1`) and `write_file` (high risk, `c2`), ending with a `MESSAGES_SNAPSHOT`.
async fn agui_agent() -> Upstream {
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
    ScriptedUpstream::new()
        .sse("/", events)
        .line_ending("\r\n")
        .whole()
        .start()
        .await
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

/// `palisade_authz_decisions_total` for `run_agent` by decision, mode and policy set.
fn run_agent_decisions(proxy: &Proxy, decision: &str, mode: &str, set: &str) -> f64 {
    metric(
        proxy,
        &format!(
            "palisade_authz_decisions_total{{action=\"run_agent\",decision=\"{decision}\",\
             mode=\"{mode}\",policy_set=\"{set}\"}}"
        ),
    )
}

struct Stack {
    proxy: Proxy,
    issuer: Issuer,
    agent: Upstream,
    _echo: Upstream,
}

/// The proxy with the given policy sets: `/agent` (AG-UI, tool calls dropped), `/strict`
/// (AG-UI, `run_error`), `/api` (HTTP), `/a2a` (A2A, agent `assistant`), `/mcp-echo` (MCP in
/// front of an echo server), `/ops` (an `admin` rule under `/ops/admin`).
async fn stack(sets: &[(&str, &Path, &str)]) -> Stack {
    stack_with(sets, "").await
}

/// [`stack`] with more top-level YAML.
async fn stack_with(sets: &[(&str, &Path, &str)], extra: &str) -> Stack {
    stack_settings(sets, "  reload_interval: 100ms\n", extra).await
}

/// [`stack_with`] with `settings` (pre-indented lines) in `authorization:`.
async fn stack_settings(sets: &[(&str, &Path, &str)], settings: &str, extra: &str) -> Stack {
    let issuer = Issuer::new();
    let agent = agui_agent().await;
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("agent", agent.addr)
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
        .top_yaml(&issuer.yaml_with_sets(settings, sets))
        .top_yaml(extra)
        .start();
    Stack {
        proxy,
        issuer,
        agent,
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
