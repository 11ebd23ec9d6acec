//! AG-UI protocol types: the run request and the event stream, as camelCase JSON.
//!
//! A client starts a run by POSTing a [`RunAgentInput`]; the agent answers with a stream of
//! [`Event`]s, each sent as one SSE frame `data: <json>\n\n` ([`Event::to_sse_bytes`]).
//!
//! Parsing is lenient where the protocol has grown over time, because a proxy must not reject
//! what a conforming client or agent sends: unknown fields are ignored, optional collections
//! default to empty, message `content` may be text or structured (multimodal parts, activity
//! payloads), roles outside the known set are kept verbatim ([`Role::Other`]), and event types
//! this crate does not model parse as [`Event::Other`].
//!
//! ```
//! use palisade_wire::agui::{Event, RunAgentInput};
//!
//! let input: RunAgentInput = serde_json::from_str(
//!     r#"{"threadId":"t1","runId":"r1","messages":[{"id":"m1","role":"user","content":"hi"}]}"#,
//! ).unwrap();
//! assert_eq!(input.messages[0].text(), Some("hi".into()));
//!
//! let started = Event::RunStarted {
//!     thread_id: input.thread_id,
//!     run_id: input.run_id,
//!     parent_run_id: None,
//! };
//! assert_eq!(
//!     started.to_sse_bytes(),
//!     "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t1\",\"runId\":\"r1\"}\n\n"
//! );
//! ```

mod event;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use event::{run_error_frame, Event};

/// The body of a run request (`POST` to the agent endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAgentInput {
    /// The conversation thread.
    pub thread_id: String,
    /// This run.
    pub run_id: String,
    /// The run that spawned this one, for nested agent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// Shared agent/front-end state; any JSON, `null` when absent.
    #[serde(default)]
    pub state: Value,
    /// The conversation so far, oldest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Front-end tools the agent may call during this run.
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// Extra context items supplied by the application.
    #[serde(default)]
    pub context: Vec<Context>,
    /// Application-specific properties passed through to the agent; `null` when absent.
    #[serde(default)]
    pub forwarded_props: Value,
}

impl RunAgentInput {
    /// The most recent message with role `user`, if any.
    pub fn last_user_message(&self) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.role == Role::User)
    }
}

/// One conversation message. The protocol's per-role message types share this one shape;
/// fields that a role does not use are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Message id.
    pub id: String,
    /// Who wrote it.
    pub role: Role,
    /// Text, or structured content (a list of input parts for multimodal user messages, an
    /// object for activity messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional sender name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a `tool` message: an error the tool reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Message {
    /// A message with plain-text content and no other optional fields.
    pub fn text_message(id: impl Into<String>, role: Role, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            error: None,
        }
    }

    /// The message's text: the content itself when it is a string, else the `text` of its
    /// `{"type":"text"}` parts joined with `\n`. `None` when there is no text at all.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self.content.as_ref()? {
            MessageContent::Text(text) => Some(Cow::Borrowed(text)),
            MessageContent::Structured(value) => {
                let parts = value.as_array()?.iter().filter_map(|part| {
                    (part.get("type")?.as_str()? == "text").then_some(part.get("text")?.as_str()?)
                });
                let joined = parts.collect::<Vec<_>>().join("\n");
                (!joined.is_empty()).then_some(Cow::Owned(joined))
            }
        }
    }
}

/// A message's content: usually text, sometimes structured JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Anything else: multimodal input parts (`[{"type":"text","text":…}, …]`) or an object.
    Structured(Value),
}

/// A message's author role. Unknown roles are preserved as [`Role::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Role {
    /// `developer`: instructions from the application developer.
    Developer,
    /// `system`: the system prompt.
    System,
    /// `assistant`: the agent.
    Assistant,
    /// `user`: the end user.
    User,
    /// `tool`: a tool result.
    Tool,
    /// `activity`: agent activity shown alongside the answer.
    Activity,
    /// `reasoning`: the agent's visible reasoning.
    Reasoning,
    /// Any other role, verbatim.
    Other(String),
}

impl Role {
    /// The wire name (`"user"`, `"assistant"`, …).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Developer => "developer",
            Self::System => "system",
            Self::Assistant => "assistant",
            Self::User => "user",
            Self::Tool => "tool",
            Self::Activity => "activity",
            Self::Reasoning => "reasoning",
            Self::Other(role) => role,
        }
    }
}

impl From<String> for Role {
    fn from(role: String) -> Self {
        match role.as_str() {
            "developer" => Self::Developer,
            "system" => Self::System,
            "assistant" => Self::Assistant,
            "user" => Self::User,
            "tool" => Self::Tool,
            "activity" => Self::Activity,
            "reasoning" => Self::Reasoning,
            _ => Self::Other(role),
        }
    }
}

impl From<Role> for String {
    fn from(role: Role) -> Self {
        match role {
            Role::Other(role) => role,
            known => known.as_str().to_owned(),
        }
    }
}

/// A tool call inside an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// Call id, referenced by the `tool` message that answers it.
    pub id: String,
    /// Always `"function"` today.
    #[serde(rename = "type", default = "function_type")]
    pub call_type: String,
    /// The function called.
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function a [`ToolCall`] invokes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCall {
    /// Tool name.
    pub name: String,
    /// Arguments as a JSON-encoded string, as the model produced them.
    #[serde(default)]
    pub arguments: String,
}

/// A front-end tool offered to the agent for this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// Tool name (what the agent calls and what authorization sees as `Tool::"<name>"`).
    pub name: String,
    /// What the tool does, for the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments; `null` when absent.
    #[serde(default)]
    pub parameters: Value,
}

/// A context item supplied by the application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// What the value is.
    #[serde(default)]
    pub description: String,
    /// The value: a string per the protocol, any JSON accepted.
    #[serde(default)]
    pub value: Value,
}

#[cfg(test)]
mod tests;
