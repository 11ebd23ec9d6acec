//! Human approvals (`docs/approvals.md`): an MCP `tools/call` or A2A send that a permit marked
//! `@approval("required")` is held until an approver decides it through the admin API or the
//! `palisade approvals` CLI; denied, timed out or over the caps it is refused with its
//! documented code and the JSON-RPC id. A forbid wins before anyone is asked. With Redis,
//! approvals are shared by replicas and survive a restart; a webhook announces each one.
//!
//! This file holds the stack (proxy, issuer, echo upstream, admin token, audit file); the
//! scenarios live in the modules below.

mod held;
mod shared;

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_e2e::issuer::Issuer;
use palisade_e2e::upstream::{self, Upstream};
use palisade_e2e::{client, eventually, Proxy, TestProxy};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "approvals-admin-token-0123456789abcdef012345";

const POLICIES: &str = r#"
@id("routes")
permit (principal, action in [Action::"http_request", Action::"run_agent"], resource);

@id("ops-tools")
permit (principal in Role::"ops", action in [Action::"call_tool", Action::"list_tools"], resource)
when { resource.risk != "high" };

@id("ops-high-risk")
@approval("required")
permit (principal in Role::"ops", action == Action::"call_tool", resource)
when { resource.risk == "high" };

@id("never-nuke")
forbid (principal, action == Action::"call_tool", resource == Tool::"nuke");

@id("ops-a2a")
@approval("required")
permit (principal in Role::"ops", action in [Action::"a2a_send", Action::"a2a_get_task"], resource);

@id("approvers")
permit (principal in Role::"approver", action == Action::"approve", resource);
"#;

const TOOLS: &str = "tools:
  run_shell: {risk: high}
  write_file: {risk: high}
  nuke: {risk: high}
  search_docs: {risk: low}
";

/// A policy directory with the repo's schema and [`POLICIES`].
fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/palisade.cedarschema");
    std::fs::copy(schema, dir.path().join("palisade.cedarschema")).unwrap();
    std::fs::write(dir.path().join("approvals.cedar"), POLICIES).unwrap();
    std::fs::write(dir.path().join("tools.yaml"), TOOLS).unwrap();
    dir
}

/// A proxy, its echo upstream, the token issuer and where its audit trail goes.
struct Stack {
    proxy: Proxy,
    issuer: Issuer,
    echo: Upstream,
    audit: PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// The stack with `approvals` (pre-indented YAML lines under `approvals:`, or empty):
/// `/mcp` (MCP) and `/a2a` (A2A, agent `assistant`) in front of an echo server.
async fn stack(approvals: &str) -> Stack {
    stack_over(Issuer::new(), policy_dir(), approvals).await
}

/// [`stack`] with a given issuer and policy directory (replicas share both).
async fn stack_over(issuer: Issuer, policies: tempfile::TempDir, approvals: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let echo = upstream::echo().await;
    let mut yaml = issuer.authentication_yaml();
    yaml.push_str(&format!(
        "  revocation: {{admin_token_file: \"{}\"}}\n",
        token_file.display()
    ));
    yaml.push_str(&format!(
        "authorization:\n  policy_sets:\n    - name: main\n      path: \"{}\"\n      mode: enforce\n",
        policies.path().display()
    ));
    yaml.push_str(&format!(
        "audit:\n  file: {{path: \"{}\", fsync: batch}}\n",
        audit.display()
    ));
    if !approvals.is_empty() {
        yaml.push_str("approvals:\n");
        yaml.push_str(approvals);
    }
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("mcp", "/mcp", "echo", "protocol: mcp")
        .route(
            "a2a",
            "/a2a",
            "echo",
            "protocol: a2a\nauthorization: {agent: assistant}",
        )
        .top_yaml(&yaml)
        .start();
    Stack {
        proxy,
        issuer,
        echo,
        audit,
        _dirs: (dir, policies),
    }
}

fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// POSTs `body` to `path` with `token`: status and JSON body.
async fn call(proxy: &Proxy, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(proxy.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `GET /admin/approvals` with the admin token: the pending approvals.
async fn pending(proxy: &Proxy) -> Vec<Value> {
    let resp = client()
        .get(proxy.admin_url("/admin/approvals"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["approvals"].as_array().cloned().unwrap_or_default()
}

/// Waits until `proxy` lists exactly `n` pending approvals; returns them.
async fn wait_pending(proxy: &Proxy, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let list = pending(proxy).await;
        if list.len() == n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never {n} pending approvals: {:?}", pending(proxy).await);
}

/// `POST /admin/approvals/{id}/{verb}` as `approver` (admin token + `X-Palisade-Approver`).
async fn decide(
    proxy: &Proxy,
    id: &str,
    verb: &str,
    approver: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = client()
        .post(proxy.admin_url(&format!("/admin/approvals/{id}/{verb}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body);
    if let Some(t) = approver {
        req = req.header("x-palisade-approver", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The audit records (parsed) once `check` finds what it needs in them.
async fn audit_until(path: &Path, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let read = || {
        let records: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        check(&records).then_some(records)
    };
    match eventually(Duration::from_secs(10), read).await {
        Some(records) => records,
        None => panic!(
            "audit trail never had the records; it has:\n{}",
            std::fs::read_to_string(path).unwrap_or_default()
        ),
    }
}

/// The `approval` parts of the audit records, as `(outcome, approver)`.
fn approval_events(records: &[Value]) -> Vec<(String, Option<String>)> {
    records
        .iter()
        .filter_map(|r| r.get("approval"))
        .map(|a| {
            (
                a["outcome"].as_str().unwrap_or_default().to_string(),
                a["approver"].as_str().map(str::to_string),
            )
        })
        .collect()
}
