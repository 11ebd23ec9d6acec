//! A whole run with the OpenAI-compatible model against a local endpoint that streams real
//! chat-completions chunks: the model asks for a tool (arguments split over several deltas), the
//! orchestrator runs it and sends the result back, the model answers in streamed text.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Json;
use palisade_orchestrator::{
    IdentityConfig, ModelConfig, ModelProvider, Orchestrator, OrchestratorConfig,
};
use serde_json::{json, Value};

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
                   "model": "fake-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// First turn: a `calculator` call; once a tool result is in the conversation: text.
fn answer(body: &Value) -> Vec<String> {
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    if last["role"] == "tool" {
        let result = last["content"].as_str().unwrap();
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "The answer"}), None),
            chunk(json!({"content": format!(" is {result}.")}), None),
            chunk(json!({}), Some("stop")),
            "data: [DONE]\n\n".into(),
        ]
    } else {
        vec![
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_xyz",
                "type": "function", "function": {"name": "calculator", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"expr"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "ession\": \"2+3*4\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            "data: [DONE]\n\n".into(),
        ]
    }
}

async fn fake_endpoint() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let s = s.clone();
            async move {
                let frames = answer(&body);
                s.lock().unwrap().push((headers, body));
                let stream = futures::stream::iter(
                    frames
                        .into_iter()
                        .map(|f| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(f))),
                );
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/v1"), seen)
}

#[tokio::test]
async fn a_tool_run_with_an_openai_compatible_model() {
    let (base_url, seen) = fake_endpoint().await;
    std::env::set_var("PALISADE_TEST_FAKE_OPENAI_KEY", "sk-fake-42");
    let cfg = OrchestratorConfig {
        model: ModelConfig {
            provider: ModelProvider::Openai,
            base_url,
            model: "fake-1".into(),
            api_key_env: "PALISADE_TEST_FAKE_OPENAI_KEY".into(),
            timeout_ms: 10_000,
        },
        identity: IdentityConfig {
            require_assertion: false,
            ..IdentityConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::Sqlite {
            path: ":memory:".into(),
        },
        ..OrchestratorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Orchestrator::new(cfg).serve(listener, std::future::pending()));

    let body = client_run(addr, "what is 2+3*4?").await;
    let events: Vec<Value> = body
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "RUN_STARTED",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "RUN_FINISHED"
        ]
    );
    assert_eq!(events[1]["toolCallId"], "call_xyz");
    assert_eq!(events[1]["toolCallName"], "calculator");
    assert_eq!(events[2]["delta"], r#"{"expression": "2+3*4"}"#);
    assert_eq!(events[4]["content"], "14");
    assert_eq!(events[6]["delta"], "The answer");
    assert_eq!(events[7]["delta"], " is 14.");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "two model turns");
    let (headers, first) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer sk-fake-42");
    assert_eq!(first["stream"], true);
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for t in ["calculator", "get_time", "mock_weather", "submit_plan"] {
        assert!(tools.contains(&t), "{t} offered: {tools:?}");
    }
    let second = seen[1].1["messages"].as_array().unwrap();
    let n = second.len();
    assert_eq!(second[n - 2]["role"], "assistant");
    assert_eq!(second[n - 2]["tool_calls"][0]["id"], "call_xyz");
    assert_eq!(
        second[n - 1],
        json!({"role": "tool", "content": "14", "tool_call_id": "call_xyz"})
    );
}

async fn client_run(addr: std::net::SocketAddr, text: &str) -> String {
    let input = json!({"threadId": "t", "runId": "r-openai",
        "messages": [{"id": "u1", "role": "user", "content": text}]});
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/agent"))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}
