//! The official AG-UI client (`@ag-ui/client` HttpAgent) → Palisade → the bundled orchestrator
//! (in-process, offline model, verifying the proxy's signed assertion): plain text, a tool call
//! with its result, a plan's steps and state snapshots, a failing model, and a refused caller —
//! each as the client received and verified it.

use palisade_e2e::orchestrator::Listener;
use palisade_e2e::TestProxy;
use palisade_orchestrator::store::StoreConfig;
use serde_json::{json, Value};

use crate::peer::{agui_client, Issuer};

fn input(prompt: &str) -> Value {
    json!({"threadId": "t1", "messages": [{"id": "m1", "role": "user", "content": prompt}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_streams_text_tools_and_plans_to_the_official_client() {
    let issuer = Issuer::new();
    let listener = Listener::bind().await;
    let proxy = TestProxy::new()
        .upstream("orchestrator", listener.addr)
        .route_matching(
            "agent",
            "path_prefix: /agent, methods: [POST]",
            "orchestrator",
            "protocol: agui\nauth: required",
        )
        .top_yaml(&issuer.yaml())
        .start();
    let mut cfg = listener.config(0, &proxy);
    cfg.store = StoreConfig::sqlite(":memory:");
    listener.serve(cfg);
    let url = proxy.url("/agent");
    let user = issuer.role("user");

    let run = agui_client(&url, Some(&user), &input("hello from the official client")).await;
    run.assert_complete("text");
    assert_eq!(run.text().trim(), "hello from the official client");

    let run = agui_client(&url, Some(&user), &input("use calculator 2+3*4")).await;
    run.assert_complete("tool");
    assert_eq!(run.tool_calls(), ["calculator"]);
    let result = run
        .events
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_RESULT")
        .expect("the tool result reached the client");
    assert_eq!(result["content"], "14");
    assert_eq!(run.text(), "calculator returned: 14");

    // A plan: steps and state snapshots, which the client checks pair up.
    let run = agui_client(
        &url,
        Some(&user),
        &input("plan: use get_time; use calculator 1+1"),
    )
    .await;
    run.assert_complete("plan");
    assert_eq!(run.count("STEP_STARTED"), 2, "{:?}", run.types());
    assert_eq!(run.count("STEP_FINISHED"), 2);
    assert!(run.count("STATE_SNAPSHOT") >= 1);
    assert_eq!(run.tool_calls(), ["get_time", "calculator"]);

    // A failing model ends the run with RUN_ERROR, which the client accepts as the run's end.
    let run = agui_client(&url, Some(&user), &input("fail please")).await;
    assert!(run.finished(), "{}", run.outcome);
    let last = run.events.last().unwrap();
    assert_eq!(last["type"], "RUN_ERROR", "{:?}", run.types());
    assert_eq!(last["code"], "MODEL_ERROR");

    // A viewer may not run agents: refused before the orchestrator is reached.
    let run = agui_client(&url, Some(&issuer.role("viewer")), &input("hello")).await;
    assert_eq!(run.error_status(), Some(403), "{}", run.outcome);
    assert_eq!(run.error_code(), Some("FORBIDDEN"));
}
