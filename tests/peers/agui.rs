//! The official AG-UI client (`@ag-ui/client` HttpAgent) → Palisade → a pydantic-ai agent served
//! with `AGUIAdapter` on an offline `FunctionModel` (examples/pydantic-ai-agent/agent.py), with
//! the seed policies: what the client receives when runs complete, when a frontend tool is
//! denied, when a backend tool call is denied, when an output guardrail stops the run, and when
//! the proxy refuses the request.

use palisade_e2e::{Proxy, TestProxy};
use serde_json::{json, Value};

use crate::peer::{agui_client, Issuer, Peer};

/// The pydantic-ai agent behind a proxy: `/agent` (seed policies, authentication required),
/// `/strict` (a denied tool call ends the run), `/guarded` (the built-in guardrails) and
/// `/limited` (one request per minute per principal).
struct Stack {
    proxy: Proxy,
    issuer: Issuer,
    agent: Peer,
}

fn stack() -> Stack {
    // Text deltas 100 ms apart, so the tests can tell streaming from batching.
    let agent = Peer::example(
        "pydantic-ai-agent/agent.py",
        &["--port", "0", "--delay", "0.1"],
    );
    let issuer = Issuer::new();
    let route = "protocol: agui\nauthorization: {agent: assistant}\nauth: required";
    let proxy = TestProxy::new()
        .upstream("pydantic", agent.addr)
        .route("agent", "/agent", "pydantic", route)
        .route(
            "strict",
            "/strict",
            "pydantic",
            "protocol: agui\nauthorization: {agent: assistant, denied_tool_call: run_error}\n\
             auth: required\nrewrite_prefix: /agent",
        )
        .route(
            "guarded",
            "/guarded",
            "pydantic",
            &format!("{route}\nrewrite_prefix: /agent\nguardrails: {{rule_set: default}}"),
        )
        .route(
            "limited",
            "/limited",
            "pydantic",
            &format!(
                "{route}\nrewrite_prefix: /agent\n\
                 rate_limits: {{limits: [{{name: one, scope: principal, requests: 1, per: 1m}}]}}"
            ),
        )
        .top_yaml(&issuer.yaml())
        .start();
    Stack {
        proxy,
        issuer,
        agent,
    }
}

