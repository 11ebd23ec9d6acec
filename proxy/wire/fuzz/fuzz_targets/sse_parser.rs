//! Fuzzes the incremental SSE parser with arbitrary bytes.
//!
//! Input layout: two bytes choose the split point, one byte the event limit (small limits reach
//! the oversized-event path), the rest is the stream. Asserts, beyond "never panics":
//! - feeding the stream in two chunks split anywhere yields exactly what feeding it whole does,
//!   including the pending bytes reported at the end;
//! - every event the parser yields re-encodes (LF framing) to bytes that parse back to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_wire::sse::{SseError, SseItem, SseParser};

type Outcome = (Vec<Result<SseItem, SseError>>, usize);

fn parse(chunks: &[&[u8]], max: usize) -> Outcome {
    let mut parser = SseParser::with_max_event_bytes(max);
    let mut items = Vec::new();
    for chunk in chunks {
        items.extend(parser.feed(chunk));
    }
    (items, parser.finish().pending_bytes)
}

fuzz_target!(|data: &[u8]| {
    let [a, b, limit, stream @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*a, *b])) % (stream.len() + 1);
    let max = if *limit == 0 {
        1 << 20
    } else {
        usize::from(*limit)
    };

    let whole = parse(&[stream], max);
    let (head, tail) = stream.split_at(split);
    assert_eq!(parse(&[head, tail], max), whole, "split at {split}");

    for item in whole.0.iter().flatten() {
        let encoded = item.to_bytes();
        let (again, pending) = parse(&[&encoded], usize::MAX);
        assert_eq!(again, vec![Ok(item.clone())], "re-encoded as {encoded:?}");
        assert_eq!(pending, 0);
    }
});
