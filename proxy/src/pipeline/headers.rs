//! Header hygiene: request ids, trace context, forwarding headers, hop-by-hop removal.

use http::header::{HeaderName, CONNECTION};
use pingora_http::{RequestHeader, ResponseHeader};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Prefix of the identity headers only the proxy may set.
pub const PALISADE_PREFIX: &str = "x-palisade-";

/// Removes every client-supplied `X-Palisade-*` header. Runs before anything else so that no
/// later stage (or the upstream) can mistake a client's header for the proxy's own.
pub fn strip_palisade_headers(req: &mut RequestHeader) {
    let spoofed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with(PALISADE_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        req.remove_header(&name);
    }
}

/// Removes the fixed hop-by-hop set plus every header named in `Connection` (allocating only
/// when `Connection` lists extra names).
fn strip_hop_by_hop(headers: &http::HeaderMap, mut remove: impl FnMut(&HeaderName)) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !HOP_BY_HOP.contains(&name.as_str()))
        .collect();
    for name in &listed {
        remove(name);
    }
    for name in HOP_BY_HOP {
        if headers.contains_key(*name) {
            remove(&HeaderName::from_static(name));
        }
    }
}

/// Removes hop-by-hop headers from a request about to be forwarded.
pub fn strip_hop_by_hop_request(req: &mut RequestHeader) {
    let mut doomed = Vec::new();
    strip_hop_by_hop(&req.headers, |n| doomed.push(n.clone()));
    for name in doomed {
        req.remove_header(&name);
    }
}

/// Removes hop-by-hop headers from an upstream response (so `Connection` never reaches an h2
/// client, where it is illegal).
pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    let mut doomed = Vec::new();
    strip_hop_by_hop(&resp.headers, |n| doomed.push(n.clone()));
    for name in doomed {
        resp.remove_header(&name);
    }
}

/// Returns the client's `X-Request-Id` when it is well-formed (1–128 of `A-Za-z0-9-_.:`),
/// otherwise a fresh UUID.
pub fn request_id(req: &RequestHeader) -> String {
    req.headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_well_formed_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

fn is_well_formed_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// W3C trace context for one hop: the trace id to keep, and the `traceparent` to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// This hop's span id, 16 lower-case hex digits.
    pub span_id: String,
    /// Trace flags (`01` = sampled).
    pub flags: String,
    /// The client's span id from its `traceparent` (the parent of this hop's span).
    pub parent_span_id: Option<String>,
    /// The client's `tracestate`, forwarded upstream unchanged.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Continues the client's `traceparent` when valid, else starts a new trace.
    pub fn from_request(req: &RequestHeader) -> Self {
        let span_id = random_hex(8);
        if let Some(palisade_wire::trace::TraceParent {
            trace_id,
            parent_id: parent,
            flags,
        }) = req
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(palisade_wire::trace::TraceParent::parse)
        {
            // W3C: tracestate is only meaningful beside a valid traceparent; several header
            // lines are one comma-joined list.
            let states: Vec<&str> = req
                .headers
                .get_all("tracestate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            return Self {
                trace_id,
                span_id,
                flags,
                parent_span_id: Some(parent),
                tracestate: (!states.is_empty()
                    && states.iter().map(|s| s.len()).sum::<usize>() <= 512)
                    .then(|| states.join(",")),
            };
        }
        Self {
            trace_id: random_hex(16),
            span_id,
            flags: "01".into(),
            parent_span_id: None,
            tracestate: None,
        }
    }

    /// The `traceparent` header value naming this hop as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }

    /// Sets `traceparent` (this hop as the parent) and the client's `tracestate` on an upstream
    /// request.
    pub fn propagate(&self, upstream: &mut RequestHeader) -> pingora_core::Result<()> {
        upstream.insert_header("traceparent", self.traceparent())?;
        if let Some(state) = &self.tracestate {
            upstream.insert_header("tracestate", state.as_str())?;
        }
        Ok(())
    }
}

fn random_hex(bytes: usize) -> String {
    let id = uuid::Uuid::new_v4();
    id.simple().to_string()[..bytes * 2].to_string()
}

/// The forwarding headers of an upstream request: hop-by-hop headers removed,
/// `X-Forwarded-For` (appended to), `-Proto` and `-Host`, `Host` set to the upstream's unless
/// the route preserves it, the route's path-prefix rewrite, and `X-Request-Id`.
pub fn forward(
    upstream: &mut RequestHeader,
    route: &crate::route::Route,
    client_ip: Option<std::net::IpAddr>,
    original_host: Option<&str>,
    tls: bool,
    request_id: &str,
) -> pingora_core::Result<()> {
    use pingora_core::{Error, ErrorType};
    strip_hop_by_hop_request(upstream);
    if let Some(ip) = client_ip {
        let forwarded_for = match upstream
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        upstream.insert_header("x-forwarded-for", forwarded_for)?;
    }
    upstream.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
    if let Some(host) = original_host {
        upstream.insert_header("x-forwarded-host", host)?;
    }
    if !route.preserve_host {
        upstream.insert_header(http::header::HOST, route.upstream.authority.as_str())?;
    }
    if let Some(path) =
        route.upstream_path(upstream.uri.path_and_query().map_or("/", |p| p.as_str()))
    {
        let uri = path
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "rewritten path", e))?;
        upstream.set_uri(uri);
    }
    upstream.insert_header("x-request-id", request_id)?;
    Ok(())
}

/// The request's host: from the URI (HTTP/2, absolute form) or the `Host` header.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri.host().or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn palisade_headers_are_removed_case_insensitively() {
        let mut r = req(&[
            ("X-Palisade-Principal", "User::\"admin\""),
            ("x-palisade-roles", "admin"),
            ("X-Other", "kept"),
        ]);
        strip_palisade_headers(&mut r);
        assert!(r.headers.get("x-palisade-principal").is_none());
        assert!(r.headers.get("x-palisade-roles").is_none());
        assert_eq!(r.headers.get("x-other").unwrap(), "kept");
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut r = req(&[
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Upgrade", "h2c"),
            ("Accept", "text/event-stream"),
        ]);
        strip_hop_by_hop_request(&mut r);
        let names: Vec<_> = r.headers.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn request_ids_are_accepted_only_when_well_formed() {
        assert_eq!(
            request_id(&req(&[("x-request-id", "abc-123_x.y:z")])),
            "abc-123_x.y:z"
        );
        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            let id = request_id(&req(&[("x-request-id", bad)]));
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(&id).is_ok());
        }
    }

    #[test]
    fn traceparent_is_continued_or_started() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::from_request(&req(&[("traceparent", t)]));
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ctx.span_id, "00f067aa0ba902b7");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        let with_state = TraceContext::from_request(&req(&[
            ("traceparent", t),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ]));
        assert_eq!(
            with_state.tracestate.as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert!(ctx
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));

        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let ctx = TraceContext::from_request(&req(&[("traceparent", bad)]));
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(ctx.trace_id.len(), 32);
        }
    }
}
