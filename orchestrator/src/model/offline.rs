//! The built-in offline model: deterministic and scripted, no network, no weights.
//!
//! It reads the last user message (case-insensitive) and follows this script, documented in
//! `docs/orchestrator.md`:
//!
//! | the user says | the model |
//! |---|---|
//! | `plan: A; B; C` | calls [`PLAN_TOOL`] with the steps `A`, `B`, `C` |
//! | `fail …` | fails the turn (the run ends with `RUN_ERROR`, code `MODEL_ERROR`) |
//! | `loop …` | calls `get_time` again after every result (ends at `max_iterations`) |
//! | `… use get_time …` | calls `get_time` |
//! | `… use calculator EXPR` | calls `calculator` with `{"expression": EXPR}` |
//! | `… weather in CITY` | calls `mock_weather` with `{"city": CITY}` |
//! | `mcp TOOL ARGS` | calls the MCP tool `TOOL`; `ARGS` is a JSON object, or text for its first string parameter |
//! | `delegate TASK to AGENT` | calls `delegate_to_agent` with `{"agent": AGENT, "task": TASK}` |
//! | anything else | echoes the message word by word ([`GREETING`] when there is none) |
//!
//! Once tool results follow the user message, it answers with them instead
//! (`get_time returned: …`, or `The tool X failed: …` for an error result).

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::{
    ChatMessage, ChatRole, ChunkStream, Model, ModelChunk, ModelError, ToolCallRequest, ToolSpec,
    TurnContext, PLAN_TOOL,
};

/// The answer when the conversation holds no user text.
pub const GREETING: &str =
    "Hello! I am the Palisade offline model. Send me a message and I will echo it back.";

/// The prefix of the runtime's "plan done" prompt; the offline model answers it with the step
/// results it lists.
pub const PLAN_DONE_PREFIX: &str = "The plan is complete. Step results:";

/// The scripted offline model. `word_delay` paces streamed words.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineModel {
    word_delay: Duration,
}

/// What the script decided for one turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// Stream this text.
    Answer(String),
    /// Call a tool with these JSON arguments.
    Call(String, Value),
    /// Fail the turn.
    Fail(String),
}

impl OfflineModel {
    /// An offline model streaming one word per `word_delay`.
    pub fn new(word_delay: Duration) -> Self {
        Self { word_delay }
    }

    /// The script's decision for `messages` with `tools` on offer.
    pub fn decide(messages: &[ChatMessage], tools: &[ToolSpec]) -> Scripted {
        let Some(last_user) = messages.iter().rposition(|m| m.role == ChatRole::User) else {
            return Scripted::Answer(GREETING.into());
        };
        let request = messages[last_user].content.trim();
        let lower = request.to_lowercase();
        let after = &messages[last_user + 1..];
        if let Some(results) = request.strip_prefix(PLAN_DONE_PREFIX) {
            let steps: Vec<&str> = results
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Scripted::Answer(format!("Plan complete: {}", steps.join(" ")));
        }
        if lower.split_whitespace().next() == Some("fail") {
            return Scripted::Fail("the offline model was asked to fail".into());
        }
        if lower.starts_with("loop") {
            return Scripted::Call("get_time".into(), json!({}));
        }
        let results = tool_results(after);
        if !results.is_empty() {
            return Scripted::Answer(results.join(" "));
        }
        if let Some(rest) = lower.strip_prefix("plan:") {
            let start = request.len() - rest.len();
            let steps: Vec<Value> = request[start..]
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| json!({"instruction": s}))
                .collect();
            return Scripted::Call(PLAN_TOOL.into(), json!({"steps": steps}));
        }
        if lower.contains("use get_time") {
            return Scripted::Call("get_time".into(), json!({}));
        }
        if let Some(at) = lower.find("use calculator") {
            let expr = request[at + "use calculator".len()..].trim();
            return Scripted::Call("calculator".into(), json!({"expression": expr}));
        }
        if let Some(at) = lower.find("weather in ") {
            let city = request[at + "weather in ".len()..]
                .trim()
                .trim_end_matches(['?', '.', '!']);
            return Scripted::Call("mock_weather".into(), json!({"city": city}));
        }
        if let Some(rest) = lower.strip_prefix("mcp ") {
            let rest = request[request.len() - rest.len()..].trim();
            let (tool, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return Scripted::Call(tool.into(), mcp_arguments(tool, args.trim(), tools));
        }
        if lower.starts_with("delegate ") {
            if let Some(at) = lower.rfind(" to ") {
                let task = request["delegate ".len()..at].trim();
                let agent = request[at + " to ".len()..].trim();
                return Scripted::Call(
                    "delegate_to_agent".into(),
                    json!({"agent": agent, "task": task}),
                );
            }
        }
        let words: Vec<&str> = request.split_whitespace().collect();
        if words.is_empty() {
            Scripted::Answer(GREETING.into())
        } else {
            Scripted::Answer(words.join(" "))
        }
    }

