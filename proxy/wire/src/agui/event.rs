//! The AG-UI event stream: one JSON object per SSE `data:` frame, tagged by `"type"`.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Message, Role};
use crate::sse::SseEvent;

/// One AG-UI event. Serialized as `{"type":"RUN_STARTED","threadId":…}`: the variant name in
/// SCREAMING_SNAKE_CASE in `type`, fields in camelCase, absent optional fields omitted.
///
/// Unknown fields (such as the base event's `timestamp` and `rawEvent`) are ignored when parsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A run began. The first event of every run.
    RunStarted {
        /// Thread of the run.
        thread_id: String,
        /// The run.
        run_id: String,
        /// The spawning run, for nested runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_run_id: Option<String>,
    },
    /// A run completed successfully. Ends the run.
    RunFinished {
        /// Thread of the run.
        thread_id: String,
        /// The run.
        run_id: String,
        /// Optional result value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
    },
    /// A run failed. Ends the run; the proxy also uses it to cut a stream short.
    RunError {
        /// Human-readable description.
        message: String,
        /// Machine-readable code (the proxy uses its error codes, e.g. `FORBIDDEN`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    /// A named step of the run began.
    StepStarted {
        /// Step name.
        step_name: String,
    },
    /// A named step of the run ended.
    StepFinished {
        /// Step name.
        step_name: String,
    },
    /// A streamed text message begins.
    TextMessageStart {
        /// The message being streamed.
        message_id: String,
        /// Its author; `assistant` when absent.
        #[serde(default = "assistant")]
        role: Role,
    },
    /// A piece of a streamed text message.
    TextMessageContent {
        /// The message being streamed.
        message_id: String,
        /// Text to append (non-empty).
        delta: String,
    },
    /// A streamed text message is complete.
    TextMessageEnd {
        /// The message that ended.
        message_id: String,
    },
    /// Shorthand that starts, continues or ends a text message implicitly.
    TextMessageChunk {
        /// The message, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// The author, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        /// Text to append.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<String>,
    },
    /// The agent starts calling a tool. What tool-call authorization inspects.
    ToolCallStart {
        /// The call.
        tool_call_id: String,
        /// The tool called.
        tool_call_name: String,
        /// The assistant message the call belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_message_id: Option<String>,
    },
    /// A piece of the tool call's JSON arguments.
    ToolCallArgs {
        /// The call.
        tool_call_id: String,
        /// Argument text to append.
        delta: String,
    },
    /// The tool call's arguments are complete.
    ToolCallEnd {
        /// The call.
        tool_call_id: String,
    },
    /// Shorthand that starts (when it names the tool), continues or ends a tool call
    /// implicitly. A proxy authorizing tool calls must inspect these as well as
    /// [`Event::ToolCallStart`].
    ToolCallChunk {
        /// The call, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
        /// The tool called, on the chunk that starts the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_name: Option<String>,
        /// The assistant message the call belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_message_id: Option<String>,
        /// Argument text to append.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<String>,
    },
    /// The result of a tool call.
    ToolCallResult {
        /// The tool message carrying the result.
        message_id: String,
        /// The call answered.
        tool_call_id: String,
        /// The result text.
        content: String,
        /// `tool` when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
    },
    /// The complete shared state.
    StateSnapshot {
        /// The state.
        snapshot: Value,
    },
    /// An incremental state change.
    StateDelta {
        /// JSON Patch (RFC 6902) operations.
        delta: Value,
    },
    /// The complete message list.
    MessagesSnapshot {
        /// The messages.
        messages: Vec<Message>,
    },
    /// An event passed through from an underlying system.
    Raw {
        /// The original event.
        event: Value,
        /// Where it came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// An application-defined event.
    Custom {
        /// Event name.
        name: String,
        /// Event payload.
        value: Value,
    },
    /// Any event type not modelled above (thinking/reasoning, activity, …). Parsing keeps only
    /// the fact that it was unknown: forward the original bytes rather than re-serializing it
    /// (which would produce `{"type":"OTHER"}`).
    #[serde(other)]
    Other,
}

fn assistant() -> Role {
    Role::Assistant
}

impl Event {
    /// The wire `type` (`"RUN_STARTED"`, …); `"OTHER"` for [`Event::Other`].
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "RUN_STARTED",
            Self::RunFinished { .. } => "RUN_FINISHED",
            Self::RunError { .. } => "RUN_ERROR",
            Self::StepStarted { .. } => "STEP_STARTED",
            Self::StepFinished { .. } => "STEP_FINISHED",
            Self::TextMessageStart { .. } => "TEXT_MESSAGE_START",
            Self::TextMessageContent { .. } => "TEXT_MESSAGE_CONTENT",
            Self::TextMessageEnd { .. } => "TEXT_MESSAGE_END",
            Self::TextMessageChunk { .. } => "TEXT_MESSAGE_CHUNK",
            Self::ToolCallStart { .. } => "TOOL_CALL_START",
            Self::ToolCallArgs { .. } => "TOOL_CALL_ARGS",
            Self::ToolCallEnd { .. } => "TOOL_CALL_END",
            Self::ToolCallChunk { .. } => "TOOL_CALL_CHUNK",
            Self::ToolCallResult { .. } => "TOOL_CALL_RESULT",
            Self::StateSnapshot { .. } => "STATE_SNAPSHOT",
            Self::StateDelta { .. } => "STATE_DELTA",
            Self::MessagesSnapshot { .. } => "MESSAGES_SNAPSHOT",
            Self::Raw { .. } => "RAW",
            Self::Custom { .. } => "CUSTOM",
            Self::Other => "OTHER",
        }
    }

    /// Parses the JSON carried in an SSE event's `data`.
    pub fn from_sse_data(data: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(data)
    }

    /// The event as compact JSON (one line: JSON escapes every newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("AG-UI events serialize: every map key is a string")
    }

    /// The event as an [`SseEvent`] with only `data` set.
    pub fn to_sse_event(&self) -> SseEvent {
        SseEvent::with_data(self.to_json())
    }

    /// One SSE frame, `data: <json>\n\n`, with no `event:` line (AG-UI's HttpAgent parses
    /// data-only frames).
    pub fn to_sse_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        out.extend_from_slice(b"data: ");
        serde_json::to_writer((&mut out).writer(), self)
            .expect("AG-UI events serialize: every map key is a string");
        out.extend_from_slice(b"\n\n");
        out.freeze()
    }
}

/// The frame that ends a stream with an error: `RUN_ERROR` with `code` and `message`.
///
/// ```
/// let frame = palisade_wire::agui::run_error_frame("FORBIDDEN", "tool not allowed");
/// assert_eq!(
///     frame,
///     "data: {\"type\":\"RUN_ERROR\",\"message\":\"tool not allowed\",\"code\":\"FORBIDDEN\"}\n\n"
/// );
/// ```
pub fn run_error_frame(code: &str, message: &str) -> Bytes {
    Event::RunError {
        message: message.to_owned(),
        code: Some(code.to_owned()),
    }
    .to_sse_bytes()
}
