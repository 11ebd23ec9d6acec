//! Unit tests: realistic requests, every event's wire shape, leniency.

use serde_json::{json, Value};

use super::{run_error_frame, Event, Message, MessageContent, Role, RunAgentInput};
use crate::sse::{SseItem, SseParser};

/// A request as an AG-UI HttpAgent client sends it: a system prompt, an earlier tool round trip
/// and a new user turn, with client tools, context and extra fields this crate does not model.
const REALISTIC_INPUT: &str = r#"{
  "threadId": "thread_8f2c",
  "runId": "run_01J9Z",
  "state": {"todos": [{"title": "buy milk", "done": false}]},
  "messages": [
    {"id": "sys-1", "role": "system", "content": "You are a helpful assistant."},
    {"id": "u-1", "role": "user", "content": "What's the weather in Paris?"},
    {"id": "a-1", "role": "assistant", "content": null, "toolCalls": [
      {"id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
    ]},
    {"id": "t-1", "role": "tool", "content": "18°C, sunny", "toolCallId": "call_1"},
    {"id": "a-2", "role": "assistant", "content": "It's 18°C and sunny in Paris."},
    {"id": "u-2", "role": "user", "content": [
      {"type": "text", "text": "And in Lyon?"},
      {"type": "binary", "mimeType": "image/png", "url": "https://example.com/map.png"}
    ], "encryptedContent": "opaque"}
  ],
  "tools": [{
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
  }],
  "context": [{"description": "user timezone", "value": "Europe/Paris"}],
  "forwardedProps": {"locale": "fr-FR"},
  "protocolVersion": "0.1"
}"#;

#[test]
fn parses_a_realistic_run_agent_input() {
    let input: RunAgentInput = serde_json::from_str(REALISTIC_INPUT).unwrap();
    assert_eq!(input.thread_id, "thread_8f2c");
    assert_eq!(input.run_id, "run_01J9Z");
    assert_eq!(input.state["todos"][0]["title"], "buy milk");
    assert_eq!(input.messages.len(), 6);
    let roles: Vec<&str> = input.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    let call = &input.messages[2].tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "call_1");
    assert_eq!(call.call_type, "function");
    assert_eq!(call.function.name, "get_weather");
    assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
    assert_eq!(input.messages[2].content, None);
    assert_eq!(input.messages[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(input.tools[0].name, "get_weather");
    assert_eq!(input.tools[0].parameters["required"][0], "city");
    assert_eq!(input.context[0].value, "Europe/Paris");
    assert_eq!(input.forwarded_props["locale"], "fr-FR");
    // The last user turn is multimodal; its text is still reachable.
    let last = input.last_user_message().unwrap();
    assert_eq!(last.id, "u-2");
    assert_eq!(last.text().as_deref(), Some("And in Lyon?"));
}

#[test]
fn minimal_input_defaults_the_rest() {
    let input: RunAgentInput = serde_json::from_str(r#"{"threadId":"t","runId":"r"}"#).unwrap();
    assert_eq!(input.state, Value::Null);
    assert!(input.messages.is_empty() && input.tools.is_empty() && input.context.is_empty());
    assert_eq!(input.forwarded_props, Value::Null);
    assert!(input.last_user_message().is_none());
}

#[test]
fn input_without_ids_is_rejected() {
    assert!(serde_json::from_str::<RunAgentInput>(r#"{"runId":"r"}"#).is_err());
    assert!(serde_json::from_str::<RunAgentInput>(r#"{"threadId":"t"}"#).is_err());
    assert!(serde_json::from_str::<RunAgentInput>("[]").is_err());
}

#[test]
fn input_round_trips() {
    let input: RunAgentInput = serde_json::from_str(REALISTIC_INPUT).unwrap();
    let again: RunAgentInput =
        serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
    assert_eq!(again, input);
}

#[test]
fn roles_round_trip_including_unknown_ones() {
    for role in [
        "developer",
        "system",
        "assistant",
        "user",
        "tool",
        "activity",
        "reasoning",
        "narrator",
    ] {
        let parsed: Role = serde_json::from_value(json!(role)).unwrap();
        assert_eq!(parsed.as_str(), role);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), json!(role));
    }
    assert_eq!(
        Role::from("narrator".to_owned()),
        Role::Other("narrator".into())
    );
}

#[test]
fn message_text_and_serialization() {
    let m = Message::text_message("m1", Role::User, "hi");
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"id": "m1", "role": "user", "content": "hi"})
    );
    let structured = Message {
        content: Some(MessageContent::Structured(json!({"kind": "plan"}))),
        ..m
    };
    assert_eq!(structured.text(), None);
}

/// Every modelled event with its exact wire JSON.
fn wire_examples() -> Vec<(Event, Value)> {
    let s = String::from;
    vec![
        (
            Event::RunStarted {
                thread_id: s("t"),
                run_id: s("r"),
                parent_run_id: None,
            },
            json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
        ),
        (
            Event::RunFinished {
                thread_id: s("t"),
                run_id: s("r"),
                result: Some(json!({"ok": true})),
            },
            json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r", "result": {"ok": true}}),
        ),
        (
            Event::RunError {
                message: s("boom"),
                code: None,
            },
            json!({"type": "RUN_ERROR", "message": "boom"}),
        ),
        (
            Event::StepStarted {
                step_name: s("plan"),
            },
            json!({"type": "STEP_STARTED", "stepName": "plan"}),
        ),
        (
            Event::StepFinished {
                step_name: s("plan"),
            },
            json!({"type": "STEP_FINISHED", "stepName": "plan"}),
        ),
        (
            Event::TextMessageStart {
                message_id: s("m"),
                role: Role::Assistant,
            },
            json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
        ),
        (
            Event::TextMessageContent {
                message_id: s("m"),
                delta: s("Hi"),
            },
            json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "Hi"}),
        ),
        (
            Event::TextMessageEnd { message_id: s("m") },
            json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
        ),
        (
            Event::TextMessageChunk {
                message_id: Some(s("m")),
                role: None,
                delta: Some(s("x")),
            },
            json!({"type": "TEXT_MESSAGE_CHUNK", "messageId": "m", "delta": "x"}),
        ),
        (
            Event::ToolCallStart {
                tool_call_id: s("c"),
                tool_call_name: s("get_weather"),
                parent_message_id: Some(s("m")),
            },
            json!({"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "get_weather",
                   "parentMessageId": "m"}),
        ),
        (
            Event::ToolCallArgs {
                tool_call_id: s("c"),
                delta: s("{\"city\":"),
            },
            json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c", "delta": "{\"city\":"}),
        ),
        (
            Event::ToolCallEnd {
                tool_call_id: s("c"),
            },
            json!({"type": "TOOL_CALL_END", "toolCallId": "c"}),
        ),
        (
            Event::ToolCallChunk {
                tool_call_id: Some(s("c")),
                tool_call_name: Some(s("rm")),
                parent_message_id: None,
                delta: None,
            },
            json!({"type": "TOOL_CALL_CHUNK", "toolCallId": "c", "toolCallName": "rm"}),
        ),
        (
            Event::ToolCallResult {
                message_id: s("tm"),
                tool_call_id: s("c"),
                content: s("18°C"),
                role: Some(Role::Tool),
            },
            json!({"type": "TOOL_CALL_RESULT", "messageId": "tm", "toolCallId": "c",
                   "content": "18°C", "role": "tool"}),
        ),
        (
            Event::StateSnapshot {
                snapshot: json!({"n": 1}),
            },
            json!({"type": "STATE_SNAPSHOT", "snapshot": {"n": 1}}),
        ),
        (
            Event::StateDelta {
                delta: json!([{"op": "replace", "path": "/n", "value": 2}]),
            },
            json!({"type": "STATE_DELTA", "delta": [{"op": "replace", "path": "/n", "value": 2}]}),
        ),
        (
            Event::MessagesSnapshot {
                messages: vec![Message::text_message("u", Role::User, "hi")],
            },
            json!({"type": "MESSAGES_SNAPSHOT",
                   "messages": [{"id": "u", "role": "user", "content": "hi"}]}),
        ),
        (
            Event::Raw {
                event: json!({"x": 1}),
                source: Some(s("langgraph")),
            },
            json!({"type": "RAW", "event": {"x": 1}, "source": "langgraph"}),
        ),
        (
            Event::Custom {
                name: s("ping"),
                value: json!(null),
            },
            json!({"type": "CUSTOM", "name": "ping", "value": null}),
        ),
    ]
}

