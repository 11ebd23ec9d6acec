//! The incremental parser: bytes in, [`SseItem`]s out, one line at a time.
//!
//! Bytes are appended to one reusable buffer; complete lines are found with `memchr` and
//! interpreted in place, so the only allocations are the event's own strings. A partial line is
//! kept (and never re-scanned) until its terminator arrives, and is bounded by the event limit.

use memchr::{memchr, memchr2};

use super::{SseError, SseEvent, SseItem};

/// Default for [`SseParser::with_max_event_bytes`]: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental Server-Sent-Events parser.
///
/// Feed bytes with [`push`](Self::push) as they arrive, then drain complete items with
/// [`next_item`](Self::next_item) (or iterate [`items`](Self::items)) until it returns `None`.
/// Chunk boundaries never change the result: any split of the same bytes yields the same items,
/// including a CRLF split between two chunks. When the stream ends, call
/// [`finish`](Self::finish) to learn whether it stopped mid-event.
///
/// Memory is bounded by the event limit plus whatever was pushed and not yet drained, so drain
/// after every push.
#[derive(Debug)]
pub struct SseParser {
    /// Received bytes; `buf[pos..]` is not yet consumed (at most one partial line once drained).
    buf: Vec<u8>,
    pos: usize,
    /// `buf[pos..scanned]` is known to hold no line terminator.
    scanned: usize,
    max_event_bytes: usize,
    /// The BOM check has not run yet (it needs the first three bytes).
    at_stream_start: bool,
    /// The last line ended with CR: an LF that follows belongs to it.
    skip_lf: bool,
    block: Block,
}

/// The block (lines up to the next blank line) being read.
#[derive(Debug, Default)]
struct Block {
    fields: SseEvent,
    /// Bytes of the block's lines so far, each terminator counted as one byte.
    bytes: usize,
    /// Skipping an oversized block up to the next blank line.
    discarding: bool,
    /// While discarding: the current line already had bytes that were dropped.
    line_dirty: bool,
}

/// What [`SseParser::finish`] found at the end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct StreamEnd {
    /// Bytes received after the last complete item: an incomplete event or line that is not
    /// dispatched (per spec). Line terminators count as one byte each.
    pub pending_bytes: usize,
}

impl StreamEnd {
    /// Whether the stream ended on an item boundary (nothing was left pending).
    pub fn is_clean(&self) -> bool {
        self.pending_bytes == 0
    }
}

/// Iterator over the complete items buffered in a parser; see [`SseParser::items`].
#[derive(Debug)]
pub struct Items<'a> {
    parser: &'a mut SseParser,
}

impl Iterator for Items<'_> {
    type Item = Result<SseItem, SseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.parser.next_item()
    }
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default event limit ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that rejects events (and lines) larger than `max_event_bytes`, counting each
    /// line's bytes plus one per line terminator. A limit of 0 is treated as 1.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            max_event_bytes: max_event_bytes.max(1),
            at_stream_start: true,
            skip_lf: false,
            block: Block::default(),
        }
    }

    /// The configured event limit in bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Appends a chunk of the stream. Call [`next_item`](Self::next_item) until it returns `None`
    /// before pushing more, to keep memory bounded.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            // Keep only the unconsumed tail (a partial line, once drained).
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// [`push`](Self::push)es `chunk` and returns an iterator over the items now complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Items<'_> {
        self.push(chunk);
        self.items()
    }

    /// An iterator that drains the complete items (see [`next_item`](Self::next_item)).
    pub fn items(&mut self) -> Items<'_> {
        Items { parser: self }
    }

    /// The next complete item, or `None` when more bytes are needed.
    ///
    /// `Some(Err(_))` reports an oversized event; parsing continues with the next call.
    pub fn next_item(&mut self) -> Option<Result<SseItem, SseError>> {
        loop {
            if self.at_stream_start {
                let head = &self.buf[self.pos..];
                if head.len() < BOM.len() && BOM.starts_with(head) {
                    return None; // could still become a BOM
                }
                if head.starts_with(BOM) {
                    self.pos += BOM.len();
                }
                self.at_stream_start = false;
            }
            if self.skip_lf {
                match self.buf.get(self.pos) {
                    None => return None,
                    Some(b'\n') => self.pos += 1,
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let start = self.pos;
            let from = self.scanned.max(start);
            let Some(offset) = memchr2(b'\n', b'\r', &self.buf[from..]) else {
                self.scanned = self.buf.len();
                return self.check_partial_line();
            };
            let end = from + offset;
            self.skip_lf = self.buf[end] == b'\r';
            self.pos = end + 1;
            self.scanned = self.pos;
            if let Some(item) = self.block.line(&self.buf[start..end], self.max_event_bytes) {
                return Some(item);
            }
        }
    }

    /// Bytes received that are not part of a yielded item: the current incomplete event plus any
    /// partial line. Meaningful once [`next_item`](Self::next_item) has returned `None`.
    pub fn pending_bytes(&self) -> usize {
        // An LF completing a CRLF is part of a line that was already consumed.
        let lf_of_crlf = self.skip_lf && self.buf.get(self.pos) == Some(&b'\n');
        self.block.bytes + (self.buf.len() - self.pos) - usize::from(lf_of_crlf)
    }

    /// Ends the stream: an incomplete trailing event or line is dropped, not dispatched (per
    /// spec), and its size is reported so a proxy can tell a truncated stream. Drain
    /// [`next_item`](Self::next_item) first. The parser is reset and may be reused.
    pub fn finish(&mut self) -> StreamEnd {
        let end = StreamEnd {
            pending_bytes: self.pending_bytes(),
        };
        self.buf.clear();
        self.pos = 0;
        self.scanned = 0;
        self.at_stream_start = true;
        self.skip_lf = false;
        self.block = Block::default();
        end
    }

    /// No terminator in `buf[pos..]`: enforce the limit on the partial line.
    fn check_partial_line(&mut self) -> Option<Result<SseItem, SseError>> {
        let partial = self.buf.len() - self.pos;
        if partial == 0 {
            return None;
        }
        let block = &mut self.block;
        if !block.discarding && block.bytes + partial <= self.max_event_bytes {
            return None;
        }
        // Oversized (or already being skipped): drop the bytes, remember the line is not blank.
        let reported = !block.discarding;
        if reported {
            block.start_discard();
        }
        block.bytes = block.bytes.saturating_add(partial);
        block.line_dirty = true;
        self.buf.truncate(self.pos);
        self.scanned = self.pos;
        reported.then_some(Err(SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }))
    }
}

