//! Where a request head ends, found in the bytes of the reads that carry it: the test behind
//! the head deadline of [`super::conn`] (a pure function of the last four bytes seen, so reads
//! may cut the head anywhere).

/// Whether the last four bytes seen (`window`, the newest lowest) end a request head as
/// pingora's parser (httparse) reads one: a line ends with `\r\n` or a bare `\n`, and the head
/// with the first empty line — `\r\n\r\n`, `\n\n` (which covers `\r\n\n`) or `\n\r\n`. Missing
/// one would keep the head deadline running into the body of a request already read.
fn ends_head(window: u32) -> bool {
    window == u32::from_be_bytes(*b"\r\n\r\n")
        || window & 0xffff == u32::from(u16::from_be_bytes(*b"\n\n"))
        || window & 0xff_ffff == 0x0a_0d_0a
}

/// Where a head's end is being looked for, across the reads that carry the head.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeadEnd {
    /// The last four bytes seen since the head's first line started, the newest lowest.
    window: u32,
    /// Whether a byte other than `\r` or `\n` has been read: the request line has started.
    started: bool,
}

impl HeadEnd {
    /// Feeds `read` in and tells whether the head ended in it. Empty lines before the request
    /// line are skipped, as httparse skips them (RFC 9112 §2.2): were they taken for the empty
    /// line that ends a head, a client could send `\r\n\r\n` first and then trickle its real
    /// head past the deadline.
    pub(super) fn feed(&mut self, read: &[u8]) -> bool {
        let read = if self.started {
            read
        } else {
            match read.iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(at) => {
                    self.started = true;
                    &read[at..]
                }
                None => return false,
            }
        };
        head_ends(&mut self.window, read)
    }
}

/// Feeds `read` into `window` (the last four bytes seen, the newest lowest) and tells whether a
/// head's end ([`ends_head`]) completed in it; `window` then stops at that line feed. Only a
/// line feed can complete an end, so only the line feeds are visited (memchr) and at most the
/// four bytes up to each one are folded in: a 700-byte head with a bearer token costs a dozen
/// steps instead of one per byte (the byte loop was ≈ 2 % of a full pipeline request's
/// instructions).
fn head_ends(window: &mut u32, read: &[u8]) -> bool {
    fn fold(window: &mut u32, bytes: &[u8]) {
        for &b in bytes {
            *window = (*window << 8) | u32::from(b);
        }
    }
    let mut from = 0;
    for at in memchr::memchr_iter(b'\n', read) {
        // Four bytes overwrite the whole window: anything before them cannot matter.
        fold(window, &read[from.max((at + 1).saturating_sub(4))..=at]);
        from = at + 1;
        if ends_head(*window) {
            return true;
        }
    }
    fold(window, &read[from.max(read.len().saturating_sub(4))..]);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time scan `head_ends` replaced: the reference it must agree with.
    fn head_ends_bytewise(window: &mut u32, read: &[u8]) -> bool {
        for &b in read {
            *window = (*window << 8) | u32::from(b);
            if ends_head(*window) {
                return true;
            }
        }
        false
    }

    #[test]
    fn head_ends_at_the_blank_line_whatever_the_read_boundaries() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        for split in 0..head.len() {
            let mut window = 0;
            let ended =
                head_ends(&mut window, &head[..split]) || head_ends(&mut window, &head[split..]);
            assert!(ended, "split at {split}");
        }
        let mut window = 0;
        assert!(!head_ends(&mut window, b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(
            !head_ends(&mut window, b""),
            "an empty read changes nothing"
        );
        assert!(
            head_ends(&mut window, b"\r\n"),
            "the blank line completes it"
        );
        // Every way httparse ends a head, and what is not an end.
        for (head, ends) in [
            (&b"GET / HTTP/1.0\n\n"[..], true),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", true),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", true),
            (b"GET / HTTP/1.1\nHost: a\n\n", true),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r", false),
            (b"GET / HTTP/1.1\r\nHost: a\r\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", false),
        ] {
            let mut window = 0;
            assert_eq!(head_ends(&mut window, head), ends, "{head:?}");
        }
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_a_head() {
        for leading in [&b"\r\n\r\n"[..], b"\n\n", b"\r\n", b"\n\r\n\n\r\n"] {
            let mut end = HeadEnd::default();
            assert!(!end.feed(leading), "{leading:?} alone");
            assert!(!end.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"), "{leading:?}");
            assert!(
                end.feed(b"\r\n"),
                "{leading:?}: the head's own empty line ends it"
            );
            // In the same read as the head, too.
            let mut end = HeadEnd::default();
            let mut whole = leading.to_vec();
            whole.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert!(!end.feed(&whole), "{leading:?} then a request line");
            assert!(end.feed(b"\r\n"));
        }
        // Once the request line started, its empty line ends the head as before.
        let mut end = HeadEnd::default();
        assert!(end.feed(b"GET / HTTP/1.0\n\n"));
    }

    proptest::proptest! {
        /// Over any bytes cut into any reads, `head_ends` answers as the byte loop did and leaves
        /// the same window (so the next read continues from the same state).
        #[test]
        fn head_ends_agrees_with_the_byte_loop(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a', b' ', 0u8, 0xff]), 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..6),
            start in proptest::num::u32::ANY,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            cuts.push(bytes.len());
            let (mut fast, mut slow) = (start, start);
            let mut from = 0;
            for to in cuts {
                let read = &bytes[from..to];
                from = to;
                let (a, b) = (head_ends(&mut fast, read), head_ends_bytewise(&mut slow, read));
                proptest::prop_assert_eq!(a, b);
                proptest::prop_assert_eq!(fast, slow);
                if a {
                    break;
                }
            }
        }
    }
}
