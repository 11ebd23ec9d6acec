//! Fuzzes the SSE relay of a response (`palisade_proxy::protocol::relay::SseRelay`): arbitrary
//! bytes, cut into chunks at fuzzed boundaries, parsed into items (each event's data read once as
//! strict JSON, JSON-or-text, or text), then framed again (`SseRelay::encode`).
//!
//! Input layout: one byte picks the reading and AG-UI tracking, one byte the number of cuts
//! (0–15), two bytes per cut (its offset), the rest is the stream. Beyond "never panics":
//! - chunking does not change the items: fed in fuzzed chunks, in one piece and byte by byte, the
//!   relay yields the same items and the same error (an error ends the stream: the items of the
//!   chunk that failed are not relayed, so a chunked feed yields a prefix of the byte-by-byte
//!   one);
//! - framing is canonical: what the relay encodes parses, in a fresh relay, to the same items and
//!   encodes to the same bytes again, floats included (`support/floats.rs`);
//! - the counters agree with the items (one event counted per event, one parse per event with
//!   data on routes that read JSON), and on AG-UI routes the terminal event is noticed exactly
//!   when a `RUN_FINISHED` / `RUN_ERROR` is among the items encoded.

#![no_main]

#[path = "support/floats.rs"]
mod floats;

use libfuzzer_sys::fuzz_target;
use palisade_proxy::protocol::event::{Data, Item};
use palisade_proxy::protocol::relay::{Reading, RelayError, SseRelay};

/// The items a relay yields over `chunks`, until its first error.
fn relay<'a>(
    reading: Reading,
    agui: bool,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (SseRelay, Vec<Item>, Option<RelayError>) {
    let mut relay = SseRelay::new(reading, agui);
    let mut items = Vec::new();
    for chunk in chunks {
        match relay.parse(chunk) {
            Ok(mut more) => items.append(&mut more),
            Err(e) => return (relay, items, Some(e)),
        }
    }
    (relay, items, None)
}

fuzz_target!(|data: &[u8]| {
    let [flags, cuts, rest @ ..] = data else {
        return;
    };
    let reading = [Reading::Json, Reading::JsonOrText, Reading::Text][usize::from(flags % 3)];
    let agui = flags & 4 != 0;
    let cuts = usize::from(cuts % 16);
    if rest.len() < 2 * cuts {
        return;
    }
    let (cut_bytes, stream) = rest.split_at(2 * cuts);
    let mut at: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    let chunks: Vec<&[u8]> = at.windows(2).map(|w| &stream[w[0]..w[1]]).collect();

    let (bytewise, items, error) = relay(reading, agui, stream.chunks(1));
    let (_, chunked, chunked_error) = relay(reading, agui, chunks.iter().copied());
    assert_eq!(chunked_error, error, "cut at {at:?}");
    assert!(items.starts_with(&chunked), "cut at {at:?}");
    let (_, whole, whole_error) = relay(reading, agui, [stream]);
    assert_eq!(whole_error, error);
    if error.is_none() {
        assert_eq!(chunked, items, "cut at {at:?}");
        assert_eq!(whole, items);
        let events = items.iter().filter(|i| i.event().is_some()).count();
        assert_eq!(bytewise.events(), events as u64);
        let with_data = items
            .iter()
            .filter_map(Item::event)
            .filter(|e| e.data != Data::None)
            .count();
        let parses = if reading == Reading::Text {
            0
        } else {
            with_data
        };
        assert_eq!(bytewise.parses(), parses as u64);
    }
    if reading == Reading::Json {
        assert!(
            items
                .iter()
                .filter_map(Item::event)
                .all(|e| !matches!(e.data, Data::Text(_))),
            "JSON routes never relay text"
        );
    }

    let mut framer = SseRelay::new(reading, agui);
    let framed = framer.encode(&items);
    let terminal = items
        .iter()
        .filter_map(Item::event)
        .any(|e| matches!(e.kind(), "RUN_FINISHED" | "RUN_ERROR"));
    assert_eq!(framer.terminal_seen(), agui && terminal);
    let (mut again, reread, reread_error) = relay(reading, agui, [&framed[..]]);
    assert_eq!(
        reread_error, None,
        "the relay's own framing refused: {framed:?}"
    );
    assert_eq!(reread.len(), items.len(), "framed as {framed:?}");
    for (r, i) in reread.iter().zip(&items) {
        assert!(same_item(r, i), "framed as {framed:?}: {r:?} is not {i:?}");
    }
    let stable = items
        .iter()
        .filter_map(Item::event)
        .filter_map(|e| e.value())
        .all(floats::bytes_are_stable);
    if stable {
        assert_eq!(reread, items);
        assert_eq!(again.encode(&reread), framed, "framing is not canonical");
    }
});

/// The same item, floats compared as `support/floats.rs` allows.
fn same_item(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Event(x), Item::Event(y)) => {
            (&x.name, &x.id, x.retry) == (&y.name, &y.id, y.retry)
                && match (&x.data, &y.data) {
                    (Data::Json(p), Data::Json(q)) => floats::same(p, q),
                    (p, q) => p == q,
                }
        }
        (x, y) => x == y,
    }
}
