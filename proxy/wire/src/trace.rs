//! W3C Trace Context: the `traceparent` header, parsed the same way by the proxy and the
//! orchestrator.
//!
//! ```
//! use palisade_wire::trace::TraceParent;
//!
//! let p = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! ```

/// The fields of a valid `traceparent` (version `00` layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span: 16 lowercase hex digits, not all zero.
    pub parent_id: String,
    /// Two hex digits (`01` = sampled).
    pub flags: String,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` when it is invalid (the receiver then starts
    /// a new trace). Follows the W3C rules: lowercase hex only, all-zero ids and version `ff`
    /// invalid, version `00` has exactly four fields, a higher version may carry more after them.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = is_lower_hex(version, 2)
            && version != "ff"
            && is_lower_hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && is_lower_hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && is_lower_hex(flags, 2)
            && (version != "00" || parts.next().is_none());
        valid.then(|| Self {
            trace_id: trace.to_owned(),
            parent_id: parent.to_owned(),
            flags: flags.to_owned(),
        })
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn valid_and_invalid_headers() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceParent::parse(ok).unwrap().parent_id,
            "00f067aa0ba902b7"
        );
        // A future version may append fields; version 00 may not.
        assert!(TraceParent::parse(&format!("01{}-extra", &ok[2..])).is_some());
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