#[test]
fn events_have_the_protocol_wire_shape_and_round_trip() {
    for (event, wire) in wire_examples() {
        assert_eq!(serde_json::to_value(&event).unwrap(), wire, "{event:?}");
        assert_eq!(wire["type"], event.type_name());
        let parsed: Event = serde_json::from_value(wire).unwrap();
        assert_eq!(parsed, event);
    }
}

#[test]
fn events_survive_sse_framing() {
    let mut parser = SseParser::new();
    for (event, _) in wire_examples() {
        let frame = event.to_sse_bytes();
        assert!(frame.starts_with(b"data: ") && frame.ends_with(b"}\n\n"));
        let items: Vec<_> = parser.feed(&frame).collect();
        let [Ok(SseItem::Event(sse))] = items.as_slice() else {
            panic!("one event per frame: {items:?}");
        };
        assert_eq!(sse.event, None);
        assert_eq!(
            Event::from_sse_data(sse.data.as_deref().unwrap()).unwrap(),
            event
        );
        assert_eq!(sse, &event.to_sse_event());
    }
    assert!(parser.finish().is_clean());
}

#[test]
fn parsing_is_lenient() {
    // Base-event fields and unknown fields are ignored; TEXT_MESSAGE_START's role defaults.
    let e = Event::from_sse_data(
        r#"{"type":"TEXT_MESSAGE_START","messageId":"m","timestamp":1,"rawEvent":{}}"#,
    )
    .unwrap();
    assert_eq!(
        e,
        Event::TextMessageStart {
            message_id: "m".into(),
            role: Role::Assistant
        }
    );
    // Unmodelled event types parse as Other.
    let e = Event::from_sse_data(r#"{"type":"THINKING_START","title":"t"}"#).unwrap();
    assert_eq!(e, Event::Other);
    // A known type missing a required field is an error.
    assert!(Event::from_sse_data(r#"{"type":"TOOL_CALL_START","toolCallId":"c"}"#).is_err());
    assert!(Event::from_sse_data("not json").is_err());
}

#[test]
fn run_error_frame_is_a_valid_run_error() {
    let frame = run_error_frame("RATE_LIMITED", "slow down \"now\"\nplease");
    let text = std::str::from_utf8(&frame).unwrap();
    assert!(text.starts_with("data: {") && text.ends_with("}\n\n"));
    // JSON escaping keeps the frame on one line whatever the message holds.
    assert_eq!(text.matches('\n').count(), 2);
    let json = text.strip_prefix("data: ").unwrap().trim_end();
    assert_eq!(
        Event::from_sse_data(json).unwrap(),
        Event::RunError {
            message: "slow down \"now\"\nplease".into(),
            code: Some("RATE_LIMITED".into())
        }
    );
}
