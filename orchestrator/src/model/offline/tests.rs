//! The offline model's script.

use serde_json::json;

use super::{OfflineModel, Scripted, GREETING, PLAN_DONE_PREFIX};
use crate::model::{ChatMessage, ChatRole, ToolCallRequest, ToolSpec, PLAN_TOOL};

fn user(text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::text(ChatRole::System, "be nice"),
        ChatMessage::text(ChatRole::User, text),
    ]
}

fn decide(text: &str) -> Scripted {
    OfflineModel::decide(&user(text), &[])
}

#[test]
fn echoes_the_last_user_message_or_greets() {
    let mut conv = user("first question");
    conv.push(ChatMessage::text(ChatRole::Assistant, "first answer"));
    conv.push(ChatMessage::text(
        ChatRole::User,
        "  second\n question\there ",
    ));
    assert_eq!(
        OfflineModel::decide(&conv, &[]),
        Scripted::Answer("second question here".into())
    );
    assert_eq!(
        OfflineModel::decide(&[], &[]),
        Scripted::Answer(GREETING.into())
    );
    assert_eq!(decide(" \n "), Scripted::Answer(GREETING.into()));
}

#[test]
fn asks_for_tools_as_scripted() {
    assert_eq!(
        decide("please use get_time"),
        Scripted::Call("get_time".into(), json!({}))
    );
    assert_eq!(
        decide("Use calculator 2+3*4"),
        Scripted::Call("calculator".into(), json!({"expression": "2+3*4"}))
    );
    assert_eq!(
        decide("What is the weather in Paris?"),
        Scripted::Call("mock_weather".into(), json!({"city": "Paris"}))
    );
    assert_eq!(
        decide("delegate summarize the report to researcher"),
        Scripted::Call(
            "delegate_to_agent".into(),
            json!({"agent": "researcher", "task": "summarize the report"})
        )
    );
    assert!(matches!(decide("fail now"), Scripted::Fail(_)));
    assert_eq!(
        decide("plan: use get_time; use calculator 1+1 ;"),
        Scripted::Call(
            PLAN_TOOL.into(),
            json!({"steps": [{"instruction": "use get_time"}, {"instruction": "use calculator 1+1"}]})
        )
    );
}

#[test]
fn mcp_arguments_follow_the_tool_schema() {
    let tools = [ToolSpec {
        name: "search_docs".into(),
        description: String::new(),
        parameters: json!({"type": "object", "required": ["query"],
                           "properties": {"query": {"type": "string"}}}),
    }];
    let conv = user("mcp search_docs Cedar policies");
    assert_eq!(
        OfflineModel::decide(&conv, &tools),
        Scripted::Call("search_docs".into(), json!({"query": "Cedar policies"}))
    );
    assert_eq!(
        decide(r#"mcp read_file {"path": "/srv/a"}"#),
        Scripted::Call("read_file".into(), json!({"path": "/srv/a"}))
    );
    assert_eq!(decide("mcp ping"), Scripted::Call("ping".into(), json!({})));
}

#[test]
fn answers_with_tool_results_and_errors() {
    let mut conv = user("use calculator 1/0");
    conv.push(ChatMessage {
        tool_calls: vec![ToolCallRequest {
            id: "c1".into(),
            name: "calculator".into(),
            arguments: "{}".into(),
        }],
        ..ChatMessage::text(ChatRole::Assistant, "")
    });
    conv.push(ChatMessage::tool_result("c1", "error: division by zero"));
    assert_eq!(
        OfflineModel::decide(&conv, &[]),
        Scripted::Answer("The tool calculator failed: division by zero".into())
    );
    conv[3] = ChatMessage::tool_result("c1", "14");
    assert_eq!(
        OfflineModel::decide(&conv, &[]),
        Scripted::Answer("calculator returned: 14".into())
    );
    // A loop never stops calling.
    conv[1] = ChatMessage::text(ChatRole::User, "loop forever");
    assert_eq!(
        OfflineModel::decide(&conv, &[]),
        Scripted::Call("get_time".into(), json!({}))
    );
}

#[test]
fn summarizes_a_finished_plan() {
    let conv = user(&format!("{PLAN_DONE_PREFIX}\n1. a\n2. b"));
    assert_eq!(
        OfflineModel::decide(&conv, &[]),
        Scripted::Answer("Plan complete: 1. a 2. b".into())
    );
}

#[test]
fn deltas_are_words_that_concatenate_to_the_answer() {
    let deltas = OfflineModel::deltas("hello big world");
    assert_eq!(deltas, ["hello", " big", " world"]);
    assert!(OfflineModel::deltas("").is_empty());
    assert_eq!(OfflineModel::deltas(GREETING).concat(), GREETING);
}
