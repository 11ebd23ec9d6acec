//! AG-UI: the wire types (`palisade-wire`), and the events the proxy itself writes into a
//! stream — `RUN_ERROR` with the documented error code ends a run the proxy stopped.

pub use palisade_wire::agui::*;

use serde_json::json;

use super::event::StreamEvent;

/// The `RUN_ERROR` event that ends a run with `code` (a documented error code) and `message`.
pub fn run_error_event(code: &str, message: &str) -> StreamEvent {
    StreamEvent::json(json!({"type": "RUN_ERROR", "message": message, "code": code}))
}

/// Tool calls an upstream started in a relayed AG-UI stream (id and name; never arguments), in
/// order, one per call id — the audit record's `tool_calls` ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeenToolCalls(pub Vec<(String, String)>);

impl SeenToolCalls {
    /// Notes the tool calls started among `items` (parsed events).
    pub fn note(&mut self, items: &[super::event::Item]) {
        for event in items.iter().filter_map(super::event::Item::event) {
            if !matches!(event.kind(), "TOOL_CALL_START" | "TOOL_CALL_CHUNK") {
                continue;
            }
            let (Some(id), Some(name)) = (
                event.str_field("toolCallId"),
                event.str_field("toolCallName"),
            ) else {
                continue;
            };
            if !self.0.iter().any(|(seen, _)| seen == id) {
                self.0.push((id.to_string(), name.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::relay::{Reading, SseRelay};

    #[test]
    fn tool_call_ids_and_names_are_noted_once() {
        let mut seen = SeenToolCalls::default();
        let mut relay = SseRelay::new(Reading::Json, true);
        let mut feed = |chunk: &[u8]| seen.note(&relay.parse(chunk).unwrap());
        feed(b"data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":\"hi\"}\n\n");
        feed(
            b"data: {\"type\":\"TOOL_CALL_START\",\"toolCallId\":\"c1\",\"toolCallName\":\"search\"}\n\n\
              data: {\"type\":\"TOOL_CALL_ARGS\",\"toolCallId\":\"c1\",\"delta\":\"{}\"}\n\n\
              data: {\"type\":\"TOOL\\u005fCALL_CHUNK\",\"toolCallId\":\"c2\",\"toolCallName\":\"rm\"}\n\n\
              data: {\"type\":\"TOOL_CALL_CHUNK\",\"toolCallId\":\"c2\",\"delta\":\"x\"}\n\n",
        );
        // Pretty-printed over several data lines: still one event with its id.
        feed(b"data: {\"type\": \"TOOL_CALL_START\",\ndata:  \"toolCallId\": \"c3\",\ndata:  \"toolCallName\": \"x\"}\n\n");
        feed(b"data: {\"type\":\"TOOL_CALL_START\",\"toolCallId\":\"c1\",\"toolCallName\":\"search\"}\n\n");
        assert_eq!(
            seen.0,
            [
                ("c1".to_string(), "search".to_string()),
                ("c2".into(), "rm".into()),
                ("c3".into(), "x".into())
            ]
        );
    }
}
