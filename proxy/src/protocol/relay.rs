//! [`SseRelay`]: relays an SSE response event by event, re-framed with LF line endings.
//!
//! Each upstream chunk is parsed incrementally; every event completed by the chunk is re-encoded
//! and handed on at once, so nothing is held beyond the event still being received. On AG-UI
//! routes the relay also notes whether the run reached its terminal event (`RUN_FINISHED` or
//! `RUN_ERROR`), so the proxy can end a stream that stopped short with a `RUN_ERROR` of its own.

use bytes::{Bytes, BytesMut};

use super::sse::{SseError, SseItem, SseParser};

/// Incremental SSE re-framer for one response.
pub struct SseRelay {
    parser: SseParser,
    agui: bool,
    terminal_seen: bool,
    events: u64,
}

impl SseRelay {
    /// A relay for one response; `agui` turns on run-completion tracking.
    pub fn new(agui: bool) -> Self {
        Self {
            parser: SseParser::new(),
            agui,
            terminal_seen: false,
            events: 0,
        }
    }

    /// Feeds one upstream chunk and returns the LF-framed bytes of the items it completed
    /// (empty while an event is still incomplete).
    pub fn relay(&mut self, chunk: &[u8]) -> Result<Bytes, SseError> {
        self.parser.push(chunk);
        let mut out = BytesMut::with_capacity(chunk.len() + 16);
        while let Some(item) = self.parser.next_item() {
            match item? {
                SseItem::Event(event) => {
                    self.events += 1;
                    if self.agui && !self.terminal_seen {
                        self.terminal_seen = event.data.as_deref().is_some_and(is_terminal);
                    }
                    event.encode(&mut out);
                }
                comment @ SseItem::Comment(_) => comment.encode(&mut out),
            }
        }
        Ok(out.freeze())
    }

    /// Whether an AG-UI run's terminal event went by.
    pub fn terminal_seen(&self) -> bool {
        self.terminal_seen
    }

    /// Events relayed so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}

/// Whether an AG-UI event's JSON is `RUN_FINISHED` or `RUN_ERROR`. The substring test keeps the
/// JSON parse off every other event.
fn is_terminal(data: &str) -> bool {
    if !(data.contains("RUN_FINISHED") || data.contains("RUN_ERROR")) {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Typed<'_>>(data)
        .is_ok_and(|t| t.kind == "RUN_FINISHED" || t.kind == "RUN_ERROR")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reframes_crlf_and_cr_to_lf_event_by_event() {
        let mut relay = SseRelay::new(false);
        let first = relay.relay(b"data: a\r\n\r\ndata: b\r").unwrap();
        assert_eq!(&first[..], b"data: a\n\n");
        let second = relay.relay(b"\n\r\n").unwrap();
        assert_eq!(&second[..], b"data: b\n\n");
        let third = relay.relay(b"event: x\rdata: c\r\r").unwrap();
        assert_eq!(&third[..], b"event: x\ndata: c\n\n");
        assert_eq!(relay.events(), 3);
    }

    #[test]
    fn holds_nothing_but_the_incomplete_event() {
        let mut relay = SseRelay::new(false);
        assert!(relay.relay(b"data: hel").unwrap().is_empty());
        assert_eq!(&relay.relay(b"lo\n\n").unwrap()[..], b"data: hello\n\n");
    }

    #[test]
    fn tracks_agui_run_completion() {
        let mut relay = SseRelay::new(true);
        relay
            .relay(b"data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":\"RUN_FINISHED\"}\n\n")
            .unwrap();
        assert!(
            !relay.terminal_seen(),
            "a delta mentioning the name is not the event"
        );
        relay
            .relay(b"data: {\"type\": \"RUN_FINISHED\", \"threadId\":\"t\",\"runId\":\"r\"}\n\n")
            .unwrap();
        assert!(relay.terminal_seen());
    }
}
