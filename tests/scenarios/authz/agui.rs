//! AG-UI tool authorization: the run request loses the tools the caller may not use (per role
//! and per ABAC rule, business hours included), and the stream drops denied tool calls — or ends
//! the run with `RUN_ERROR` where the route says so.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{events, post, run_input, seed_stack};

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
    let issuer = &s.issuer;
    let cases: [(&str, String, &[&str]); 6] = [
        ("user", issuer.role("user"), &["search_docs"]),
        (
            "developer",
            issuer.role("developer"),
            &["read_file", "search_docs"],
        ),
        // ABAC: tenant isolation lets acme's user use acme's tool.
        (
            "user of acme",
            issuer.token("u-acme", &["user"], json!({"tenant": "acme"})),
            &["acme_crm_lookup", "search_docs"],
        ),
        // ABAC: high-risk tools need MFA.
        (
            "operator without MFA",
            issuer.role("agent_operator"),
            &["read_file", "search_docs"],
        ),
        (
            "operator with MFA",
            issuer.token(
                "op-mfa",
                &["agent_operator"],
                json!({"amr": ["pwd", "otp"]}),
            ),
            &["read_file", "search_docs", "write_file"],
        ),
        // ABAC: run_shell requires the tools:exec scope (and, being high risk, MFA).
        (
            "operator with MFA and tools:exec",
            issuer.token(
                "op-exec",
                &["agent_operator"],
                json!({"amr": ["otp"], "scope": "openid tools:exec"}),
            ),
            &["read_file", "run_shell", "search_docs", "write_file"],
        ),
    ];
    for (who, token, expected) in cases {
        let (status, body) = post(&s.proxy, "/agent", &token, &run_input(&offered)).await;
        assert_eq!(status, 200, "{who}: {body}");
        let runs = s.agent.take_requests();
        assert_eq!(runs.len(), 1, "{who}: the agent got the run");
        let seen = runs[0].json();
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
            "{who}: the rest of the input is untouched"
        );
    }
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
    let seen = s.agent.bodies().pop().unwrap();
    let kept = seen["tools"].as_array().unwrap().len() == 1;
    // A run straddling 08:00 or 18:00 UTC could flip between the two reads of the clock.
    assert_eq!(
        kept, open,
        "hour {hour} weekday {weekday}: send_email kept = {kept}"
    );
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
