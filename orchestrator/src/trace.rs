//! W3C trace context: the orchestrator joins the trace the proxy started.
//!
//! The proxy sends `traceparent: 00-<trace id>-<its span id>-<flags>`. A run keeps the trace id
//! (it is a field of the run's log span) and sends a child `traceparent` — same trace id, a
//! new span id — on every outgoing call (model, MCP, A2A), so the hops line up in one trace.

/// A parsed `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: this hop's span.
    pub span_id: String,
    /// Trace flags (`01` = sampled).
    pub flags: String,
}

impl TraceContext {
    /// Continues `header` when it is a valid version-00 `traceparent`, with a new span id;
    /// otherwise starts a new trace.
    pub fn continue_or_start(header: Option<&str>) -> Self {
        let new_span = || uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        match header.and_then(parse) {
            Some((trace_id, flags)) => Self {
                trace_id,
                span_id: new_span(),
                flags,
            },
            None => Self {
                trace_id: uuid::Uuid::new_v4().simple().to_string(),
                span_id: new_span(),
                flags: "01".into(),
            },
        }
    }

    /// The `traceparent` naming this hop as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `(trace id, flags)` of a valid `traceparent`.
fn parse(header: &str) -> Option<(String, String)> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = version == "00"
        && parts.next().is_none()
        && is_hex(trace, 32)
        && trace != "0".repeat(32)
        && is_hex(span, 16)
        && span != "0".repeat(16)
        && is_hex(flags, 2);
    valid.then(|| (trace.to_owned(), flags.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::continue_or_start(Some(parent));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        let child = t.traceparent();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_eq!(child.len(), parent.len());
    }

    #[test]
    fn starts_a_new_trace_for_missing_or_malformed_headers() {
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
        ] {
            let t = TraceContext::continue_or_start(bad);
            assert_eq!(t.trace_id.len(), 32, "{bad:?}");
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }
}
