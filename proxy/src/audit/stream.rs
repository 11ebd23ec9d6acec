//! The audit trail as a pipeline stage: it notes the tool calls the upstream started in a
//! relayed AG-UI stream (id and name, read from the parsed events — never the arguments), and
//! fills the record with them. It runs first in the event chain, before tool filtering, so the
//! record lists the calls authorization dropped too.

use crate::protocol::event::Item;
use crate::stage::{Exchange, Stage};

use super::{AuditRecord, Auditor};

/// Tool calls seen in a response stream, in order, one per call id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeenToolCalls(pub Vec<(String, String)>);

impl SeenToolCalls {
    /// Notes the tool calls started among `items`.
    pub fn note(&mut self, items: &[Item]) {
        for event in items.iter().filter_map(Item::event) {
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

#[async_trait::async_trait]
impl Stage for Auditor {
    type State = SeenToolCalls;

    fn on_events(
        &self,
        _x: &Exchange<'_>,
        state: &mut SeenToolCalls,
        items: &mut Vec<Item>,
        _end: bool,
    ) -> Result<(), crate::error::ProxyError> {
        if self.is_enabled() {
            state.note(items);
        }
        Ok(())
    }

    fn audit(&self, state: &SeenToolCalls, record: &mut AuditRecord) {
        record.note_tool_calls(&state.0);
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
