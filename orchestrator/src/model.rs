//! Models: a conversation and the tools on offer in, a stream of text deltas and tool calls out.
//!
//! Two backends sit behind [`Model`]: the built-in [`OfflineModel`] (deterministic, scripted,
//! no network — the embedded default) and [`OpenAiModel`] (any OpenAI-compatible
//! chat-completions endpoint, streamed, with tool calling). The run loop (`run.rs`) only sees
//! [`ModelChunk`]s.
//!
//! A model answers with a structured plan by calling the pseudo-tool [`PLAN_TOOL`] with
//! `{"steps":[{"instruction":"…"}, …]}`; the runtime executes the steps in order.

pub mod offline;
pub mod openai;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use palisade_wire::agui::{Message, Role};
use serde_json::{json, Value};

pub use offline::{OfflineModel, GREETING};
pub use openai::OpenAiModel;

use crate::config::{ModelConfig, ModelProvider};

/// The pseudo-tool a model calls to hand the runtime a multi-step plan.
pub const PLAN_TOOL: &str = "submit_plan";

/// Who wrote a [`ChatMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The end user (and the runtime's step instructions).
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

impl ChatRole {
    /// The chat-completions role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// One message of the model's conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Author.
    pub role: ChatRole,
    /// Text (may be empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls of an assistant message.
    pub tool_calls: Vec<ToolCallRequest>,
    /// For a tool message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A tool result answering `call_id`.
    pub fn tool_result(call_id: &str, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.to_owned()),
            ..Self::text(ChatRole::Tool, content)
        }
    }

    /// The chat-completions JSON of this message.
    pub fn to_openai(&self) -> Value {
        let mut m = json!({"role": self.role.as_str(), "content": self.content});
        if !self.tool_calls.is_empty() {
            m["tool_calls"] = self
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
        if let Some(id) = &self.tool_call_id {
            m["tool_call_id"] = json!(id);
        }
        m
    }
}

/// A tool call the model asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallRequest {
    /// Call id (the model's, or generated).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// JSON-encoded arguments.
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Name the model calls.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

impl ToolSpec {
    /// The chat-completions `tools[]` entry.
    pub fn to_openai(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}})
    }

    /// The plan pseudo-tool's spec.
    pub fn plan() -> Self {
        Self {
            name: PLAN_TOOL.into(),
            description: "Hand the runtime a plan: steps executed in order, each result fed \
                          back before the next."
                .into(),
            parameters: json!({"type": "object", "required": ["steps"], "properties": {
                "steps": {"type": "array", "items": {"type": "object", "required": ["instruction"],
                    "properties": {"instruction": {"type": "string"}}}}}}),
        }
    }
}

/// A piece of a model's answer, in the order produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChunk {
    /// Text to append to the answer (never empty).
    Text(String),
    /// A complete tool call.
    ToolCall(ToolCallRequest),
    /// What the endpoint said about the answer as a whole (token usage, response id, finish
    /// reasons); last in the stream, when the backend reports it.
    Report(TurnReport),
}

/// What a backend reports about one answer, for GenAI telemetry (OpenTelemetry
/// `gen_ai.response.*` and `gen_ai.usage.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnReport {
    /// `gen_ai.response.id` (the chat-completions `id`).
    pub response_id: Option<String>,
    /// `gen_ai.response.model`: the model that answered.
    pub response_model: Option<String>,
    /// `gen_ai.response.finish_reasons`, one per choice.
    pub finish_reasons: Vec<String>,
    /// `gen_ai.usage.input_tokens` (`usage.prompt_tokens`).
    pub input_tokens: Option<u64>,
    /// `gen_ai.usage.output_tokens` (`usage.completion_tokens`).
    pub output_tokens: Option<u64>,
}

/// Per-turn context the runtime hands a backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnContext {
    /// W3C `traceparent` naming the turn's span, sent on the outgoing model request.
    pub traceparent: Option<String>,
}

/// A model's streamed answer.
pub type ChunkStream = BoxStream<'static, Result<ModelChunk, ModelError>>;

/// Why a model turn failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The endpoint could not be reached or the stream broke.
    #[error("model endpoint unreachable: {0}")]
    Transport(String),
    /// The endpoint answered with an error status.
    #[error("model endpoint answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer did not follow the chat-completions shape.
    #[error("malformed model answer: {0}")]
    Protocol(String),
    /// The offline model's scripted failure.
    #[error("{0}")]
    Scripted(String),
}

impl ModelError {
    /// The low-cardinality `error.type` of OpenTelemetry: the HTTP status for an error status,
    /// else the kind of failure.
    pub fn error_type(&self) -> String {
        match self {
            Self::Transport(_) => "transport".into(),
            Self::Status { status, .. } => status.to_string(),
            Self::Protocol(_) => "protocol".into(),
            Self::Scripted(_) => "scripted".into(),
        }
    }
}

/// A model backend.
#[async_trait]
pub trait Model: Send + Sync + 'static {
    /// A short name for logs and metrics (`offline`, the OpenAI model name); the requested
    /// model (`gen_ai.request.model`).
    fn name(&self) -> &str;

    /// `gen_ai.provider.name`: `openai` for the OpenAI-compatible client, `palisade.offline`
    /// for the built-in model.
    fn provider(&self) -> &'static str;

    /// The endpoint's host and port (`server.address`, `server.port`), for networked backends.
    fn server(&self) -> Option<(String, u16)> {
        None
    }

    /// Starts one turn: `messages` so far and `tools` on offer; the answer streams back.
    async fn turn(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        cx: &TurnContext,
    ) -> Result<ChunkStream, ModelError>;
}

/// The configured model.
pub fn build(
    cfg: &ModelConfig,
    word_delay: std::time::Duration,
    trust: &crate::tls::Trust,
) -> Arc<dyn Model> {
    match cfg.provider {
        ModelProvider::Offline => Arc::new(OfflineModel::new(word_delay)),
        ModelProvider::Openai => Arc::new(OpenAiModel::from_config(cfg, trust)),
    }
}

/// The model's view of an AG-UI conversation: text of system/developer/user/assistant messages,
/// assistant tool calls and tool results; other roles (activity, reasoning) are left out.
pub fn from_agui(messages: &[Message]) -> Vec<ChatMessage> {
    messages
        .iter()
        .filter_map(|m| {
            let text = m.text().map(|t| t.into_owned()).unwrap_or_default();
            let role = match &m.role {
                Role::System | Role::Developer => ChatRole::System,
                Role::User => ChatRole::User,
                Role::Assistant => ChatRole::Assistant,
                Role::Tool => ChatRole::Tool,
                _ => return None,
            };
            let tool_calls = m
                .tool_calls
                .iter()
                .flatten()
                .map(|c| ToolCallRequest {
                    id: c.id.clone(),
                    name: c.function.name.clone(),
                    arguments: c.function.arguments.clone(),
                })
                .collect();
            Some(ChatMessage {
                role,
                content: text,
                tool_calls,
                tool_call_id: m.tool_call_id.clone(),
            })
        })
        .collect()
}
