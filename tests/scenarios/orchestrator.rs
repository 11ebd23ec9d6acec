//! The bundled orchestrator behind the proxy, as `palisade dev` runs it.

use std::time::Duration;

use palisade_e2e::{client, sse_client, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_streams_through_the_proxy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = palisade_orchestrator::OrchestratorConfig {
        listen: addr,
        word_delay_ms: 5,
    };
    tokio::spawn(palisade_orchestrator::serve(
        listener,
        config,
        std::future::pending(),
    ));
    let proxy = TestProxy::new()
        .upstream("orchestrator", addr)
        .route_matching(
            "agent",
            "path_prefix: /agent, methods: [POST]",
            "orchestrator",
            "protocol: agui",
        )
        .start();
    let input = serde_json::json!({
        "threadId": "t1", "runId": "r1", "state": {}, "tools": [], "context": [], "forwardedProps": {},
        "messages": [{"id": "m1", "role": "user", "content": "hello from behind palisade"}]
    });
    let resp = client()
        .post(proxy.url("/agent"))
        .header("accept", "text/event-stream")
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = sse_client::read(resp, None, Duration::from_secs(10)).await;
    let types = got.types();
    assert_eq!(types.first().unwrap(), "RUN_STARTED");
    assert_eq!(types.last().unwrap(), "RUN_FINISHED");
    let text: String = got
        .json()
        .iter()
        .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT")
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text.trim(), "hello from behind palisade");
}
