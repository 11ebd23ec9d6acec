//! Admission mechanics before any stage runs: identity headers stripped, request id, trace
//! context, the client address, the audit gate, routing, and the declared body size.

use pingora_proxy::Session;

use super::context::RequestCtx;
use super::{headers, Pipeline};
use crate::error::ProxyError;
use crate::route::{host_without_port, RouteMatch};
use crate::telemetry::TraceContext;

impl Pipeline {
    /// Stages that run before anything is forwarded. `Err` short-circuits to the error mapper.
    pub(super) fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), ProxyError> {
        // Strip first: nothing below may read a client-written identity header.
        headers::strip_palisade_headers(session.req_header_mut());
        ctx.core.tls = self.tls;
        // What follows a CONNECT head may be tunnel bytes, not a request: the connection
        // closes after the refusal below.
        let connect = session.req_header().method == http::Method::CONNECT;
        if connect {
            session.set_keepalive(None);
        }
        let req = session.req_header();
        ctx.core.request_id = headers::request_id(req);
        ctx.core.method = req.method.clone();
        // The one reading of the path: routing, route rules, Cedar's `context.path`, the audit
        // record and the upstream all use it (an unusable path is refused below, with the ids).
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let canonical = crate::route::canonical::canonicalize(target);
        ctx.core.path = canonical
            .as_ref()
            .map_or_else(|_| "/".into(), |c| c.path().to_string());
        // The request's span continues the client's trace and names this hop upstream.
        let mut trace = TraceContext::from_request(req);
        ctx.span = self
            .tracing
            .begin(&mut trace, req.method.as_str(), req.uri.path());
        ctx.core.trace = Some(trace);
        // The client behind trusted proxies, before anything keys on it (after the ids, so a
        // refusal carries them).
        ctx.core.client_ip = self.edge.client_ip(session.client_addr(), req)?;
        ctx.core.forwarded = self.edge.relayed_untrusted(session.client_addr(), req);
        // Under `fail_closed`, nothing is served while the audit trail cannot be written (after
        // the ids, so the refusal's body and record carry them).
        if self.audit.refuses() {
            self.audit.count_refused();
            return Err(ProxyError::AuditUnavailable);
        }
        // pingora is told to let CONNECT through to here (`server.rs`) so that its refusal
        // carries the documented body; it is never proxied.
        if connect {
            return Err(ProxyError::MethodNotAllowed {
                allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".into(),
            });
        }
        canonical.map_err(|e| ProxyError::InvalidRequest(format!("path: {e}")))?;
        // Route before the body limit: the limit is per route.
        let host = headers::request_host(req).map(host_without_port);
        match self.routes.load().find(host, &ctx.core.path, &req.method) {
            RouteMatch::Found(route) => ctx.core.route = Some(route.clone()),
            RouteMatch::MethodNotAllowed(allow) => {
                return Err(ProxyError::MethodNotAllowed { allow })
            }
            RouteMatch::NotFound => return Err(ProxyError::NotFound),
        }
        // A declared length over the limit is refused before a byte of body is read; chunked
        // bodies are counted as they stream in (`request_body_filter`).
        let limit = ctx
            .core
            .route
            .as_ref()
            .map_or(u64::MAX, |r| r.max_body_bytes);
        if headers::declared_length(req).is_some_and(|len| len > limit) {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        Ok(())
    }
}
