//! Unit tests: one or more per parsing and framing rule.

use super::{SseError, SseEvent, SseItem, SseParser};

/// Parses `chunks` in order with `parser`, draining after each push.
fn parse_with(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<Result<SseItem, SseError>> {
    let mut items = Vec::new();
    for chunk in chunks {
        items.extend(parser.feed(chunk));
    }
    items
}

fn parse(chunks: &[&[u8]]) -> Vec<Result<SseItem, SseError>> {
    parse_with(&mut SseParser::new(), chunks)
}

fn data(d: &str) -> Result<SseItem, SseError> {
    Ok(SseItem::Event(SseEvent::with_data(d)))
}

fn event(f: impl FnOnce(&mut SseEvent)) -> Result<SseItem, SseError> {
    let mut e = SseEvent::default();
    f(&mut e);
    Ok(SseItem::Event(e))
}

fn comment(text: &str) -> Result<SseItem, SseError> {
    Ok(SseItem::Comment(text.to_owned()))
}

#[test]
fn data_event_with_each_line_ending() {
    for nl in ["\n", "\r\n", "\r"] {
        let input = format!("data: a{nl}data: b{nl}{nl}data: c{nl}{nl}");
        assert_eq!(
            parse(&[input.as_bytes()]),
            [data("a\nb"), data("c")],
            "{nl:?}"
        );
    }
}

#[test]
fn cr_at_chunk_end_then_lf_is_one_line_ending() {
    // If the LF were taken as its own (blank) line, "a" would be dispatched alone.
    assert_eq!(
        parse(&[b"data: a\r", b"\ndata: b\r\n\r", b"\n"]),
        [data("a\nb")]
    );
    // And the CR alone is enough to end the line: no waiting for the next chunk.
    let mut parser = SseParser::new();
    assert_eq!(parse_with(&mut parser, &[b"data: a\r\r"]), [data("a")]);
    assert_eq!(parse_with(&mut parser, &[b"\ndata: b\n\n"]), [data("b")]);
}

#[test]
fn mixed_line_endings_in_one_stream() {
    assert_eq!(
        parse(&[b"data: a\r\ndata: b\rdata: c\n\r\n"]),
        [data("a\nb\nc")]
    );
}

#[test]
fn leading_bom_is_stripped_once() {
    assert_eq!(parse(&[b"\xEF\xBB\xBFdata: a\n\n"]), [data("a")]);
    // Split across chunks.
    assert_eq!(parse(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]), [data("a")]);
    // A second BOM is part of the field name, which is then unknown.
    assert_eq!(
        parse(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"]),
        [data("b")]
    );
    // A BOM prefix that turns out not to be one is kept (and becomes U+FFFD).
    assert_eq!(
        parse(&[b"\xEF\xBB", b"data\n\n"]),
        Vec::<Result<SseItem, SseError>>::new()
    );
    let mut parser = SseParser::new();
    assert_eq!(parse_with(&mut parser, &[b"\xEF\xBB"]), []);
    assert_eq!(parser.pending_bytes(), 2);
}

#[test]
fn comments_are_items_and_do_not_interrupt_events() {
    assert_eq!(
        parse(&[b": hello\ndata: a\n:\ndata: b\n\n"]),
        [comment(" hello"), comment(""), data("a\nb")]
    );
}

#[test]
fn field_values() {
    assert_eq!(
        parse(&[b"event: add\nid: 7\nretry: 1500\ndata: x\n\n"]),
        [event(|e| {
            e.event = Some("add".into());
            e.id = Some("7".into());
            e.retry = Some(1500);
            e.data = Some("x".into());
        })]
    );
    // The last event/id/retry of a block wins.
    assert_eq!(
        parse(&[b"event: a\nevent: b\nid: 1\nid: 2\nretry: 1\nretry: 2\n\n"]),
        [event(|e| {
            e.event = Some("b".into());
            e.id = Some("2".into());
            e.retry = Some(2);
        })]
    );
}

#[test]
fn exactly_one_leading_space_is_stripped() {
    assert_eq!(
        parse(&[b"data:x\n\ndata:  x\n\ndata: \n\ndata:\n\n"]),
        [data("x"), data(" x"), data(""), data("")]
    );
}

#[test]
fn line_without_colon_is_a_field_with_empty_value() {
    assert_eq!(parse(&[b"data\ndata\n\n"]), [data("\n")]);
    assert_eq!(
        parse(&[b"event\n\n"]),
        [event(|e| e.event = Some(String::new()))]
    );
}

#[test]
fn id_containing_nul_is_ignored() {
    assert_eq!(parse(&[b"id: a\0b\ndata: x\n\n"]), [data("x")]);
    assert_eq!(parse(&[b"id: a\0b\n\n"]), []);
    assert_eq!(parse(&[b"id\n\n"]), [event(|e| e.id = Some(String::new()))]);
}

#[test]
fn retry_must_be_ascii_digits() {
    for bad in [
        "12a",
        "",
        "  5",
        " 5 ",
        "-1",
        "1.5",
        "99999999999999999999999",
    ] {
        let input = format!("retry:{bad}\ndata: x\n\n");
        assert_eq!(parse(&[input.as_bytes()]), [data("x")], "{bad:?}");
    }
    assert_eq!(
        parse(&[b"retry: 0042\n\n"]),
        [event(|e| e.retry = Some(42))]
    );
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(parse(&[b"foo: bar\nData: x\n\n"]), []);
    assert_eq!(parse(&[b"foo: bar\ndata: x\n\n"]), [data("x")]);
}

#[test]
fn blocks_with_only_id_or_retry_are_dispatched() {
    assert_eq!(
        parse(&[b"id: 9\n\nretry: 10\n\n"]),
        [
            event(|e| e.id = Some("9".into())),
            event(|e| e.retry = Some(10))
        ]
    );
}

#[test]
fn blank_lines_without_fields_yield_nothing() {
    assert_eq!(parse(&[b"\n\n\r\n\r\rdata: a\n\n\n\n"]), [data("a")]);
}

#[test]
fn invalid_utf8_is_replaced() {
    assert_eq!(parse(&[b"data: a\xFFb\n\n"]), [data("a\u{FFFD}b")]);
    // A multi-byte character split across chunks is intact.
    assert_eq!(parse(&[b"data: \xC3", b"\xA9\n\n"]), [data("é")]);
}

#[test]
fn oversized_line_errors_once_and_skips_to_blank_line() {
    let mut parser = SseParser::with_max_event_bytes(16);
    let too_large = Err(SseError::EventTooLarge { limit: 16 });
    let items = parse_with(
        &mut parser,
        &[b"data: 0123456789abcdef\ndata: more\n\ndata: ok\n\n"],
    );
    assert_eq!(items, [too_large.clone(), data("ok")]);
    // The same line arriving in small chunks (no terminator yet) errors once too.
    let mut chunks: Vec<&[u8]> = vec![b"data: 0123"; 10];
    chunks.push(b"\n\ndata: ok\n\n");
    assert_eq!(parse_with(&mut parser, &chunks), [too_large, data("ok")]);
}

#[test]
fn oversized_event_of_small_lines_errors_once() {
    let mut parser = SseParser::with_max_event_bytes(20);
    let items = parse_with(
        &mut parser,
        &[b"data: 12345\ndata: 12345\ndata: 12345\ndata: 1\n\ndata: ok\n\n"],
    );
    assert_eq!(
        items,
        [Err(SseError::EventTooLarge { limit: 20 }), data("ok")]
    );
}

#[test]
fn oversized_comment_is_an_error() {
    let mut parser = SseParser::with_max_event_bytes(4);
    let items = parse_with(&mut parser, &[b": long comment\n\n:ok\n"]);
    assert_eq!(
        items,
        [Err(SseError::EventTooLarge { limit: 4 }), comment("ok")]
    );
}

#[test]
fn event_at_exactly_the_limit_is_accepted() {
    // "data: abcd" is 10 bytes; plus its terminator: 11.
    let mut parser = SseParser::with_max_event_bytes(10);
    assert_eq!(
        parse_with(&mut parser, &[b"data: abcd\n\n"]),
        [data("abcd")]
    );
}

#[test]
fn finish_reports_truncation() {
    let mut parser = SseParser::new();
    assert_eq!(parse_with(&mut parser, &[b"data: a\n\n"]), [data("a")]);
    assert!(parser.finish().is_clean());

    // An incomplete event is not dispatched.
    assert_eq!(
        parse_with(&mut parser, &[b"data: a\n\ndata: b\n"]),
        [data("a")]
    );
    assert_eq!(parser.pending_bytes(), 8);
    assert_eq!(parser.finish().pending_bytes, 8);

    // Nor is an unterminated line.
    assert_eq!(parse_with(&mut parser, &[b"data: a\n\n: x"]), [data("a")]);
    assert_eq!(parser.finish().pending_bytes, 3);

    // finish resets: a new stream starts clean (and strips its BOM).
    assert_eq!(
        parse_with(&mut parser, &[b"\xEF\xBB\xBFdata: c\n\n"]),
        [data("c")]
    );
    assert!(parser.finish().is_clean());
}

#[test]
fn finish_after_final_cr_is_clean() {
    let mut parser = SseParser::new();
    assert_eq!(parse_with(&mut parser, &[b"data: a\r\r"]), [data("a")]);
    assert!(parser.finish().is_clean());
}

#[test]
fn finish_while_discarding_is_not_clean() {
    let mut parser = SseParser::with_max_event_bytes(4);
    assert_eq!(
        parse_with(&mut parser, &[b"data: 123456"]),
        [Err(SseError::EventTooLarge { limit: 4 })]
    );
    assert_eq!(parser.finish().pending_bytes, 12);
}

#[test]
fn encode_event_fields_in_order() {
    let e = SseEvent {
        event: Some("upd".into()),
        data: Some("line1\nline2".into()),
        id: Some("42".into()),
        retry: Some(3000),
    };
    assert_eq!(
        &e.to_bytes()[..],
        b"event: upd\nid: 42\nretry: 3000\ndata: line1\ndata: line2\n\n"
    );
    assert_eq!(&SseEvent::with_data("").to_bytes()[..], b"data:\n\n");
    assert_eq!(&SseEvent::default().to_bytes()[..], b"\n");
}

#[test]
fn encode_never_injects_lines() {
    let e = SseEvent {
        event: Some("a\r\nevent: b".into()),
        data: Some("x\r\ny\rz\n".into()),
        id: Some("1\n".into()),
        retry: None,
    };
    assert_eq!(
        &e.to_bytes()[..],
        b"event: a  event: b\nid: 1 \ndata: x\ndata: y\ndata: z\ndata:\n\n"
    );
}

#[test]
fn encode_comments_and_heartbeat() {
    assert_eq!(&SseItem::heartbeat().to_bytes()[..], b":\n\n");
    assert_eq!(
        &SseItem::Comment(" ping".into()).to_bytes()[..],
        b": ping\n\n"
    );
    assert_eq!(
        &SseItem::Comment("a\nb".into()).to_bytes()[..],
        b":a\n:b\n\n"
    );
    let mut out = bytes::BytesMut::new();
    SseItem::heartbeat().encode(&mut out);
    SseItem::Event(SseEvent::with_data("x")).encode(&mut out);
    assert_eq!(&out[..], b":\n\ndata: x\n\n");
}

#[test]
fn encoded_items_parse_back() {
    let items = [
        comment(" keep-alive"),
        event(|e| {
            e.event = Some("tick".into());
            e.data = Some("{\"n\":1}\n\n".into());
            e.id = Some(String::new());
        }),
        event(|e| e.retry = Some(5)),
    ];
    let mut wire = bytes::BytesMut::new();
    for item in &items {
        item.as_ref().unwrap().encode(&mut wire);
    }
    assert_eq!(parse(&[&wire]), items);
}
