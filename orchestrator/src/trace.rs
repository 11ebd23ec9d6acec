//! W3C trace context: the orchestrator joins the trace the proxy started.
//!
//! The proxy sends `traceparent: 00-<trace id>-<its span id>-<flags>`. A run keeps the trace id
//! (it is a field of the run's log span), opens its spans under the proxy's span (see
//! [`crate::otel`]) and sends a child `traceparent` — same trace id, its own span id — on every
//! outgoing MCP and A2A call, so the hops line up in one trace.

/// A parsed `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the current span (the proxy's, until a run span replaces it;
    /// all zeros when the request started a new trace).
    pub span_id: String,
    /// Trace flags (`01` = sampled).
    pub flags: String,
}

impl TraceContext {
    /// The caller's context when `header` is a valid `traceparent`; otherwise a new trace with
    /// no parent span.
    pub fn from_header(header: Option<&str>) -> Self {
        match header.and_then(palisade_wire::trace::TraceParent::parse) {
            Some(p) => Self {
                trace_id: p.trace_id,
                span_id: p.parent_id,
                flags: p.flags,
            },
            None => Self {
                trace_id: uuid::Uuid::new_v4().simple().to_string(),
                span_id: "0".repeat(16),
                flags: "01".into(),
            },
        }
    }

    /// A random span id.
    pub fn new_span_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
    }

    /// The `traceparent` naming this hop as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn reads_a_valid_trace_context() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut t = TraceContext::from_header(Some(parent));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id, "00f067aa0ba902b7");
        assert_eq!(t.traceparent(), parent);
        t.span_id = TraceContext::new_span_id();
        let child = t.traceparent();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(child, parent);
        assert_eq!(child.len(), parent.len());
    }

    #[test]
    fn starts_a_new_trace_for_missing_or_malformed_headers() {
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
        ] {
            let t = TraceContext::from_header(bad);
            assert_eq!(t.trace_id.len(), 32, "{bad:?}");
            assert_eq!(t.span_id, "0000000000000000", "no parent");
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }
}
