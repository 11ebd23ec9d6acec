//! Admission mechanics before any stage runs: identity headers stripped, request id, trace
//! context, the client address, the audit gate, routing, and the declared body size.

use pingora_proxy::Session;

use super::context::RequestCtx;
use super::{headers, Stages};
use crate::error::ProxyError;
use crate::route::{cors, host_without_port, RouteMatch};
use crate::telemetry::TraceContext;

/// What admission decided for a request it did not refuse.
pub(super) enum Admitted {
    /// Run the policy stages, then forward.
    Proxy,
    /// A CORS preflight the route's policy allows: answer `204` with these headers (in
    /// `ctx.cors`); nothing is forwarded and no credential is asked for.
    Preflight,
    /// One of the browser-session paths (sign-in, callback, logout): Palisade answers it
    /// itself, before routing and identity (authn/session).
    Session(crate::authn::session::Endpoint),
}

impl Stages {
    /// Stages that run before anything is forwarded. `Err` short-circuits to the error mapper.
    pub(super) fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Admitted, ProxyError> {
        // Strip first: nothing below may read a client-written identity header.
        headers::strip_palisade_headers(session.req_header_mut());
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
        // The sign-in paths belong to no route: the browser has no session yet.
        if let Some(endpoint) = self.authn.session_endpoint(&ctx.core.path) {
            return Ok(Admitted::Session(endpoint));
        }
        // Route before the body limit: the limit is per route.
        let host = headers::request_host(req).map(host_without_port);
        let routes = &self.routes;
        // A CORS preflight is routed by the method it asks for; a route with `cors` answers it
        // here, before any credential (browsers send none on a preflight). On other routes, or
        // asking for a method no route allows there, it is an `OPTIONS` like any other.
        if let Some((origin, asked)) = cors::preflight_request(&req.method, &req.headers) {
            if let RouteMatch::Found(route) = routes.find(host, &ctx.core.path, &asked) {
                if let Some(policy) = &route.cors {
                    ctx.core.route = Some(route.clone());
                    let requested = req
                        .headers
                        .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS);
                    ctx.cors = policy
                        .preflight(origin, &asked, requested)
                        .map_err(ProxyError::CorsRejected)?;
                    return Ok(Admitted::Preflight);
                }
            }
        }
        match routes.find(host, &ctx.core.path, &req.method) {
            RouteMatch::Found(route) => {
                if let Some(policy) = &route.cors {
                    ctx.cors = policy.response_headers(req.headers.get(http::header::ORIGIN));
                }
                ctx.core.route = Some(route.clone());
            }
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
        Ok(Admitted::Proxy)
    }
}
