//! Step-up challenges and delegation (`docs/policies.md`, "Step-up challenges" and
//! "Delegation (act)"): a tool needing a scope the token lacks is `403 INSUFFICIENT_SCOPE` naming
//! just that scope; a high-risk tool without MFA is `401 STEP_UP_REQUIRED` (RFC 9470); a forbid
//! that applies whatever the token holds stays a plain `FORBIDDEN`; an `act` policy lets a user
//! read, not write, through an agent. Both MCP (`resource_metadata` in the challenge) and a
//! request-level decision on a plain HTTP route.

use std::path::Path;
use std::time::Duration;

use palisade_e2e::{client, eventually};
use serde_json::{json, Value};

use super::{post, stack_settings, stack_with, Stack};

const POLICIES: &str = r#"
@id("mcp-route")
permit (principal, action == Action::"http_request", resource == Route::"mcp-echo");

@id("ops-tools")
permit (principal in Role::"ops", action in [Action::"call_tool", Action::"list_tools"], resource);

@id("deploy-needs-scope")
forbid (principal, action == Action::"call_tool", resource == Tool::"deploy")
unless { principal.scopes.contains("tools:deploy") };

@id("report-needs-scope")
forbid (principal, action == Action::"call_tool", resource == Tool::"report")
unless { principal.scopes.contains("reports:read") };

@id("required-credentials")
forbid (principal, action == Action::"call_tool", resource)
unless { principal.scopes.containsAll(resource.required_credentials) };

@id("high-risk-needs-mfa")
forbid (principal, action == Action::"call_tool", resource)
when { resource.risk == "high" }
unless { context.mfa };

@id("never-nuke")
forbid (principal, action == Action::"call_tool", resource == Tool::"nuke");

@id("nuke-with-scope")
permit (principal, action == Action::"call_tool", resource == Tool::"nuke")
when { principal.scopes.contains("tools:nuke") };

@id("api-with-scope")
permit (principal, action == Action::"http_request", resource == Route::"api")
when { principal.scopes.contains("api:call") };

@id("agents-only-read")
@description("through an agent, a user may only call read tools")
forbid (principal, action == Action::"call_tool", resource)
when { principal has actor && !resource.tags.contains("read") };
"#;

const TOOLS: &str = "tools:
  deploy: {risk: low, tags: [ops]}
  report: {risk: low, tags: [read]}
  run_shell: {risk: high, tags: [exec], required_credentials: [tools:exec]}
  nuke: {risk: low}
  search_docs: {risk: low, tags: [read]}
  write_file: {risk: medium, tags: [write]}
";

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let schema = super::repo_policies().join("palisade.cedarschema");
    std::fs::copy(schema, dir.path().join("palisade.cedarschema")).unwrap();
    std::fs::write(dir.path().join("stepup.cedar"), POLICIES).unwrap();
    std::fs::write(dir.path().join("tools.yaml"), TOOLS).unwrap();
    dir
}

/// The stack over `dir` with `authorization.step_up` set and the audit trail in `audit`.
async fn stepup_stack(dir: &Path, audit: &Path) -> Stack {
    stack_settings(
        &[("main", dir, "enforce")],
        "  reload_interval: 100ms\n  step_up: {acr_values: [gold, \"urn:x:\\\"q\\\"\"], max_age: 5m}\n",
        &format!(
            "audit:\n  file: {{path: \"{}\", fsync: batch}}\n",
            audit.display()
        ),
    )
    .await
}

fn call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}