    /// Splits an answer into the deltas streamed as `TEXT_MESSAGE_CONTENT`: one per word, every
    /// word after the first carrying its leading space, so the deltas concatenate to the answer.
    /// Deltas are never empty, as AG-UI requires.
    pub fn deltas(answer: &str) -> Vec<String> {
        answer
            .split_whitespace()
            .enumerate()
            .map(|(i, word)| {
                if i == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                }
            })
            .collect()
    }
}

/// One sentence per tool result after the user's message, in order.
fn tool_results(after: &[ChatMessage]) -> Vec<String> {
    after
        .iter()
        .filter(|m| m.role == ChatRole::Tool)
        .map(|m| {
            let name = after
                .iter()
                .flat_map(|a| &a.tool_calls)
                .find(|c| Some(&c.id) == m.tool_call_id.as_ref())
                .map_or("tool", |c| c.name.as_str());
            match m.content.strip_prefix("error: ") {
                Some(err) => format!("The tool {name} failed: {err}"),
                None => format!("{name} returned: {}", m.content),
            }
        })
        .collect()
}

/// Arguments for an MCP tool: a JSON object as given, else the text for the tool's first
/// required (or first) string parameter.
fn mcp_arguments(tool: &str, args: &str, tools: &[ToolSpec]) -> Value {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(args) {
        return Value::Object(map);
    }
    let mut out = Map::new();
    if args.is_empty() {
        return Value::Object(out);
    }
    let schema = tools.iter().find(|t| t.name == tool).map(|t| &t.parameters);
    let param = schema.and_then(|s| {
        let required = s["required"].as_array().and_then(|r| r.first()?.as_str());
        required.or_else(|| {
            s["properties"]
                .as_object()?
                .keys()
                .next()
                .map(String::as_str)
        })
    });
    out.insert(param.unwrap_or("input").to_owned(), json!(args));
    Value::Object(out)
}

#[async_trait]
impl Model for OfflineModel {
    fn name(&self) -> &str {
        "offline"
    }

    fn provider(&self) -> &'static str {
        "palisade.offline"
    }

    async fn turn(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        _cx: &TurnContext,
    ) -> Result<ChunkStream, ModelError> {
        match Self::decide(messages, tools) {
            Scripted::Fail(why) => Err(ModelError::Scripted(why)),
            Scripted::Call(name, args) => {
                let call = ToolCallRequest {
                    id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
                    name,
                    arguments: args.to_string(),
                };
                Ok(futures::stream::iter([Ok(ModelChunk::ToolCall(call))]).boxed())
            }
            Scripted::Answer(text) => {
                let delay = self.word_delay;
                let words = Self::deltas(&text);
                Ok(futures::stream::iter(words)
                    .then(move |w| async move {
                        tokio::time::sleep(delay).await;
                        Ok(ModelChunk::Text(w))
                    })
                    .boxed())
            }
        }
    }
}

#[cfg(test)]
mod tests;
