//! One proxy, approvals in process: approve, deny (with a reason), time out, the caps, a forbid
//! that wins, who may decide, the CLI, an A2A send.

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    approval_events, audit_until, call, decide, pending, stack, tool_call, wait_pending,
    ADMIN_TOKEN,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_goes_through_once_and_every_step_is_audited() {
    let s = stack("  timeout: 30s\n").await;
    let ops = s.issuer.token("alice", &["ops"], json!({}));
    let ops2 = s.issuer.token("carol", &["ops"], json!({}));
    let boss = s.issuer.token("boss", &["approver"], json!({}));

    // A low-risk tool is not held.
    let (status, _) = call(
        &s.proxy,
        "/mcp",
        &ops,
        &tool_call(1, "search_docs", json!({})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(pending(&s.proxy).await.is_empty());

    let proxy_url = s.proxy.url("/mcp");
    let body = tool_call(7, "run_shell", json!({"cmd": "uptime"}));
    let held = {
        let (ops, body) = (ops.clone(), body.clone());
        tokio::spawn(async move {
            let resp = palisade_e2e::client()
                .post(proxy_url)
                .bearer_auth(ops)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    let list = wait_pending(&s.proxy, 1).await;
    let a = &list[0];
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["status"], "pending");
    assert_eq!(a["action"], "call_tool");
    assert_eq!(a["resource"], "Tool::\"run_shell\"");
    assert!(
        a["principal"].as_str().unwrap().ends_with("|alice\""),
        "{a}"
    );
    assert_eq!(a["arguments_digest"].as_str().unwrap().len(), 64);
    // Nothing reached the upstream while the call is held.
    assert_eq!(s.echo.requests().len(), 1);

    // Who may not decide: no approver credential, the requester, a principal without `approve`.
    let (status, refused) = decide(&s.proxy, &id, "approve", None, json!({})).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, refused) = decide(&s.proxy, &id, "approve", Some(&ops), json!({})).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot decide"));
    let (status, _) = decide(&s.proxy, &id, "approve", Some(&ops2), json!({})).await;
    assert_eq!(status, 403);
    // Without the admin token, nothing.
    let resp = palisade_e2e::client()
        .post(s.proxy.admin_url(&format!("/admin/approvals/{id}/approve")))
        .header("x-palisade-approver", format!("Bearer {boss}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(pending(&s.proxy).await.len(), 1, "still pending");

    let (status, decided) = decide(
        &s.proxy,
        &id,
        "approve",
        Some(&boss),
        json!({"reason": "maintenance window"}),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    let (status, text) = held.await.unwrap();
    assert_eq!(status, 200, "{text}");
    let forwarded = s.echo.requests();
    assert_eq!(forwarded.len(), 2);
    let sent: Value = serde_json::from_slice(&forwarded[1].body).unwrap();
    assert_eq!(sent, body, "the approved call is what went upstream");
    // Deciding twice: 409.
    let (status, again) = decide(&s.proxy, &id, "deny", Some(&boss), json!({})).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("APPROVAL_SETTLED"))
    );
    assert!(pending(&s.proxy).await.is_empty());

    // Each step is in the audit trail, the decision with the approver's identity.
    let records = audit_until(&s.audit, |r| approval_events(r).len() >= 3).await;
    let events = approval_events(&records);
    assert_eq!(events[0], ("requested".to_string(), None));
    assert_eq!(events[1].0, "approved");
    assert!(
        events[1].1.as_deref().unwrap().ends_with("|boss\""),
        "{events:?}"
    );
    let held_record = records
        .iter()
        .find(|r| r["approval"]["outcome"] == "approved" && r["path"] == "/mcp")
        .expect("the held request's record");
    assert_eq!(held_record["status"], 200);
    assert_eq!(held_record["approval"]["id"], id.as_str());
    assert_eq!(held_record["approval"]["reason"], "maintenance window");

    // The grant admitted one call: the same call again waits for a new approval.
    let again = {
        let (url, ops, body) = (s.proxy.url("/mcp"), ops.clone(), body.clone());
        tokio::spawn(async move {
            palisade_e2e::client()
                .post(url)
                .bearer_auth(ops)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let list = wait_pending(&s.proxy, 1).await;
    assert_ne!(list[0]["id"], id.as_str());
    let second = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        decide(&s.proxy, &second, "deny", Some(&boss), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(again.await.unwrap(), 200, "a JSON-RPC denial answers 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_refused_with_the_reason_and_a_forbid_wins() {
    let s = stack("").await;
    let ops = s.issuer.token("alice", &["ops"], json!({}));
    let boss = s.issuer.token("boss", &["approver"], json!({}));

    // A forbid wins over the approval rule: refused at once, nobody asked.
    let (status, body) = call(&s.proxy, "/mcp", &ops, &tool_call(3, "nuke", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["data"]["code"], "FORBIDDEN");
    assert!(pending(&s.proxy).await.is_empty());

    let held = {
        let (url, ops) = (s.proxy.url("/mcp"), ops.clone());
        tokio::spawn(async move {
            let resp = palisade_e2e::client()
                .post(url)
                .bearer_auth(ops)
                .json(&tool_call(9, "write_file", json!({"path": "/etc/passwd"})))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    let id = wait_pending(&s.proxy, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = decide(
        &s.proxy,
        &id,
        "deny",
        Some(&boss),
        json!({"reason": "not on prod\u{0}"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32030);
    assert_eq!(body["error"]["data"]["code"], "APPROVAL_DENIED");
    assert_eq!(
        body["error"]["message"],
        "the approver denied this call: not on prod"
    );
    // The upstream saw at most request heads (the proxy connects before the body is read), never
    // a byte of a refused body.
    assert!(
        s.echo.requests().iter().all(|r| r.body.is_empty()),
        "no body went upstream"
    );
    let records = audit_until(&s.audit, |r| {
        approval_events(r)
            .iter()
            .filter(|e| e.0 == "denied")
            .count()
            == 2
    })
    .await;
    let denied = records
        .iter()
        .find(|r| r["path"] == "/mcp" && r["approval"]["outcome"] == "denied")
        .unwrap();
    assert_eq!(denied["error_code"], "APPROVAL_DENIED");
    assert!(denied["approval"]["approver"]
        .as_str()
        .unwrap()
        .ends_with("|boss\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_deciding_is_a_timeout() {
    let s = stack("  timeout: 400ms\n").await;
    let ops = s.issuer.token("alice", &["ops"], json!({}));
    let started = std::time::Instant::now();
    let (status, body) = call(
        &s.proxy,
        "/mcp",
        &ops,
        &tool_call(4, "run_shell", json!({})),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(status, 200);
    assert_eq!(body["id"], 4);
    assert_eq!(body["error"]["data"]["code"], "APPROVAL_TIMEOUT");
    assert!(pending(&s.proxy).await.is_empty());
    let records = audit_until(&s.audit, |r| {
        approval_events(r).iter().any(|e| e.0 == "timeout")
    })
    .await;
    let timed_out = records
        .iter()
        .find(|r| r["approval"]["outcome"] == "timeout")
        .unwrap();
    assert_eq!(timed_out["error_code"], "APPROVAL_TIMEOUT");
    assert_eq!(timed_out["approval"]["approver"], Value::Null);
}

/// Holds `tool` for `token` in the background; the task ends with the HTTP status.
fn hold(
    s: &super::Stack,
    token: &str,
    id: u64,
    tool: &str,
) -> tokio::task::JoinHandle<reqwest::StatusCode> {
    let (url, token, body) = (
        s.proxy.url("/mcp"),
        token.to_string(),
        tool_call(id, tool, json!({})),
    );
    tokio::spawn(async move {
        palisade_e2e::client()
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_refuse_calls_beyond_them() {
    let s = stack("  max_pending: 2\n  max_pending_per_principal: 1\n").await;
    let boss = s.issuer.token("boss", &["approver"], json!({}));
    let alice = s.issuer.token("alice", &["ops"], json!({}));
    let first = hold(&s, &alice, 5, "run_shell");
    wait_pending(&s.proxy, 1).await;
    // One pending per principal: a second held call of the same principal is refused at once.
    let (status, body) = call(
        &s.proxy,
        "/mcp",
        &alice,
        &tool_call(6, "write_file", json!({})),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["id"], 6);
    assert_eq!(body["error"]["data"]["code"], "APPROVAL_QUEUE_FULL");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("principal"));
    // Another principal still may, up to the proxy's cap.
    let dave = s.issuer.token("dave", &["ops"], json!({}));
    let second = hold(&s, &dave, 8, "run_shell");
    let list = wait_pending(&s.proxy, 2).await;
    let erin = s.issuer.token("erin", &["ops"], json!({}));
    let (status, body) = call(
        &s.proxy,
        "/mcp",
        &erin,
        &tool_call(9, "run_shell", json!({})),
    )
    .await;
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("proxy"));
    for a in &list {
        let id = a["id"].as_str().unwrap();
        assert_eq!(
            decide(&s.proxy, id, "deny", Some(&boss), json!({})).await.0,
            200
        );
    }
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    assert!(s.echo.requests().iter().all(|r| r.body.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_approves_an_a2a_send() {
    let s = stack("").await;
    let ops = s.issuer.token("alice", &["ops"], json!({}));
    let boss = s.issuer.token("boss", &["approver"], json!({}));
    let send = json!({"jsonrpc": "2.0", "id": "m-1", "method": "message/send",
        "params": {"message": {"role": "user", "parts": [{"kind": "text", "text": "deploy"}],
                   "messageId": "u1"}}});
    // Reading a task is permitted under the same annotated policy: it is not a send, not held.
    let get = json!({"jsonrpc": "2.0", "id": "g-1", "method": "tasks/get", "params": {"id": "t"}});
    assert_eq!(call(&s.proxy, "/a2a", &ops, &get).await.0, 200);
    let held = {
        let (url, ops, send) = (s.proxy.url("/a2a"), ops.clone(), send.clone());
        tokio::spawn(async move {
            palisade_e2e::client()
                .post(url)
                .bearer_auth(ops)
                .json(&send)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let list = wait_pending(&s.proxy, 1).await;
    assert_eq!(list[0]["action"], "a2a_send");
    assert_eq!(list[0]["resource"], "Agent::\"assistant\"");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let admin = s.proxy.running.admin.to_string();
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || palisade_proxy::cli::main_from(args))
    };
    let args = |verb: &str, extra: &[&str]| {
        let mut v: Vec<String> = ["palisade", "approvals", verb]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend([
            "--admin".into(),
            admin.clone(),
            "--token".into(),
            ADMIN_TOKEN.into(),
        ]);
        v
    };
    assert_eq!(
        cli(args("list", &[])).await.unwrap(),
        std::process::ExitCode::SUCCESS
    );
    // The requester's own token is refused; the approver's is taken.
    assert_eq!(
        cli(args("approve", &[&id, "--approver-token", &ops]))
            .await
            .unwrap(),
        std::process::ExitCode::FAILURE
    );
    assert_eq!(
        cli(args(
            "approve",
            &[&id, "--approver-token", &boss, "--reason", "ok"]
        ))
        .await
        .unwrap(),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(held.await.unwrap(), 200);
    let forwarded = s.echo.requests();
    let sent: Value = serde_json::from_slice(&forwarded.last().unwrap().body).unwrap();
    assert_eq!(sent["method"], "message/send");
}