impl Block {
    /// Interprets one complete line (without its terminator).
    fn line(&mut self, line: &[u8], max: usize) -> Option<Result<SseItem, SseError>> {
        if self.discarding {
            let blank = line.is_empty() && !self.line_dirty;
            self.line_dirty = false;
            if blank {
                *self = Self::default();
            } else {
                // Only counts what was dropped (for `pending_bytes`); may grow without bound.
                self.bytes = self.bytes.saturating_add(line.len() + 1);
            }
            return None;
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if self.bytes + line.len() > max {
            self.start_discard();
            self.bytes = line.len() + 1;
            return Some(Err(SseError::EventTooLarge { limit: max }));
        }
        if let Some(text) = line.strip_prefix(b":") {
            return Some(Ok(SseItem::Comment(lossy(text))));
        }
        self.bytes += line.len() + 1;
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let fields = &mut self.fields;
        match name {
            b"event" => fields.event = Some(lossy(value)),
            b"data" => match &mut fields.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&String::from_utf8_lossy(value));
                }
                None => fields.data = Some(lossy(value)),
            },
            b"id" if !value.contains(&0) => fields.id = Some(lossy(value)),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits only, so the text is ASCII; values beyond u64 are ignored.
                if let Ok(retry) = std::str::from_utf8(value).unwrap_or_default().parse() {
                    fields.retry = Some(retry);
                }
            }
            _ => {} // unknown field, NUL-bearing id or malformed retry: ignored, per spec
        }
        None
    }

    /// A blank line: yield the block if it set any field, and start a new one.
    fn dispatch(&mut self) -> Option<Result<SseItem, SseError>> {
        let fields = std::mem::take(&mut self.fields);
        self.bytes = 0;
        (!fields.is_empty()).then_some(Ok(SseItem::Event(fields)))
    }

    fn start_discard(&mut self) {
        *self = Self {
            discarding: true,
            ..Self::default()
        };
    }
}

/// UTF-8 with invalid sequences replaced by U+FFFD.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::SseParser;

    #[test]
    fn buffer_stays_bounded_on_an_endless_line() {
        let mut parser = SseParser::with_max_event_bytes(64);
        let chunk = [b'x'; 50];
        let mut errors = 0;
        for _ in 0..1000 {
            errors += parser.feed(&chunk).count();
            assert!(parser.buf.len() <= 64 + chunk.len(), "{}", parser.buf.len());
        }
        assert_eq!(errors, 1);
        assert_eq!(parser.finish().pending_bytes, 50_000);
    }

    #[test]
    fn partial_line_is_scanned_once() {
        let mut parser = SseParser::new();
        parser.push(b"data: abc");
        assert!(parser.next_item().is_none());
        assert_eq!(parser.scanned, parser.buf.len());
        parser.push(b"def");
        assert!(parser.next_item().is_none());
        assert_eq!((parser.pos, parser.scanned), (0, 12));
    }
}
