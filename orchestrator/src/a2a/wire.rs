//! A2A JSON-RPC request bodies and answers, for both protocol versions.
//!
//! - A2A 1.0: method `SendMessage`, header `A2A-Version: 1.0`, proto-JSON shapes
//!   (`role: "ROLE_USER"`, parts `{"text": …}`, states `TASK_STATE_COMPLETED`), the result wrapped
//!   as `{"task": …}` or `{"message": …}`.
//! - A2A 0.3: method `message/send`, `kind`-tagged shapes (`role: "user"`, parts
//!   `{"kind": "text", "text": …}`, states `completed`), the result a bare Task or Message.

use serde_json::{json, Value};

/// Which A2A protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// A2A 1.0 `SendMessage`.
    V1,
    /// A2A 0.3 `message/send`.
    V03,
}

/// The JSON-RPC body sending `text` as one user message with `message_id` (kept the same across
/// retries, so an agent that saw a lost attempt can recognise the repeat).
pub(crate) fn send_body(version: Version, request_id: u64, message_id: &str, text: &str) -> Value {
    match version {
        Version::V1 => json!({
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "SendMessage",
            "params": {
                "message": {
                    "messageId": message_id,
                    "role": "ROLE_USER",
                    "parts": [{"text": text}],
                },
                "configuration": {"returnImmediately": false},
            },
        }),
        Version::V03 => json!({
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "message/send",
            "params": {
                "message": {
                    "kind": "message",
                    "messageId": message_id,
                    "role": "user",
                    "parts": [{"kind": "text", "text": text}],
                },
                "configuration": {"blocking": true},
            },
        }),
    }
}

/// What the remote agent answered, read from a JSON-RPC response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A task (or a direct message, which has no task id) in a known state.
    Reply {
        /// The task's id; `None` for a direct message.
        task_id: Option<String>,
        /// The conversation's id, when given.
        context_id: Option<String>,
        /// The state in lower snake case (`completed`, `failed`, `input_required`, …); a direct
        /// message is `completed`.
        state: String,
        /// The text parts of the artifacts, else of the status message, else of the message.
        text: String,
    },
    /// A JSON-RPC error object.
    RpcError {
        /// Its code (`-32601` method not found, `-32009` version not supported, …).
        code: i64,
        /// Its message.
        message: String,
    },
}

/// Reads a JSON-RPC response body; `Err` says why it is not one.
pub(crate) fn parse_answer(version: Version, body: &Value) -> Result<Answer, String> {
    if let Some(error) = body.get("error") {
        return Ok(Answer::RpcError {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        });
    }
    let result = body
        .get("result")
        .ok_or_else(|| "JSON-RPC response has neither result nor error".to_owned())?;
    let (task, message) = match version {
        Version::V1 => (result.get("task"), result.get("message")),
        Version::V03 => match result.get("kind").and_then(Value::as_str) {
            Some("task") => (Some(result), None),
            Some("message") => (None, Some(result)),
            other => return Err(format!("result kind {other:?} is neither task nor message")),
        },
    };
    if let Some(task) = task {
        let status = task.get("status");
        let state = status
            .and_then(|s| s.get("state"))
            .and_then(Value::as_str)
            .map(normalize_state)
            .unwrap_or_else(|| "unknown".to_owned());
        let mut text = task
            .get("artifacts")
            .and_then(Value::as_array)
            .map(|artifacts| {
                artifacts
                    .iter()
                    .map(|a| parts_text(a.get("parts")))
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        if text.is_empty() {
            text = parts_text(
                status
                    .and_then(|s| s.get("message"))
                    .and_then(|m| m.get("parts")),
            );
        }
        return Ok(Answer::Reply {
            task_id: string_field(task, "id"),
            context_id: string_field(task, "contextId"),
            state,
            text,
        });
    }
    if let Some(message) = message {
        return Ok(Answer::Reply {
            task_id: None,
            context_id: string_field(message, "contextId"),
            state: "completed".to_owned(),
            text: parts_text(message.get("parts")),
        });
    }
    Err("result holds neither a task nor a message".to_owned())
}

/// `TASK_STATE_INPUT_REQUIRED` (1.0) and `input-required` (0.3) both become `input_required`.
fn normalize_state(state: &str) -> String {
    state
        .strip_prefix("TASK_STATE_")
        .unwrap_or(state)
        .to_ascii_lowercase()
        .replace('-', "_")
}

/// The text parts of a `parts` array, joined (0.3 parts carry `kind: "text"`; 1.0 parts are text
/// parts when they have a `text` field).
fn parts_text(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

fn string_field(value: &Value, name: &str) -> Option<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
