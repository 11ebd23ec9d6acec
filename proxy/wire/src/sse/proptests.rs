//! Property tests: chunking invariance, line-ending invariance, encode/parse round trips.

use proptest::collection::vec;
use proptest::prelude::*;

use super::{SseError, SseEvent, SseItem, SseParser, DEFAULT_MAX_EVENT_BYTES};

/// Everything a parse observes: the items in order and the pending bytes at the end.
type Outcome = (Vec<Result<SseItem, SseError>>, usize);

fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, max: usize) -> Outcome {
    let mut parser = SseParser::with_max_event_bytes(max);
    let mut items = Vec::new();
    for chunk in chunks {
        items.extend(parser.feed(chunk));
    }
    (items, parser.finish().pending_bytes)
}

/// Splits `input` at the given (unsorted, possibly repeated) points.
fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        chunks.push(&input[start..cut]);
        start = cut;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Byte strings that look like event streams often enough to reach every rule.
fn sse_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"data"[..]),
        Just(&b"event"[..]),
        Just(&b"id"[..]),
        Just(&b"retry"[..]),
        Just(&b":"[..]),
        Just(&b" "[..]),
        Just(&b"\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\n\n"[..]),
        Just(&b"x"[..]),
        Just(&b"12"[..]),
        Just(&b"\0"[..]),
        Just(&b"\xEF\xBB\xBF"[..]),
        Just(&b"\xC3\xA9"[..]),
        Just(&b"\xFF"[..]),
        Just(&b"0123456789abcdef"[..]),
    ];
    prop_oneof![
        4 => vec(token, 0..60).prop_map(|tokens| tokens.concat()),
        1 => vec(any::<u8>(), 0..200),
    ]
}

fn max_event_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![Just(DEFAULT_MAX_EVENT_BYTES), 1..48usize]
}

/// A line with no CR or LF: a field, a comment, or blank.
fn line() -> impl Strategy<Value = String> {
    let value = "[a-z0-9 :\\x00é]{0,10}";
    prop_oneof![
        Just(String::new()),
        Just(String::new()),
        ("(data|event|id|retry|foo)", value).prop_map(|(n, v)| format!("{n}:{v}")),
        ("(data|event|id)", value).prop_map(|(n, v)| format!("{n} {v}")),
        "[0-9]{0,3}".prop_map(|v| format!("retry: {v}")),
        value.prop_map(|v| format!(":{v}")),
        Just("data".to_owned()),
    ]
}

/// An event with at least one field; strings free of CR/LF (data may contain LF).
fn encodable_event() -> impl Strategy<Value = SseEvent> {
    (
        proptest::option::of("[^\r\n]*"),
        proptest::option::of("[^\r]*"),
        proptest::option::of("[^\r\n\0]*"),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(event, data, id, retry)| SseEvent {
            event,
            data,
            id,
            retry,
        })
        .prop_filter("at least one field", |e| !e.is_empty())
}

proptest! {
    /// (a) Any split of the input yields the same items as feeding it whole.
    #[test]
    fn chunking_does_not_change_items(
        input in sse_like_bytes(),
        points in vec(any::<usize>(), 0..8),
        max in max_event_bytes(),
    ) {
        let whole = parse_chunks([&input[..]], max);
        let chunked = parse_chunks(split_at_points(&input, &points), max);
        prop_assert_eq!(&chunked, &whole);
        let bytewise = parse_chunks(input.chunks(1), max);
        prop_assert_eq!(&bytewise, &whole);
    }

    /// (b) LF, CRLF and CR versions of the same stream parse identically.
    #[test]
    fn line_endings_are_equivalent(lines in vec(line(), 0..24), max in max_event_bytes()) {
        let with = |nl: &str| lines.iter().map(|l| format!("{l}{nl}")).collect::<String>();
        let lf = parse_chunks([with("\n").as_bytes()], max);
        prop_assert_eq!(&parse_chunks([with("\r\n").as_bytes()], max), &lf);
        prop_assert_eq!(&parse_chunks([with("\r").as_bytes()], max), &lf);
    }

    /// (c) encode → parse round-trips events whose strings hold no CR (LF only in data).
    #[test]
    fn encoded_events_round_trip(events in vec(encodable_event(), 1..4)) {
        let mut wire = bytes::BytesMut::new();
        for event in &events {
            event.encode(&mut wire);
        }
        let expected: Vec<_> = events.into_iter().map(|e| Ok(SseItem::Event(e))).collect();
        prop_assert_eq!(parse_chunks([&wire[..]], usize::MAX), (expected, 0));
    }

    /// Comments without line breaks round-trip too.
    #[test]
    fn encoded_comments_round_trip(text in "[^\r\n]*") {
        let item = SseItem::Comment(text);
        let parsed = parse_chunks([&item.to_bytes()[..]], usize::MAX);
        prop_assert_eq!(parsed, (vec![Ok(item)], 0));
    }

    /// Whatever the strings hold, one encoded event is at most one event on the wire: values
    /// cannot inject fields or frames.
    #[test]
    fn encoding_cannot_inject_frames(
        event in proptest::option::of(".*"),
        data in proptest::option::of(".*"),
        id in proptest::option::of(".*"),
    ) {
        let e = SseEvent { event, data, id, retry: None };
        let (items, pending) = parse_chunks([&e.to_bytes()[..]], usize::MAX);
        prop_assert!(items.len() <= 1, "{:?}", items);
        prop_assert_eq!(pending, 0);
    }
}
