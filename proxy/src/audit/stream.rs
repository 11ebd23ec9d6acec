//! [`SeenToolCalls`]: tool calls seen in a relayed AG-UI stream (id and name), for the audit
//! record. Scans only chunks that carry a `TOOL_CALL_START`/`TOOL_CALL_CHUNK`, and reads only
//! the event's ids, never its arguments.

use serde_json::Value;

/// Tool calls seen in a response stream, in order, one per call id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeenToolCalls(pub Vec<(String, String)>);

impl SeenToolCalls {
    /// Notes the tool calls started in `framed` (complete LF-framed SSE events, as the relay
    /// emits them).
    pub fn scan(&mut self, framed: &[u8]) {
        if !contains(framed, b"TOOL_CALL_") {
            return;
        }
        for line in framed.split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            if !contains(data, b"TOOL_CALL_START") && !contains(data, b"TOOL_CALL_CHUNK") {
                continue;
            }
            let Ok(event) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            let (Some(id), Some(name)) = (
                event.get("toolCallId").and_then(Value::as_str),
                event.get("toolCallName").and_then(Value::as_str),
            ) else {
                continue;
            };
            if !self.0.iter().any(|(seen, _)| seen == id) {
                self.0.push((id.to_string(), name.to_string()));
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_ids_and_names_are_noted_once() {
        let mut seen = SeenToolCalls::default();
        seen.scan(b"data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":\"hi\"}\n\n");
        assert!(seen.0.is_empty());
        seen.scan(
            b"data: {\"type\":\"TOOL_CALL_START\",\"toolCallId\":\"c1\",\"toolCallName\":\"search\"}\n\n\
              data: {\"type\":\"TOOL_CALL_ARGS\",\"toolCallId\":\"c1\",\"delta\":\"{}\"}\n\n\
              data: {\"type\":\"TOOL_CALL_CHUNK\",\"toolCallId\":\"c2\",\"toolCallName\":\"rm\"}\n\n\
              data: {\"type\":\"TOOL_CALL_CHUNK\",\"toolCallId\":\"c2\",\"delta\":\"x\"}\n\n",
        );
        seen.scan(b"data: {\"type\":\"TOOL_CALL_START\",\"toolCallId\":\"c1\",\"toolCallName\":\"search\"}\n\n");
        assert_eq!(
            seen.0,
            [
                ("c1".to_string(), "search".to_string()),
                ("c2".into(), "rm".into())
            ]
        );
    }
}
