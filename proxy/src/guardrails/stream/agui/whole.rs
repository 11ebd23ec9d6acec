//! Whole events: `TOOL_CALL_RESULT` contents, `MESSAGES_SNAPSHOT` messages, and every field of
//! any event that no streamed-text handler takes — all of an event whose type the guard does
//! not know — each scanned as one text or walked whole ([`crate::guardrails::walk`]).

use serde_json::Value;

use super::AguiGuard;
use crate::guardrails::detect::{RuleSet, Side};
use crate::guardrails::spec::Location;
use crate::guardrails::stream::Recorder;
use crate::guardrails::walk::{self, Walk};
use crate::protocol::event::{Item, StreamEvent};

impl AguiGuard {
    /// The fields of an event the handlers of its type take (and scan as what they are):
    /// streamed deltas only when a handler will stream them (a delta without the id it
    /// belongs to is scanned whole instead), results' content and snapshots' messages.
    pub(super) fn takes(&self, kind: &str, event: &StreamEvent) -> &'static [&'static str] {
        let delta = event
            .value()
            .and_then(|v| v.get("delta"))
            .is_some_and(Value::is_string);
        let has = |field: &str| event.str_field(field).is_some();
        let streams = match kind {
            "TEXT_MESSAGE_CONTENT" | "REASONING_MESSAGE_CONTENT" => has("messageId"),
            "TOOL_CALL_ARGS" => has("toolCallId"),
            "THINKING_TEXT_MESSAGE_CONTENT" => true,
            "TEXT_MESSAGE_CHUNK" | "REASONING_MESSAGE_CHUNK" | "TOOL_CALL_CHUNK" => {
                let id = if kind == "TOOL_CALL_CHUNK" {
                    "toolCallId"
                } else {
                    "messageId"
                };
                has(id)
                    || self
                        .last_chunk
                        .as_ref()
                        .is_some_and(|(k, _)| k.event().0 == kind)
            }
            "TOOL_CALL_RESULT" => return &["content"],
            "MESSAGES_SNAPSHOT" => return &["messages"],
            _ => false,
        };
        if streams && delta {
            &["delta"]
        } else {
            &[]
        }
    }

    /// Scans every field of an event but its structural ones (when its type is known) and
    /// those in `takes`; a refusing rule stops the run.
    pub(super) fn scan_rest(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        event: &mut StreamEvent,
        kind: &str,
        label: &str,
        takes: &[&str],
    ) -> Result<(), usize> {
        let Some(json) = event.value_mut() else {
            return Ok(());
        };
        let mut walk = Walk::new(rs, Side::Output, Location::AssistantText);
        match json {
            Value::Object(map) if !kind.is_empty() => {
                walk.object_except(map, |k| STRUCTURAL.contains(&k) || takes.contains(&k));
            }
            other => walk.value(other),
        }
        rec.fired(rs, label, &walk.found.fired);
        walk.found.refused.map_or(Ok(()), Err)
    }

    pub(super) fn tool_result(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        mut event: StreamEvent,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        if let Some(content) = event.value_mut().and_then(|j| j.get_mut("content")) {
            let mut walk = Walk::new(rs, Side::Output, Location::ToolResult);
            walk.value(content);
            rec.fired(rs, "response.TOOL_CALL_RESULT", &walk.found.fired);
            if let Some(rule) = walk.found.refused {
                return Err(rule);
            }
        }
        out.push(Item::Event(event));
        Ok(())
    }

    /// A `MESSAGES_SNAPSHOT`: every message whatever its role (a snapshot may carry user and
    /// system turns the client will display and send back), scanned whole.
    pub(super) fn snapshot(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        mut event: StreamEvent,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        let label = "response.MESSAGES_SNAPSHOT";
        let Some(messages) = event.value_mut().and_then(|j| j.get_mut("messages")) else {
            out.push(Item::Event(event));
            return Ok(());
        };
        let mut refused = None;
        match messages {
            Value::Array(list) => {
                for m in list.iter_mut() {
                    let location = match m.get("role").and_then(Value::as_str) {
                        Some("tool") => Location::ToolResult,
                        Some("user" | "system" | "developer") => Location::UserMessage,
                        _ => Location::AssistantText,
                    };
                    let scan = walk::agui_message(rs, Side::Output, location, m);
                    refused = refused.or(scan.refused());
                    for w in [&scan.content, &scan.tool_calls, &scan.rest] {
                        rec.fired(rs, label, &w.found.fired);
                    }
                }
            }
            other => {
                let mut walk = Walk::new(rs, Side::Output, Location::AssistantText);
                walk.value(other);
                rec.fired(rs, label, &walk.found.fired);
                refused = walk.found.refused;
            }
        }
        if let Some(rule) = refused {
            return Err(rule);
        }
        out.push(Item::Event(event));
        Ok(())
    }
}

/// Fields of a known event type that are ids, its type or a role: never text for a model,
/// and not scanned (an id rewritten by a redaction would break the stream).
const STRUCTURAL: &[&str] = &[
    "type",
    "messageId",
    "toolCallId",
    "parentMessageId",
    "threadId",
    "runId",
    "parentRunId",
    "role",
    "timestamp",
    "toolCallName",
];

/// `known_kind`: each AG-UI event type [`AguiGuard::event`] knows, as a static string with
/// its findings label — the event moves into the output while its type is still matched on,
/// without a copy per event.
macro_rules! known_kinds {
    ($($kind:literal),* $(,)?) => {
        /// `kind` and its label (`response.<kind>`), `None` for a type the guard does not know.
        pub(super) fn known_kind(kind: &str) -> Option<(&'static str, &'static str)> {
            match kind {
                $($kind => Some(($kind, concat!("response.", $kind))),)*
                _ => None,
            }
        }
    };
}

known_kinds!(
    "RUN_STARTED",
    "RUN_FINISHED",
    "RUN_ERROR",
    "STEP_STARTED",
    "STEP_FINISHED",
    "TEXT_MESSAGE_START",
    "TEXT_MESSAGE_CONTENT",
    "TEXT_MESSAGE_END",
    "TEXT_MESSAGE_CHUNK",
    "REASONING_START",
    "REASONING_MESSAGE_START",
    "REASONING_MESSAGE_CONTENT",
    "REASONING_MESSAGE_END",
    "REASONING_MESSAGE_CHUNK",
    "REASONING_END",
    "THINKING_START",
    "THINKING_END",
    "THINKING_TEXT_MESSAGE_START",
    "THINKING_TEXT_MESSAGE_CONTENT",
    "THINKING_TEXT_MESSAGE_END",
    "TOOL_CALL_START",
    "TOOL_CALL_ARGS",
    "TOOL_CALL_END",
    "TOOL_CALL_CHUNK",
    "TOOL_CALL_RESULT",
    "MESSAGES_SNAPSHOT",
    "STATE_SNAPSHOT",
    "STATE_DELTA",
    "ACTIVITY_SNAPSHOT",
    "ACTIVITY_DELTA",
    "CUSTOM",
    "RAW",
);
