//! Server-Sent Events: an incremental parser and an LF framer.
//!
//! The parser follows the WHATWG EventSource "interpreting an event stream" rules, with the
//! differences a faithful proxy needs (each is called out on the item it affects):
//!
//! - a block that set *any* field (`event`, `data`, `id` or `retry`) is dispatched, even without
//!   `data` — a browser would drop it, but a proxy must forward it;
//! - comments are surfaced as [`SseItem::Comment`] instead of being dropped;
//! - invalid UTF-8 is replaced with U+FFFD (lossy conversion) rather than rejected;
//! - memory is bounded: an event (or a single line) larger than the parser's limit yields
//!   [`SseError::EventTooLarge`] once and is skipped up to the next blank line.
//!
//! ```
//! use palisade_wire::sse::{SseEvent, SseItem, SseParser};
//!
//! let mut parser = SseParser::new();
//! parser.push(b"event: greet\r\ndata: hel");
//! assert!(parser.next_item().is_none()); // the event is not complete yet
//! parser.push(b"lo\r\ndata: world\r\n\r\n");
//! let item = parser.next_item().unwrap().unwrap();
//! let SseItem::Event(event) = item else { unreachable!() };
//! assert_eq!(event.event.as_deref(), Some("greet"));
//! assert_eq!(event.data.as_deref(), Some("hello\nworld"));
//! // Re-emitted with LF framing.
//! assert_eq!(&event.to_bytes()[..], b"event: greet\ndata: hello\ndata: world\n\n");
//! assert!(parser.finish().is_clean());
//! ```

mod encode;
mod parser;

pub use parser::{Items, SseParser, StreamEnd, DEFAULT_MAX_EVENT_BYTES};

/// One complete item read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A comment line (`:` followed by the text). The text is everything after the colon,
    /// verbatim (a leading space is kept), so re-encoding reproduces the line.
    Comment(String),
    /// A dispatched event: the fields of one blank-line-terminated block.
    Event(SseEvent),
}

/// The fields of one event, as the stream set them.
///
/// Every field is `None` when the block did not set it. The parser never yields an event whose
/// fields are all `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The last `event:` value of the block (`Some("")` for an explicit empty type).
    pub event: Option<String>,
    /// All `data:` values of the block joined with `\n`, without a trailing newline.
    pub data: Option<String>,
    /// The last `id:` value of the block; values containing NUL are ignored, per spec.
    pub id: Option<String>,
    /// The last valid `retry:` value (ASCII digits only, fitting in `u64`); others are ignored.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// An event carrying only `data`, the common case (`data: …\n\n`).
    pub fn with_data(data: impl Into<String>) -> Self {
        Self {
            data: Some(data.into()),
            ..Self::default()
        }
    }

    /// Whether no field is set (such an event encodes to a bare blank line).
    pub fn is_empty(&self) -> bool {
        self.event.is_none() && self.data.is_none() && self.id.is_none() && self.retry.is_none()
    }
}

/// Errors the parser reports in-band, between items; parsing continues after them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event or line exceeded the parser's byte limit. It was discarded up to the next blank
    /// line; the items after it are unaffected.
    #[error("SSE event exceeds the limit of {limit} bytes")]
    EventTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
