//! Header hygiene: request ids, trace context, forwarding headers, hop-by-hop removal.

use http::header::{
    HeaderName, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, UPGRADE,
};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::stage::Exchange;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). Typed names, not
/// text: a lookup by `&str` parses and lower-cases the name on every call.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    UPGRADE,
];

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    // One pass over the few headers present instead of a hashed lookup per hop-by-hop name:
    // most requests and responses carry none of them (and `Connection` is one, so a header it
    // lists is only looked for when it is there).
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !HOP_BY_HOP.contains(name))
        .collect();
    for name in &listed {
        remove(name);
    }
    for name in &HOP_BY_HOP {
        if headers.contains_key(name) {
            remove(name);
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
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_well_formed_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

fn is_well_formed_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The forwarding headers of an upstream request: hop-by-hop headers removed,
/// `X-Forwarded-Proto` and `-Host`, `Host` set to the upstream's unless the route preserves it,
/// the route's path-prefix rewrite, and `X-Request-Id`. (`X-Forwarded-For` and what a trusted
/// proxy wrote are [`crate::listener::Edge::forward_headers`]'s.)
pub fn forward(
    upstream: &mut RequestHeader,
    x: &Exchange<'_>,
    original_host: Option<&str>,
) -> pingora_core::Result<()> {
    use pingora_core::{Error, ErrorType};
    let route = x.route;
    strip_hop_by_hop_request(upstream);
    upstream.insert_header("x-forwarded-proto", if x.tls { "https" } else { "http" })?;
    if let Some(host) = original_host {
        upstream.insert_header("x-forwarded-host", host)?;
    }
    if !route.preserve_host {
        upstream.insert_header(http::header::HOST, route.upstream.authority.as_str())?;
    }
    // The upstream gets the canonical path the stages decided on (query untouched), after the
    // route's prefix rewrite.
    let target = match upstream.uri.query() {
        Some(q) => format!("{}?{q}", x.path),
        None => x.path.to_string(),
    };
    let path = route.upstream_path(&target).unwrap_or(target);
    if upstream.uri.path_and_query().map(|p| p.as_str()) != Some(path.as_str()) {
        let uri = path
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "rewritten path", e))?;
        upstream.set_uri(uri);
    }
    upstream.insert_header("x-request-id", x.request_id)?;
    Ok(())
}

/// On a dialect route the body is re-encoded from its parse (its length may change), so it
/// goes upstream chunked; and the answer must come back readable, so no content coding is
/// offered to the upstream.
pub fn prepare_inspected(
    upstream: &mut RequestHeader,
    inspected: bool,
) -> pingora_core::Result<()> {
    if inspected {
        upstream.remove_header(&http::header::ACCEPT_ENCODING);
        if upstream.headers.contains_key(http::header::CONTENT_LENGTH)
            || upstream
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            upstream.remove_header(&http::header::CONTENT_LENGTH);
            upstream.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
    }
    Ok(())
}

/// The declared `Content-Length` of a request, when it has one.
pub fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether a response declares an SSE body.
pub fn is_event_stream(resp: &ResponseHeader) -> bool {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// The response head the client receives: hop-by-hop headers out, `X-Request-Id` in; an SSE
/// stream is re-framed (no length, no content coding) and must not be buffered on the way.
pub fn response(
    resp: &mut ResponseHeader,
    request_id: &str,
    sse: bool,
) -> pingora_core::Result<()> {
    strip_hop_by_hop_response(resp);
    resp.insert_header("x-request-id", request_id)?;
    if sse {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        resp.remove_header(&http::header::CONTENT_ENCODING);
        if resp.headers.get(http::header::CACHE_CONTROL).is_none() {
            resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
        }
        resp.insert_header("x-accel-buffering", "no")?;
    }
    Ok(())
}

/// On a route with `cors`: the upstream's own `Access-Control-*` headers are dropped (the
/// config's policy decides, not the runtime's) and the policy's headers for this request added.
pub fn cors(
    resp: &mut ResponseHeader,
    ctx: &super::context::RequestCtx,
) -> pingora_core::Result<()> {
    if ctx.core.route.as_ref().is_none_or(|r| r.cors.is_none()) {
        return Ok(());
    }
    let upstream: Vec<http::HeaderName> = resp
        .headers
        .keys()
        .filter(|n| crate::route::cors::is_cors_header(n))
        .cloned()
        .collect();
    for name in upstream {
        resp.remove_header(&name);
    }
    for (name, value) in &ctx.cors {
        resp.append_header(*name, value.clone())?;
    }
    Ok(())
}

/// The upstream peer of a route, with its timeouts.
pub fn peer(route: &crate::route::Route) -> pingora_core::upstreams::peer::HttpPeer {
    let up = &route.upstream;
    let mut peer = pingora_core::upstreams::peer::HttpPeer::new(up.address, up.tls, up.sni.clone());
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.total_connection_timeout = Some(up.connect_timeout);
    // An idle timeout, not a total one: streams may run for hours as long as bytes flow.
    peer.options.read_timeout = Some(route.idle_timeout);
    peer.options.write_timeout = Some(route.idle_timeout);
    peer.options.idle_timeout = Some(up.pool_idle_timeout);
    peer
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
    use crate::telemetry::TraceContext;

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
        assert_eq!(
            ctx.traceparent(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", ctx.span_id)
        );
        assert_eq!(ctx.span_id.len(), 16);
        assert!(ctx
            .span_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let started = TraceContext::from_request(&req(&[]));
        assert_eq!(
            started.traceparent(),
            format!("00-{}-{}-01", started.trace_id, started.span_id)
        );
        assert_ne!(started.trace_id, ctx.trace_id);

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
