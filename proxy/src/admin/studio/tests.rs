//! The studio API on a real listener: the admin token is required, bad input gets the
//! documented error body (never a 500), and answers carry what the page shows.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{router, StudioState, MAX_BODY_BYTES};
use crate::authn::Authenticator;
use crate::config::Config;

const TOKEN: &str = "studio-test-admin-token-0123456789abcdef";

struct Studio {
    base: String,
    _dir: tempfile::TempDir,
    audit: std::path::PathBuf,
}

/// The studio over the seed policies, with an admin token (or without: the API is off).
async fn studio(with_token: bool) -> Studio {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let revocation = if with_token {
        format!(
            "authentication:\n  revocation: {{admin_token_file: \"{}\"}}\n",
            token_file.display()
        )
    } else {
        String::new()
    };
    let yaml = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\n{revocation}\
         authorization:\n  policy_sets:\n    - {{name: main, path: builtin, mode: enforce}}\n"
    );
    let config = Config::from_yaml(&yaml, Vec::new()).unwrap();
    let authn = Arc::new(Authenticator::new(&config.authentication).unwrap());
    let audit = dir.path().join("audit.jsonl");
    let app = router(StudioState::new(
        authn,
        config.authz.clone(),
        Some(audit.clone()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Studio {
        base,
        _dir: dir,
        audit,
    }
}

async fn call(
    s: &Studio,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let client = crate::outbound::Trust::default()
        .client_builder()
        .build()
        .unwrap();
    let mut req = client.request(method.parse().unwrap(), format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(s: &Studio, path: &str, body: Value) -> (u16, Value) {
    call(
        s,
        "POST",
        path,
        Some(TOKEN),
        Some(body.to_string().into_bytes()),
    )
    .await
}

fn code(body: &Value) -> &str {
    for field in ["code", "message", "request_id", "timestamp"] {
        assert!(body["error"][field].is_string(), "error.{field} in {body}");
    }
    body["error"]["code"].as_str().unwrap()
}

fn seed_policies() -> Vec<Value> {
    crate::authz::PolicyFiles::builtin()
        .policies
        .iter()
        .map(|(p, t)| json!({"name": p.file_name().unwrap().to_str().unwrap(), "text": t}))
        .collect()
}

#[tokio::test]
async fn every_api_route_needs_the_admin_token() {
    let s = studio(true).await;
    let routes = [
        ("GET", "/admin/studio/api/live"),
        ("POST", "/admin/studio/api/validate"),
        ("POST", "/admin/studio/api/evaluate"),
        ("POST", "/admin/studio/api/test"),
        ("GET", "/admin/studio/api/audit"),
        ("POST", "/admin/studio/api/explain-audit"),
        ("POST", "/admin/studio/api/who-can"),
    ];
    for (method, path) in routes {
        let (status, body) = call(&s, method, path, None, Some(b"{}".to_vec())).await;
        assert_eq!((status, code(&body)), (401, "UNAUTHENTICATED"), "{path}");
        let (status, body) = call(&s, method, path, Some("wrong"), Some(b"{}".to_vec())).await;
        assert_eq!((status, code(&body)), (401, "UNAUTHENTICATED"), "{path}");
    }
    // Without a configured token the API and the page are off.
    let off = studio(false).await;
    let (status, body) = call(&off, "GET", "/admin/studio/api/live", Some(TOKEN), None).await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"));
    let (status, body) = call(&off, "GET", "/admin/studio", None, None).await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"));
    // With one, the page (no data in it) loads, with its CSP.
    let resp = crate::outbound::Trust::default()
        .client_builder()
        .build()
        .unwrap()
        .get(format!("{}/admin/studio", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(resp.text().await.unwrap().contains("policy studio"));
}

#[tokio::test]
async fn bad_input_gets_the_documented_error_body() {
    let s = studio(true).await;
    let bad: [(&str, Vec<u8>); 7] = [
        ("/admin/studio/api/validate", b"not json".to_vec()),
        (
            "/admin/studio/api/validate",
            br#"{"policies": [{"name": "../x.cedar", "text": ""}]}"#.to_vec(),
        ),
        (
            "/admin/studio/api/validate",
            br#"{"policies": [], "extra": 1}"#.to_vec(),
        ),
        (
            "/admin/studio/api/evaluate",
            br#"{"request": {"action": "fly", "resource": "Tool::\"x\""}}"#.to_vec(),
        ),
        (
            "/admin/studio/api/evaluate",
            br#"{"request": {"action": "call_tool", "resource": "nonsense"}}"#.to_vec(),
        ),
        (
            "/admin/studio/api/who-can",
            br#"{"action": "run_agent"}"#.to_vec(),
        ),
        (
            "/admin/studio/api/explain-audit",
            br#"{"line": 0, "request_id": "x"}"#.to_vec(),
        ),
    ];
    for (path, body) in bad {
        let (status, answer) = call(&s, "POST", path, Some(TOKEN), Some(body.clone())).await;
        assert_eq!(
            (status, code(&answer)),
            (400, "INVALID_REQUEST"),
            "{path} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let huge = json!({"policies": [{"name": "a.cedar", "text": "x".repeat(MAX_BODY_BYTES)}]});
    let (status, answer) = post(&s, "/admin/studio/api/validate", huge).await;
    assert_eq!((status, code(&answer)), (413, "PAYLOAD_TOO_LARGE"));
    for query in ["?filter=nope", "?limit=0", "?limit=x"] {
        let path = format!("/admin/studio/api/audit{query}");
        let (status, answer) = call(&s, "GET", &path, Some(TOKEN), None).await;
        assert_eq!((status, code(&answer)), (400, "INVALID_REQUEST"), "{query}");
    }
}

#[tokio::test]
async fn validation_reports_line_and_column_and_changes_nothing_live() {
    let s = studio(true).await;
    let mut policies = seed_policies();
    let roles = policies
        .iter()
        .position(|p| p["name"] == "roles.cedar")
        .unwrap();
    let text = policies[roles]["text"].as_str().unwrap().to_string();
    // Break line 7 (`permit (principal in Role::"admin", action, resource);`).
    let broken = text.replacen(
        "permit (principal in Role::\"admin\"",
        "permit (principal in Role::\"admin\" bogus",
        1,
    );
    policies[roles]["text"] = json!(broken);
    let (status, answer) = post(
        &s,
        "/admin/studio/api/validate",
        json!({"policies": policies}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["valid"], false);
    let err = &answer["errors"][0];
    assert_eq!(err["file"], "roles.cedar");
    assert_eq!(err["line"], 7, "{answer}");
    assert!(err["column"].as_u64().unwrap() > 1, "{answer}");

    let (_, live) = call(&s, "GET", "/admin/studio/api/live", Some(TOKEN), None).await;
    assert_eq!(live["set"]["name"], "main");
    assert!(live["pickers"]["roles"]
        .as_array()
        .unwrap()
        .contains(&json!("admin")));
    let (_, ok) = post(
        &s,
        "/admin/studio/api/validate",
        json!({"policies": seed_policies()}),
    )
    .await;
    assert_eq!(ok["valid"], true);
    assert_eq!(
        ok["hash"], live["set"]["hash"],
        "the same files: the same set"
    );
}

#[tokio::test]
async fn evaluate_compares_the_edited_set_with_the_live_one() {
    let s = studio(true).await;
    let request = json!({
        "principal": {"type": "User", "id": "https://idp|olga", "roles": ["agent_operator"],
                      "tenant": "acme", "mfa": false, "scopes": ["tools:exec"]},
        "action": "call_tool", "resource": "Tool::\"run_shell\"",
        "request": {"time": "2026-01-06T10:00:00Z", "protocol": "mcp", "path": "/mcp"}
    });
    let (status, same) = post(
        &s,
        "/admin/studio/api/evaluate",
        json!({"request": request}),
    )
    .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["live"]["allowed"], false);
    let p = &same["live"]["policies"][0];
    assert_eq!(p["id"], "high-risk-needs-mfa");
    assert_eq!(p["file"], "abac.cedar");
    assert!(p["end_line"].as_u64() >= p["line"].as_u64());

    // Remove the MFA forbid in the edited set: allowed there, still denied live.
    let mut policies = seed_policies();
    let abac = policies
        .iter()
        .position(|p| p["name"] == "abac.cedar")
        .unwrap();
    let text = policies[abac]["text"].as_str().unwrap();
    let start = text.find("@id(\"high-risk-needs-mfa\")").unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    policies[abac]["text"] = json!(format!("{}{}", &text[..start], &text[end..]));
    let (_, changed) = post(
        &s,
        "/admin/studio/api/evaluate",
        json!({"policies": policies, "request": request}),
    )
    .await;
    assert_eq!(changed["edited"]["allowed"], true, "{changed}");
    assert_eq!(changed["live"]["allowed"], false);
    assert_eq!(changed["changed"], true);

    let (_, tests) = post(&s, "/admin/studio/api/test", json!({"policies": policies})).await;
    assert_eq!(tests["valid"], true);
    assert!(
        tests["failed"].as_u64().unwrap() > 0,
        "the seed tests cover that forbid: {tests}"
    );
    let (_, tests) = post(&s, "/admin/studio/api/test", json!({})).await;
    assert_eq!(tests["failed"], 0, "{tests}");
    assert!(tests["passed"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn who_can_matrix_and_audit_records() {
    let s = studio(true).await;
    let (status, m) = post(
        &s,
        "/admin/studio/api/who-can",
        json!({"action": "call_tool"}),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    let roles: Vec<&str> = m["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let tools: Vec<&str> = m["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let at = |role: &str, tool: &str| {
        let i = roles.iter().position(|r| *r == role).unwrap();
        let j = tools.iter().position(|t| *t == tool).unwrap();
        m["cells"][i][j]["outcome"].as_str().unwrap().to_string()
    };
    assert_eq!(at("admin", "run_shell"), "mfa");
    assert_eq!(at("viewer", "run_shell"), "deny");
    assert_eq!(at("(no role)", "run_shell"), "deny");

    // No file yet: an empty list. Then one denied record, listed and explained.
    let (_, list) = call(
        &s,
        "GET",
        "/admin/studio/api/audit?filter=denied",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(list["records"], json!([]));
    let record = json!({"request_id": "r-1", "seq": 1, "timestamp": "2026-01-06T10:00:00.100Z",
        "duration_ms": 100.0, "method": "POST", "path": "/mcp", "route": "mcp", "status": 403,
        "client_ip": "127.0.0.1", "action": "Action::\"call_tool\"", "resource": "Tool::\"run_shell\"",
        "principal": {"type": "User", "id": "User::\"https://idp|vic\"", "roles": ["viewer"],
                      "auth_method": "jwt"},
        "decision": {"allowed": false, "mode": "enforce", "policies": [], "policy_set": "main",
                     "policy_set_hash": "x"}});
    let allowed =
        json!({"request_id": "r-2", "seq": 2, "decision": {"allowed": true, "mode": "enforce"}});
    std::fs::write(&s.audit, format!("{record}\n{allowed}\n")).unwrap();
    let (_, list) = call(
        &s,
        "GET",
        "/admin/studio/api/audit?filter=denied",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(list["records"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["records"][0]["line"], 1);
    let (_, all) = call(
        &s,
        "GET",
        "/admin/studio/api/audit?filter=all",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(all["records"][0]["request_id"], "r-2", "newest first");

    let (status, e) = post(
        &s,
        "/admin/studio/api/explain-audit",
        json!({"line": 1, "request_id": "r-1"}),
    )
    .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["live"]["allowed"], false);
    assert_eq!(e["audit"]["request_id"], "r-1");
    assert_eq!(e["request"]["action"], "call_tool");
    let (status, e) = post(
        &s,
        "/admin/studio/api/explain-audit",
        json!({"line": 1, "request_id": "r-9"}),
    )
    .await;
    assert_eq!(
        (status, code(&e)),
        (400, "INVALID_REQUEST"),
        "the line holds another record"
    );
}
