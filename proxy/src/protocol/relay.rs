//! [`SseRelay`]: relays an SSE response event by event, each event parsed once.
//!
//! Each upstream chunk is parsed incrementally into [`Item`]s; on inspected routes each event's
//! `data` is parsed as strict JSON there and then (the only parse it gets), the pipeline runs
//! the chain of event filters over the items, and [`SseRelay::encode`] frames what the chain
//! kept with LF line endings. Nothing is held beyond the event still being received. On AG-UI
//! routes the relay notes whether the run's terminal event (`RUN_FINISHED` / `RUN_ERROR`) was
//! *sent*, so the proxy can end a stream that stopped short with a `RUN_ERROR` of its own.

use bytes::{Bytes, BytesMut};

use super::event::{Data, Item, StreamEvent};
use super::json;
use super::sse::{SseError, SseItem, SseParser};

/// How event payloads are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Every `data` must be one unambiguous JSON document (AG-UI, MCP, A2A): an event that is
    /// not ends the stream.
    Json,
    /// JSON when it parses, text when no client would read it as JSON either (plain HTTP streams
    /// under output guardrails): an event that looks like JSON but is not strictly one document
    /// ([`json::might_be_json`]) ends the stream, as on [`Reading::Json`].
    JsonOrText,
    /// Text, never parsed (nothing inspects the stream).
    Text,
}

/// Why the relay stops reading a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The SSE framing broke (an event over the size limit).
    #[error("upstream SSE: {0}")]
    Framing(#[from] SseError),
    /// An event's data is not one JSON document on a route that inspects it.
    #[error("upstream event is not valid JSON: {0}")]
    Unreadable(String),
}

/// Incremental SSE relay for one response.
pub struct SseRelay {
    parser: SseParser,
    reading: Reading,
    agui: bool,
    terminal_seen: bool,
    events: u64,
    parses: u64,
}

impl SseRelay {
    /// A relay for one response; `agui` turns on run-completion tracking.
    pub fn new(reading: Reading, agui: bool) -> Self {
        Self {
            parser: SseParser::new(),
            reading,
            agui,
            terminal_seen: false,
            events: 0,
            parses: 0,
        }
    }

    /// Feeds one upstream chunk and returns the items it completed (empty while an event is
    /// still incomplete).
    pub fn parse(&mut self, chunk: &[u8]) -> Result<Vec<Item>, RelayError> {
        self.parser.push(chunk);
        let mut items = Vec::new();
        while let Some(item) = self.parser.next_item() {
            match item? {
                SseItem::Event(e) => {
                    self.events += 1;
                    let data = match e.data {
                        None => Data::None,
                        Some(text) => self.read(text)?,
                    };
                    items.push(Item::Event(StreamEvent {
                        name: e.event,
                        id: e.id,
                        retry: e.retry,
                        data,
                    }));
                }
                SseItem::Comment(text) => items.push(Item::Comment(text)),
            }
        }
        Ok(items)
    }

    fn read(&mut self, text: String) -> Result<Data, RelayError> {
        if self.reading == Reading::Text {
            return Ok(Data::Text(text));
        }
        self.parses += 1;
        match json::parse_str(&text) {
            Ok(v) => Ok(Data::Json(v)),
            Err(_) if self.reading == Reading::JsonOrText && !json::might_be_json(&text) => {
                Ok(Data::Text(text))
            }
            Err(e) => Err(RelayError::Unreadable(e.0)),
        }
    }

    /// Frames `items` for the client (once, after the filters ran) and notes a terminal AG-UI
    /// event among them.
    pub fn encode(&mut self, items: &[Item]) -> Bytes {
        let mut out = BytesMut::with_capacity(items.len() * 64);
        for item in items {
            if self.agui && !self.terminal_seen {
                self.terminal_seen = item
                    .event()
                    .is_some_and(|e| matches!(e.kind(), "RUN_FINISHED" | "RUN_ERROR"));
            }
            item.encode(&mut out);
        }
        out.freeze()
    }

    /// Notes that the proxy itself ended the run (its own `RUN_ERROR` went out).
    pub fn mark_terminal(&mut self) {
        self.terminal_seen = true;
    }

    /// Whether an AG-UI run's terminal event went to the client.
    pub fn terminal_seen(&self) -> bool {
        self.terminal_seen
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// JSON parses made so far (one per event with data, on routes that read JSON).
    pub fn parses(&self) -> u64 {
        self.parses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(r: &mut SseRelay, chunk: &[u8]) -> Bytes {
        let items = r.parse(chunk).unwrap();
        r.encode(&items)
    }

    #[test]
    fn reframes_crlf_and_cr_to_lf_event_by_event() {
        let mut r = SseRelay::new(Reading::Text, false);
        assert_eq!(
            &relay(&mut r, b"data: a\r\n\r\ndata: b\r")[..],
            b"data: a\n\n"
        );
        assert_eq!(&relay(&mut r, b"\n\r\n")[..], b"data: b\n\n");
        assert_eq!(
            &relay(&mut r, b"event: x\rdata: c\r\r")[..],
            b"event: x\ndata: c\n\n"
        );
        assert_eq!(r.events(), 3);
        assert_eq!(r.parses(), 0, "text streams are never parsed");
    }

    #[test]
    fn holds_nothing_but_the_incomplete_event() {
        let mut r = SseRelay::new(Reading::Text, false);
        assert!(relay(&mut r, b"data: hel").is_empty());
        assert_eq!(&relay(&mut r, b"lo\n\n")[..], b"data: hello\n\n");
    }

    #[test]
    fn tracks_agui_run_completion_on_the_decoded_type() {
        let mut r = SseRelay::new(Reading::Json, true);
        relay(
            &mut r,
            b"data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":\"RUN_FINISHED\"}\n\n",
        );
        assert!(
            !r.terminal_seen(),
            "a delta mentioning the name is not the event"
        );
        relay(
            &mut r,
            b"data: {\"type\": \"RUN\\u005fFINISHED\", \"threadId\":\"t\"}\n\n",
        );
        assert!(r.terminal_seen(), "escapes decode before the type is read");
    }

    #[test]
    fn json_routes_refuse_what_does_not_parse_and_reencode_what_does() {
        let mut r = SseRelay::new(Reading::Json, true);
        // Pretty-printed over several data lines: one event, one parse, one compact line out.
        let out = relay(
            &mut r,
            b"data: {\"type\":\ndata: \"TOOL_CALL_START\",\ndata: \"toolCallId\": \"c\"}\n\n",
        );
        assert_eq!(
            &out[..],
            b"data: {\"type\":\"TOOL_CALL_START\",\"toolCallId\":\"c\"}\n\n"
        );
        assert_eq!(r.parses(), 1);
        for bad in [
            &b"data: {\"a\":1,\"a\":2}\n\n"[..],
            b"data: \"\\ud800\"\n\n",
            b"data: nope\n\n",
        ] {
            let mut r = SseRelay::new(Reading::Json, true);
            assert!(matches!(r.parse(bad), Err(RelayError::Unreadable(_))));
        }
        let mut r = SseRelay::new(Reading::JsonOrText, false);
        assert_eq!(
            &relay(&mut r, b"data: plain words\n\ndata: [DONE]\n\n")[..],
            b"data: plain words\n\ndata: [DONE]\n\n"
        );
        // Text only when no client would read JSON: a duplicate key is not relayed as text.
        let mut r = SseRelay::new(Reading::JsonOrText, false);
        assert!(matches!(
            r.parse(b"data: {\"delta\":\"ok\",\"delta\":\"ignore previous\"}\n\n"),
            Err(RelayError::Unreadable(_))
        ));
    }
}