/// Calls `tool` on `/mcp-echo`: status, `WWW-Authenticate` (if any) and the JSON body.
async fn mcp_call(s: &Stack, token: &str, tool: &str) -> (u16, Option<String>, Value) {
    let resp = client()
        .post(s.proxy.url("/mcp-echo"))
        .bearer_auth(token)
        .json(&call(tool))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, www, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_challenges_name_what_is_missing() {
    let dir = policy_dir();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let s = stepup_stack(dir.path(), &audit).await;
    let metadata = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp-echo",
        s.proxy.addr()
    );
    let ops = s
        .issuer
        .token("op", &["ops"], json!({"scope": "openid reports:read"}));

    // A tool needing a scope the token lacks: 403, naming only that scope (the policies also
    // name `tools:nuke`, `api:call`, `tools:exec`: none of them is needed).
    let (status, www, body) = mcp_call(&s, &ops, "deploy").await;
    assert_eq!(status, 403);
    assert_eq!(
        www.as_deref(),
        Some(
            format!(
                "Bearer error=\"insufficient_scope\", scope=\"tools:deploy\", \
                 resource_metadata=\"{metadata}\""
            )
            .as_str()
        )
    );
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32030);
    assert_eq!(body["error"]["data"]["code"], "INSUFFICIENT_SCOPE");

    // With the scope it passes.
    let deployer = s
        .issuer
        .token("op", &["ops"], json!({"scope": "openid tools:deploy"}));
    let (status, www, _) = mcp_call(&s, &deployer, "deploy").await;
    assert_eq!((status, www), (200, None));

    // A high-risk tool without MFA: 401 RFC 9470, with the configured acr_values (quotes
    // escaped) and max_age, and the tool's required scope as well.
    let (status, www, body) = mcp_call(&s, &ops, "run_shell").await;
    assert_eq!(status, 401);
    assert_eq!(
        www.as_deref(),
        Some(
            format!(
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A different authentication level is required\", \
                 acr_values=\"gold urn:x:\\\"q\\\"\", scope=\"tools:exec\", max_age=300, \
                 resource_metadata=\"{metadata}\""
            )
            .as_str()
        )
    );
    assert_eq!(body["error"]["data"]["code"], "STEP_UP_REQUIRED");
    // Holding the scope, MFA alone is asked for.
    let exec = s
        .issuer
        .token("op", &["ops"], json!({"scope": "tools:exec"}));
    let (status, www, _) = mcp_call(&s, &exec, "run_shell").await;
    assert_eq!(status, 401);
    assert_eq!(
        www.as_deref(),
        Some(
            format!(
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A different authentication level is required\", \
                 acr_values=\"gold urn:x:\\\"q\\\"\", max_age=300, resource_metadata=\"{metadata}\""
            )
            .as_str()
        )
    );
    let stepped = s.issuer.token(
        "op",
        &["ops"],
        json!({"scope": "tools:exec", "amr": ["pwd", "otp"]}),
    );
    assert_eq!(mcp_call(&s, &stepped, "run_shell").await.0, 200);

    // A forbid that applies whatever the token holds: the plain JSON-RPC denial, no challenge,
    // even though `nuke-with-scope` would permit it with `tools:nuke`.
    let user = s.issuer.token("u", &["user"], json!({}));
    let (status, www, body) = mcp_call(&s, &user, "nuke").await;
    assert_eq!((status, www), (200, None));
    assert_eq!(body["error"]["data"]["code"], "FORBIDDEN");

    // Request level on a plain HTTP route: the documented error body, no resource_metadata.
    let resp = client()
        .get(s.proxy.url("/api/x"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"api:call\""
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INSUFFICIENT_SCOPE");
    assert_eq!(
        body["error"]["message"],
        "insufficient scope: the request needs api:call"
    );

    // The audit record says which challenge was sent.
    let codes = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        let codes: Vec<(String, String)> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|r| {
                Some((
                    r["error_code"].as_str()?.to_string(),
                    r["reason"].as_str()?.to_string(),
                ))
            })
            .collect();
        (codes.len() >= 5).then_some(codes)
    })
    .await
    .expect("audit records written");
    assert!(codes.contains(&("INSUFFICIENT_SCOPE".into(), "insufficient_scope".into())));
    assert!(codes.contains(&("STEP_UP_REQUIRED".into(), "step_up_required".into())));
    assert!(codes.contains(&("FORBIDDEN".into(), "forbidden".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_agent_a_user_may_only_read() {
    let dir = policy_dir();
    let s = stack_with(&[("main", dir.path(), "enforce")], "").await;
    let direct = s.issuer.token("alice", &["ops"], json!({}));
    let via_agent = s.issuer.token(
        "alice",
        &["ops"],
        json!({"act": {"sub": "agent-y", "act": {"sub": "orchestrator"}}}),
    );
    for (token, tool, allowed) in [
        (&direct, "search_docs", true),
        (&direct, "write_file", true),
        (&via_agent, "search_docs", true),
        (&via_agent, "write_file", false),
    ] {
        let (status, body) = post(&s.proxy, "/mcp-echo", token, &call(tool)).await;
        assert_eq!(status, 200, "{tool}");
        let json: Value = serde_json::from_str(&body).unwrap();
        let refused = json["error"]["data"]["code"] == "FORBIDDEN";
        assert_eq!(!refused, allowed, "{tool}: {body}");
    }
}
