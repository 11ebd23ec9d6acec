//! The framer: re-emits items with LF framing, whatever line endings came in.
//!
//! An event encodes as `event:`, `id:`, `retry:` lines (those that are set), one `data:` line per
//! line of data, then a blank line. A comment encodes as `:text` lines followed by a blank line,
//! so every encoded item is a complete, self-contained frame: the parser yields a comment as soon
//! as its line ends, before the event it may have been interleaved with, so emitting it as its
//! own frame never splits an event. [`SseItem::heartbeat`] is the empty comment, `:\n\n`.
//!
//! Line breaks inside values are handled so that output can never inject extra fields or frames:
//! in `data` and comments, CR, LF and CRLF all start a new `data:` / `:` line; in the single-line
//! fields `event` and `id`, each CR or LF is replaced by a space.

use bytes::{Bytes, BytesMut};
use memchr::memchr2;

use super::{SseEvent, SseItem};

impl SseEvent {
    /// Appends the event's LF-framed encoding to `out`.
    ///
    /// An event with no field set encodes as a lone blank line, which a parser ignores.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len_hint());
        if let Some(event) = &self.event {
            single_line_field(out, b"event", event);
        }
        if let Some(id) = &self.id {
            single_line_field(out, b"id", id);
        }
        if let Some(retry) = self.retry {
            single_line_field(out, b"retry", &retry.to_string());
        }
        if let Some(data) = &self.data {
            for line in lines(data) {
                field(out, b"data", line);
            }
        }
        out.extend_from_slice(b"\n");
    }

    /// The event's LF-framed encoding as one frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// An upper-bound-ish size estimate used to reserve once.
    fn encoded_len_hint(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 8);
        len(&self.event) + len(&self.id) + len(&self.data) + 30
    }
}

impl SseItem {
    /// A keep-alive comment: encodes to `:\n\n`.
    pub fn heartbeat() -> Self {
        Self::Comment(String::new())
    }

    /// Appends the item's LF-framed encoding to `out` (see the module docs for comments).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Event(event) => event.encode(out),
            Self::Comment(text) => {
                out.reserve(text.len() + 3);
                for line in lines(text) {
                    out.extend_from_slice(b":");
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\n");
                }
                out.extend_from_slice(b"\n");
            }
        }
    }

    /// The item's LF-framed encoding as one frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// `name: value\n`, or `name:\n` for an empty value (both parse back to the same value).
fn field(out: &mut BytesMut, name: &[u8], value: &str) {
    out.extend_from_slice(name);
    out.extend_from_slice(b":");
    if !value.is_empty() {
        out.extend_from_slice(b" ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\n");
}

/// Like [`field`], with CR and LF in the value replaced by spaces.
fn single_line_field(out: &mut BytesMut, name: &[u8], value: &str) {
    if memchr2(b'\r', b'\n', value.as_bytes()).is_none() {
        field(out, name, value);
    } else {
        field(out, name, &value.replace(['\r', '\n'], " "));
    }
}

/// Splits on LF, CRLF and CR, the way the parser splits lines. Always yields at least one line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr2(b'\r', b'\n', current.as_bytes()) {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
        }
    })
}