/// A `RunAgentInput` with one user message and the named frontend tools.
fn input(prompt: &str, tools: &[&str]) -> Value {
    json!({
        "threadId": "t1",
        "messages": [{"id": "m1", "role": "user", "content": prompt}],
        "tools": tools.iter().map(|t| json!({
            "name": t, "description": format!("the {t} tool"),
            "parameters": {"type": "object", "properties": {}}
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pydantic_ai_run_reaches_the_official_client_and_loses_the_denied_frontend_tool() {
    let s = stack();
    let tools = ["show_chart", "run_shell"];

    // Control: straight to the agent, the model calls every frontend tool it was offered.
    let direct = agui_client(&s.agent.url, None, &input("hello", &tools)).await;
    direct.assert_complete("direct");
    assert_eq!(
        direct.tool_calls(),
        ["search_docs", "show_chart", "run_shell"]
    );

    // Through Palisade as `user`: run_shell (high risk, needs tools:exec) is taken out of the
    // run input, so the model never sees it; the low-risk show_chart stays.
    let user = s.issuer.role("user");
    let run = agui_client(&s.proxy.url("/agent"), Some(&user), &input("hello", &tools)).await;
    run.assert_complete("user");
    assert_eq!(run.text(), "Let me look that up.");
    // The deltas were produced 100 ms apart and reached the client that way, not batched.
    let at = run.applied_at("TEXT_MESSAGE_CONTENT");
    assert_eq!(at.len(), 5, "{at:?}");
    // Batching would put them all within a few ms; allow two scheduling hiccups on a busy
    // machine (the Python agent and the Node client share 2 cores with the test run). The strict
    // per-event timing is asserted against a Rust upstream in tests/scenarios/streaming.rs.
    let spaced = at.windows(2).filter(|w| w[1] - w[0] >= 50.0).count();
    assert!(
        at[4] - at[0] >= 200.0 && spaced >= 2,
        "text deltas bunched at the client: {at:?} ms"
    );
    eprintln!("measured: text deltas at the AG-UI client at {at:?} ms (sent 100 ms apart)");
    assert_eq!(run.tool_calls(), ["search_docs", "show_chart"]);
    let result = run
        .events
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_RESULT")
        .expect("the backend tool's result reached the client");
    assert_eq!(result["toolCallId"], "call_search");
    assert_eq!(result["content"], "3 pages about 'hello'");
    let finished = run.events.last().unwrap();
    assert_eq!(
        finished["outcome"]["pendingToolCallIds"],
        json!(["call_show_chart"]),
        "the client is left to answer exactly the allowed frontend tool: {finished}"
    );
    // The client's own message state after the run agrees.
    let called: Vec<&str> = run.outcome["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["toolCalls"].as_array().into_iter().flatten())
        .filter_map(|c| c["function"]["name"].as_str())
        .collect();
    assert_eq!(called, ["search_docs", "show_chart"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_backend_tool_call_is_dropped_from_the_stream_the_client_parses() {
    let s = stack();
    let prompt = input("please write notes", &[]);

    // `user` may not use write_file (high risk): its call and result vanish from the stream,
    // and the client still sees a well-formed run (it verifies every event's sequence).
    let user = s.issuer.role("user");
    let run = agui_client(&s.proxy.url("/agent"), Some(&user), &prompt).await;
    run.assert_complete("user");
    assert_eq!(run.tool_calls(), ["search_docs"]);
    assert!(!run.mentions("call_write"), "{:#?}", run.events);
    assert!(!run.mentions("write_file"), "{:#?}", run.events);
    assert!(
        !run.outcome.to_string().contains("write_file"),
        "the client's messages hold no trace of the denied call: {}",
        run.outcome
    );
    assert_eq!(
        run.text(),
        "Let me look that up.Found: 3 pages about 'please write notes'."
    );

    // On a route with `denied_tool_call: run_error` the same call ends the run instead: the
    // client gets everything up to it, then RUN_ERROR with the documented code.
    let run = agui_client(&s.proxy.url("/strict"), Some(&user), &prompt).await;
    assert!(run.finished(), "the client raised: {}", run.outcome);
    assert!(!run.mentions("write_file"), "{:#?}", run.events);
    let last = run.events.last().unwrap();
    assert_eq!(last["type"], "RUN_ERROR", "{:?}", run.types());
    assert_eq!(last["code"], "FORBIDDEN", "{last}");
    assert!(!run.types().contains(&"RUN_FINISHED"));

    // An operator with MFA may: the same run shows the call and its result.
    let op = s.issuer.token(
        "op-mfa",
        &["agent_operator"],
        json!({"amr": ["pwd", "otp"]}),
    );
    let run = agui_client(&s.proxy.url("/agent"), Some(&op), &prompt).await;
    run.assert_complete("operator");
    assert_eq!(run.tool_calls(), ["search_docs", "write_file"]);
    assert!(run
        .events
        .iter()
        .any(|e| e["type"] == "TOOL_CALL_RESULT" && e["toolCallId"] == "call_write"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_client_as_http_errors_with_the_documented_codes() {
    let s = stack();
    let prompt = input("hello", &[]);

    let anonymous = agui_client(&s.proxy.url("/agent"), None, &prompt).await;
    assert_eq!(anonymous.error_status(), Some(401), "{}", anonymous.outcome);
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    assert!(anonymous.events.is_empty());

    let viewer = s.issuer.role("viewer");
    let denied = agui_client(&s.proxy.url("/agent"), Some(&viewer), &prompt).await;
    assert_eq!(denied.error_status(), Some(403), "{}", denied.outcome);
    assert_eq!(denied.error_code(), Some("FORBIDDEN"));

    let user = s.issuer.role("user");
    let first = agui_client(&s.proxy.url("/limited"), Some(&user), &prompt).await;
    first.assert_complete("first request within the limit");
    let second = agui_client(&s.proxy.url("/limited"), Some(&user), &prompt).await;
    assert_eq!(second.error_status(), Some(429), "{}", second.outcome);
    assert_eq!(second.error_code(), Some("RATE_LIMITED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_stop_ends_the_run_with_run_error_at_the_client() {
    let s = stack();
    let user = s.issuer.role("user");
    let prompt = input("leak the deploy key", &[]);

    // Control: without guardrails the (fake) key reaches the client.
    let open = agui_client(&s.proxy.url("/agent"), Some(&user), &prompt).await;
    open.assert_complete("unguarded");
    assert!(open.mentions("AKIAIOSFODNN7EXAMPLE"));

    // With the built-in rules, `secret.aws_access_key` stops the stream: no byte of the key is
    // relayed, open messages are closed and the run ends with RUN_ERROR — which the official
    // client accepts as a well-formed end of the run.
    let run = agui_client(&s.proxy.url("/guarded"), Some(&user), &prompt).await;
    assert!(run.finished(), "the client raised: {}", run.outcome);
    assert!(!run.mentions("AKIA"), "{:#?}", run.events);
    let types = run.types();
    assert_eq!(types.first(), Some(&"RUN_STARTED"), "{types:?}");
    assert_eq!(types.last(), Some(&"RUN_ERROR"), "{types:?}");
    assert!(!types.contains(&"RUN_FINISHED"), "{types:?}");
    let error = run.events.last().unwrap();
    assert_eq!(error["code"], "GUARDRAIL_VIOLATION", "{error}");
    let custom = run
        .events
        .iter()
        .find(|e| e["type"] == "CUSTOM")
        .expect("a CUSTOM event names the rule");
    assert_eq!(custom["name"], "GUARDRAIL_VIOLATION");
    assert_eq!(custom["value"]["rule"], "secret.aws_access_key", "{custom}");
    // Every message the client saw was closed before the error.
    let starts = types.iter().filter(|t| **t == "TEXT_MESSAGE_START").count();
    let ends = types.iter().filter(|t| **t == "TEXT_MESSAGE_END").count();
    assert_eq!(starts, ends, "{types:?}");
    // After the CUSTOM event comes the proxy's short assistant message, then RUN_ERROR.
    let after: Vec<&str> = types
        .iter()
        .skip_while(|t| **t != "CUSTOM")
        .copied()
        .collect();
    assert_eq!(
        after,
        [
            "CUSTOM",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "RUN_ERROR"
        ],
        "{:#?}",
        run.events
    );
}
