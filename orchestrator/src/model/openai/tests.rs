//! The client against a local endpoint streaming real chat-completions chunks.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};

use super::OpenAiModel;
use crate::config::{ModelConfig, ModelProvider};
use crate::model::{
    ChatMessage, ChatRole, Model, ModelChunk, ModelError, ToolSpec, TurnContext, TurnReport,
};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn cx() -> TurnContext {
    TurnContext::default()
}

/// Chunks as api.openai.com streams them (trimmed ids), split mid-JSON to exercise framing.
fn tool_call_stream() -> Vec<String> {
    let head = r#""id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x""#;
    let chunks = [
        json!({"index":0,"delta":{"role":"assistant","content":"Let me check."},"finish_reason":null}),
        json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}),
        json!({"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"calculator","arguments":""}}]},"finish_reason":null}),
        json!({"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"expre"}}]},"finish_reason":null}),
        json!({"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"ssion\":\"2+3\"}"}}]},"finish_reason":null}),
        json!({"index":0,"delta":{},"finish_reason":"tool_calls"}),
    ];
    let mut body = String::new();
    for c in chunks {
        body.push_str(&format!("data: {{{head},\"choices\":[{c}]}}\n\n"));
    }
    // The usage chunk `stream_options.include_usage` asks for: no choices.
    body.push_str(&format!(
        "data: {{{head},\"choices\":[],\"usage\":{{\"prompt_tokens\":57,\"completion_tokens\":21,\"total_tokens\":78}}}}\n\n"
    ));
    body.push_str("data: [DONE]\n\n");
    // Split into uneven pieces, as TCP might.
    body.as_bytes()
        .chunks(37)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn endpoint(status: u16, pieces: Vec<String>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let (s, pieces) = (s.clone(), pieces.clone());
            async move {
                s.lock().unwrap().push((headers, body));
                let stream = futures::stream::iter(
                    pieces
                        .into_iter()
                        .map(|p| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(p))),
                );
                Response::builder()
                    .status(status)
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

fn model(base_url: &str, key_env: &str) -> OpenAiModel {
    OpenAiModel::from_config(
        &ModelConfig {
            provider: ModelProvider::Openai,
            base_url: base_url.into(),
            model: "gpt-x".into(),
            api_key_env: key_env.into(),
            timeout: std::time::Duration::from_millis(10_000),
        },
        &crate::tls::Trust::default(),
    )
}

#[tokio::test]
async fn streams_text_and_assembles_tool_call_deltas() {
    let (url, seen) = endpoint(200, tool_call_stream()).await;
    std::env::set_var("PALISADE_TEST_OPENAI_KEY_1", "sk-test-123");
    let m = model(&url, "PALISADE_TEST_OPENAI_KEY_1");
    let tools = [ToolSpec {
        name: "get_time".into(),
        description: "now".into(),
        parameters: json!({"type": "object", "properties": {}}),
    }];
    let conv = [
        ChatMessage::text(ChatRole::System, "sys"),
        ChatMessage::text(ChatRole::User, "what time is it"),
    ];
    let chunks: Vec<_> = m
        .turn(&conv, &tools, &TurnContext::default())
        .await
        .unwrap()
        .collect()
        .await;
    let chunks: Vec<ModelChunk> = chunks.into_iter().map(Result::unwrap).collect();
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert_eq!(
        chunks[3],
        ModelChunk::Report(TurnReport {
            response_id: Some("chatcmpl-1".into()),
            response_model: Some("gpt-x".into()),
            finish_reasons: vec!["tool_calls".into()],
            input_tokens: Some(57),
            output_tokens: Some(21),
        }),
        "the last chunk reports usage"
    );
    assert_eq!(chunks[0], ModelChunk::Text("Let me check.".into()));
    let ModelChunk::ToolCall(a) = &chunks[1] else {
        panic!("{chunks:?}")
    };
    assert_eq!((a.id.as_str(), a.name.as_str()), ("call_a", "get_time"));
    assert_eq!(a.arguments, "{}");
    let ModelChunk::ToolCall(b) = &chunks[2] else {
        panic!("{chunks:?}")
    };
    assert_eq!((b.id.as_str(), b.name.as_str()), ("call_b", "calculator"));
    assert_eq!(b.arguments, r#"{"expression":"2+3"}"#);

    let (headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["authorization"], "Bearer sk-test-123");
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert!(
        headers.get("traceparent").is_none(),
        "no trace context, no header"
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "what time is it"})
    );
    assert_eq!(body["tools"][0]["function"]["name"], "get_time");
    assert_eq!(body["tools"][0]["type"], "function");
}

#[tokio::test]
async fn tool_results_go_back_in_chat_completions_shape() {
    let (url, seen) = endpoint(
        200,
        vec!["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n".into()],
    )
    .await;
    let m = model(&url, "PALISADE_TEST_OPENAI_KEY_UNSET");
    let conv = [
        ChatMessage::text(ChatRole::User, "hi"),
        ChatMessage {
            tool_calls: vec![crate::model::ToolCallRequest {
                id: "c1".into(),
                name: "get_time".into(),
                arguments: "{}".into(),
            }],
            ..ChatMessage::text(ChatRole::Assistant, "")
        },
        ChatMessage::tool_result("c1", "12:00"),
    ];
    let chunks: Vec<_> = m
        .turn(
            &conv,
            &[],
            &TurnContext {
                traceparent: Some(PARENT.into()),
            },
        )
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(*chunks[0].as_ref().unwrap(), ModelChunk::Text("ok".into()));
    let Ok(ModelChunk::Report(report)) = &chunks[1] else {
        panic!("{chunks:?}")
    };
    assert_eq!(report.finish_reasons, ["stop"]);
    assert_eq!((report.input_tokens, report.output_tokens), (None, None));
    let (headers, body) = seen.lock().unwrap()[0].clone();
    assert!(headers.get("authorization").is_none(), "no key, no header");
    assert_eq!(headers["traceparent"], PARENT);
    assert!(body.get("tools").is_none());
    assert_eq!(
        body["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_time"
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "tool", "content": "12:00", "tool_call_id": "c1"})
    );
}

#[tokio::test]
async fn error_status_and_garbage_are_model_errors() {
    let (url, _) = endpoint(429, vec!["{\"error\":{\"message\":\"slow down\"}}".into()]).await;
    let err = model(&url, "X")
        .turn(&[ChatMessage::text(ChatRole::User, "hi")], &[], &cx())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ModelError::Status { status: 429, body } if body.contains("slow down")),
        "{err:?}"
    );
    let (url, _) = endpoint(200, vec!["data: {not json\n\n".into()]).await;
    let chunks: Vec<_> = model(&url, "X")
        .turn(&[ChatMessage::text(ChatRole::User, "hi")], &[], &cx())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(chunks[..], [Err(ModelError::Protocol(_))]),
        "{chunks:?}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = model(&format!("http://{closed}/v1"), "X")
        .turn(&[ChatMessage::text(ChatRole::User, "hi")], &[], &cx())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::Transport(_)), "{err:?}");
}
