//! A whole run with the OpenAI-compatible model against a local endpoint that streams real
//! chat-completions chunks: the model asks for a tool (arguments split over several deltas), the
//! orchestrator runs it and sends the result back, the model answers in streamed text. Each
//! model call is a GenAI client span with usage, carries the run's `traceparent`, and lands in
//! the `gen_ai_*` histograms.

mod support;

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

/// The usage chunk `stream_options.include_usage` asks for: no choices.
fn usage(input: u64, output: u64) -> String {
    let c = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
                   "model": "fake-1-0613", "choices": [],
                   "usage": {"prompt_tokens": input, "completion_tokens": output,
                             "total_tokens": input + output}});
    format!("data: {c}\n\n")
}

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
            usage(23, 5),
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
            usage(11, 7),
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
            timeout: std::time::Duration::from_millis(10_000),
        },
        identity: IdentityConfig {
            require_assertion: false,
            ..IdentityConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
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
    let resp = http()
        .post(format!("http://{addr}/agent"))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_calls_are_genai_spans_with_usage_metrics_and_traceparent() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let (base_url, seen) = fake_endpoint().await;
    let (collector, spans) = support::otlp_receiver().await;
    let signer = support::Signer::new();
    let cfg = OrchestratorConfig {
        model: ModelConfig {
            provider: ModelProvider::Openai,
            base_url: base_url.clone(),
            model: "fake-1".into(),
            api_key_env: "PALISADE_TEST_FAKE_OPENAI_KEY_UNSET".into(),
            ..ModelConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
        tracing: palisade_orchestrator::otel::TracingConfig {
            otlp_endpoint: Some(collector),
            export_interval: std::time::Duration::from_millis(50),
            ..Default::default()
        },
        ..OrchestratorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let orchestrator = Orchestrator::new(cfg).with_jwks(signer.jwks.clone());
    tokio::spawn(orchestrator.serve(listener, std::future::pending()));

    let input = json!({"threadId": "t", "runId": "r-genai",
        "messages": [{"id": "u1", "role": "user", "content": "what is 2+3*4?"}]});
    let http = http();
    let body = http
        .post(format!("http://{addr}/agent"))
        .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
        .header(
            "x-palisade-assertion",
            signer.assertion("User::\"idp|alice\"", "acme"),
        )
        .json(&input)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("RUN_FINISHED"), "{body}");

    // Two chat spans (tool call, then the answer) plus the run and the tool call.
    let got = support::spans_at_least(&spans, 4).await;
    let run = got
        .iter()
        .find(|s| s.name == "agent.run")
        .expect("run span");
    let chats: Vec<_> = got.iter().filter(|s| s.name == "chat fake-1").collect();
    assert_eq!(
        chats.len(),
        2,
        "{:?}",
        got.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let port = base_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut chats = chats;
    chats.sort_by_key(|s| s.start_time_unix_nano);
    for (chat, (input, output, finish)) in
        chats.iter().zip([(11, 7, "tool_calls"), (23, 5, "stop")])
    {
        use support::{attr_int, attr_str, attr_strings};
        assert_eq!(chat.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(support::hex(&chat.trace_id), TRACE);
        assert_eq!(chat.parent_span_id, run.span_id, "a child of the run");
        assert_eq!(
            attr_str(chat, "gen_ai.operation.name").as_deref(),
            Some("chat")
        );
        assert_eq!(
            attr_str(chat, "gen_ai.provider.name").as_deref(),
            Some("openai")
        );
        assert_eq!(
            attr_str(chat, "gen_ai.request.model").as_deref(),
            Some("fake-1")
        );
        assert_eq!(
            attr_str(chat, "gen_ai.response.model").as_deref(),
            Some("fake-1-0613")
        );
        assert_eq!(
            attr_str(chat, "gen_ai.response.id").as_deref(),
            Some("chatcmpl-9")
        );
        assert_eq!(attr_int(chat, "gen_ai.usage.input_tokens"), Some(input));
        assert_eq!(attr_int(chat, "gen_ai.usage.output_tokens"), Some(output));
        assert_eq!(
            attr_strings(chat, "gen_ai.response.finish_reasons"),
            Some(vec![finish.to_owned()])
        );
        assert_eq!(
            attr_str(chat, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            attr_int(chat, "server.port"),
            Some(port.parse::<i64>().unwrap())
        );
        assert_eq!(
            attr_str(chat, "palisade.principal").as_deref(),
            Some("User::\"idp|alice\"")
        );
        assert_eq!(attr_str(chat, "palisade.tenant").as_deref(), Some("acme"));
        assert_eq!(attr_str(chat, "error.type"), None);
    }

    // The model saw each call's own span as the parent, in the run's trace.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let mut parents: Vec<String> = seen
        .iter()
        .map(|(headers, body)| {
            assert_eq!(body["stream_options"], json!({"include_usage": true}));
            let tp = headers["traceparent"].to_str().unwrap().to_owned();
            assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
            tp.split('-').nth(2).unwrap().to_owned()
        })
        .collect();
    let mut span_ids: Vec<String> = chats.iter().map(|s| support::hex(&s.span_id)).collect();
    parents.sort();
    span_ids.sort();
    assert_eq!(parents, span_ids, "traceparent names the chat span");

    // Token histograms: one observation per call and token type, right sums.
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = |kind: &str| {
        format!(
            "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",\
             gen_ai_request_model=\"fake-1\",gen_ai_token_type=\"{kind}\",palisade_tenant=\"acme\""
        )
    };
    for (kind, sum) in [("input", 34), ("output", 12)] {
        let l = labels(kind);
        assert!(
            metrics.contains(&format!("gen_ai_client_token_usage_sum{{{l}}} {sum}\n")),
            "{kind} sum {sum}:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!("gen_ai_client_token_usage_count{{{l}}} 2\n")),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains(
            "gen_ai_client_operation_duration_seconds_count{error_type=\"\",\
             gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",\
             gen_ai_request_model=\"fake-1\",palisade_tenant=\"acme\"} 2\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("gen_ai_client_token_usage_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"fake-1\",gen_ai_token_type=\"input\",palisade_tenant=\"acme\",le=\"16\"} 1\n"),
        "semconv buckets: {metrics}"
    );
    assert!(!metrics.contains("alice"), "the principal is never a label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_model_call_records_its_error_type() {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                r#"{"error":{"message":"slow down"}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let (collector, spans) = support::otlp_receiver().await;
    let cfg = OrchestratorConfig {
        model: ModelConfig {
            provider: ModelProvider::Openai,
            base_url: format!("http://{upstream}/v1"),
            model: "fake-1".into(),
            api_key_env: "PALISADE_TEST_FAKE_OPENAI_KEY_UNSET".into(),
            ..ModelConfig::default()
        },
        identity: IdentityConfig {
            require_assertion: false,
            ..IdentityConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
        tracing: palisade_orchestrator::otel::TracingConfig {
            otlp_endpoint: Some(collector),
            export_interval: std::time::Duration::from_millis(50),
            ..Default::default()
        },
        ..OrchestratorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Orchestrator::new(cfg).serve(listener, std::future::pending()));

    let body = client_run(addr, "hi").await;
    assert!(
        body.contains("RUN_ERROR") && body.contains("MODEL_ERROR"),
        "{body}"
    );
    let got = support::spans_at_least(&spans, 2).await;
    let chat = got
        .iter()
        .find(|s| s.name == "chat fake-1")
        .expect("chat span");
    assert_eq!(
        support::attr_str(chat, "error.type").as_deref(),
        Some("429")
    );
    assert_eq!(chat.status.as_ref().unwrap().code, 2, "STATUS_CODE_ERROR");
    assert_eq!(support::attr_int(chat, "gen_ai.usage.input_tokens"), None);

    let metrics = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "gen_ai_client_operation_duration_seconds_count{error_type=\"429\",\
             gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",\
             gen_ai_request_model=\"fake-1\",palisade_tenant=\"\"} 1\n"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("gen_ai_client_token_usage_count{"),
        "no usage reported, no tokens recorded: {metrics}"
    );
}

/// A client for the orchestrator under test (plain HTTP; rustls configured as the binaries do).
fn http() -> reqwest::Client {
    palisade_orchestrator::tls::Trust::default()
        .client_builder()
        .build()
        .unwrap()
}
