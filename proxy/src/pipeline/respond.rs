//! Everything the proxy writes itself, in one place: every refusal (the documented JSON error
//! body, a JSON-RPC error with the request's ids, or — once a stream started — its closing
//! items and an AG-UI `RUN_ERROR`), the public metadata documents, and the request's metrics,
//! log line and audit record. The same condition gets the same code whatever wrote it: the
//! code always comes from [`ProxyError::kind`].

use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::context::{RequestCtx, ResponseBody};
use crate::audit::{AuditRecord, RecordFacts, StreamFacts};
use crate::error::ProxyError;
use crate::protocol::relay::Reading;
use crate::protocol::{agui, jsonrpc, RouteProtocol};
use crate::route::RouteTable;
use crate::stage::Refusal;
use crate::telemetry::Metrics;

/// Answers a refused request (nothing written yet): a JSON-RPC error carrying the request's ids
/// when the refusal was made on a parsed JSON-RPC body, else the documented error body.
pub async fn refuse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    refusal: Refusal,
) -> pingora_core::Result<()> {
    let err = refusal.error;
    let (status, body) = match &ctx.jsonrpc {
        Some((ids, batch)) if body_level(&err) => {
            let (status, answer) =
                jsonrpc::refusal(ids, &refusal.culprits, *batch, &err, &ctx.core.request_id);
            (
                status,
                Bytes::from(serde_json::to_vec(&answer).unwrap_or_default()),
            )
        }
        _ => (
            err.kind().status,
            err.body(&ctx.core.request_id, ctx.trace_id()),
        ),
    };
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    if !ctx.core.request_id.is_empty() {
        resp.insert_header("x-request-id", ctx.core.request_id.as_str())?;
    }
    for (name, value) in err.headers() {
        resp.insert_header(name, value)?;
    }
    // A page reads Palisade's refusals (401, 403, 429 and its Retry-After) like any answer.
    for (name, value) in &ctx.cors {
        resp.append_header(*name, value.clone())?;
    }
    // On MCP routes every challenge (401s, step-up 403s) points at the route's RFC 9728 metadata.
    if let Some(route) = ctx
        .core
        .route
        .as_ref()
        .filter(|r| r.protocol == RouteProtocol::Mcp)
    {
        let url = super::metadata::metadata_url(&origin(session), route);
        if let Some(challenge) = err.challenge(Some(&url)) {
            resp.insert_header("www-authenticate", challenge)?;
        }
    }
    ctx.error = Some(err);
    // A request body we did not read would be parsed as the next request: close instead.
    // Bodiless requests keep their connection (clients retrying after a 401/429 reuse it).
    let req = session.req_header();
    let declares_body = req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || super::headers::declared_length(req).is_some_and(|len| len > 0);
    if (declares_body && !session.is_body_done()) || ctx.jsonrpc.is_some() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Writes a browser-session endpoint's answer (a redirect, with its cookies): never cached.
pub async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    answer: crate::authn::session::Answer,
) -> pingora_core::Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 3))?;
    for (name, value) in answer.headers {
        resp.append_header(name, value)?;
    }
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("content-length", "0")?;
    resp.insert_header("x-request-id", ctx.core.request_id.as_str())?;
    session.write_response_header(Box::new(resp), true).await
}

/// Answers a CORS preflight the route allows: `204` with the headers admission computed.
pub async fn preflight(session: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    // Counted and audited with reason `cors_preflight`, apart from requests that were proxied.
    ctx.preflight = true;
    let mut resp = ResponseHeader::build(204, Some(ctx.cors.len() + 1))?;
    resp.insert_header("x-request-id", ctx.core.request_id.as_str())?;
    for (name, value) in &ctx.cors {
        resp.append_header(*name, value.clone())?;
    }
    // Browsers never send a body with a preflight. One that declares a body is answered and
    // the connection closed: nothing unread is drained, whatever its size (no body limit and
    // no credential apply before this point).
    let req = session.req_header();
    if req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || super::headers::declared_length(req).is_some_and(|len| len > 0)
    {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), true).await
}

/// Whether a refusal was made on the request body (and so answers in the body's dialect).
fn body_level(err: &ProxyError) -> bool {
    matches!(
        err,
        ProxyError::Forbidden
            | ProxyError::InsufficientScope { .. }
            | ProxyError::StepUpRequired { .. }
            | ProxyError::GuardrailViolation
            | ProxyError::ToolNotApproved { .. }
            | ProxyError::InvalidRequest(_)
            | ProxyError::ApprovalDenied { .. }
            | ProxyError::ApprovalTimeout
            | ProxyError::ApprovalQueueFull(_)
            | ProxyError::ApprovalUnavailable
    )
}

/// Ends a request that failed after admission; returns the status to log. Before a response
/// started: the documented refusal. After: the closing items a stage left, and on an AG-UI run
/// that has not ended a final `RUN_ERROR` with the error's code; other streams are closed.
pub async fn fail(session: &mut Session, ctx: &mut RequestCtx, err: ProxyError) -> u16 {
    let closing = ctx.closing.take();
    if session.response_written().is_none() && closing.is_none() {
        // The connection is not reused: say so, or a keep-alive client sends its next request
        // into a closing socket.
        session.set_keepalive(None);
        let status = err.kind().status;
        if let Err(e) = refuse(session, ctx, err.into()).await {
            tracing::debug!(request_id = %ctx.core.request_id, error = %e, "error response not written");
        }
        return status;
    }
    let status = match session.response_written() {
        Some(resp) => resp.status.as_u16(),
        // A stage stopped the first chunk: its header was still queued with it.
        None => match stream_header(session, ctx).await {
            Some(status) => status,
            None => return 200,
        },
    };
    let mut out = closing.map(|b| b.to_vec()).unwrap_or_default();
    if let Some(frame) = run_error(ctx, &err) {
        out.extend_from_slice(&frame);
    }
    ctx.error = Some(err);
    ctx.response_bytes += out.len() as u64;
    if let Err(e) = session
        .write_response_body(Some(Bytes::from(out)), true)
        .await
    {
        tracing::debug!(request_id = %ctx.core.request_id, error = %e, "closing frames not written");
    }
    status
}

/// Writes a fresh `200` head for a response whose first chunk was stopped.
async fn stream_header(session: &mut Session, ctx: &RequestCtx) -> Option<u16> {
    let sse = ctx.stream().is_some();
    let mut resp = ResponseHeader::build(200, Some(4)).ok()?;
    let kind = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    resp.insert_header("content-type", kind).ok()?;
    resp.insert_header("cache-control", "no-cache").ok()?;
    resp.insert_header("x-request-id", ctx.core.request_id.as_str())
        .ok()?;
    for (name, value) in &ctx.cors {
        resp.append_header(*name, value.clone()).ok()?;
    }
    if let Err(e) = session.write_response_header(Box::new(resp), false).await {
        tracing::debug!(request_id = %ctx.core.request_id, error = %e, "stop header not written");
        return None;
    }
    Some(200)
}

/// The `RUN_ERROR` that ends an AG-UI run which has not ended yet (and marks it ended).
fn run_error(ctx: &mut RequestCtx, err: &ProxyError) -> Option<Bytes> {
    let agui = ctx
        .core
        .route
        .as_ref()
        .is_some_and(|r| r.protocol == RouteProtocol::Agui);
    let ResponseBody::Stream(stream) = &mut ctx.response else {
        return None;
    };
    if !agui || stream.relay.terminal_seen() {
        return None;
    }
    stream.relay.mark_terminal();
    Some(agui::run_error_frame(err.kind().code, &err.to_string()))
}

/// At a clean end of an AG-UI stream whose run never finished: appends a `RUN_ERROR` to the
/// last chunk.
pub fn end_unfinished_run(ctx: &mut RequestCtx, body: &mut Option<Bytes>) {
    if let Some(frame) = unfinished_run(ctx) {
        ctx.response_bytes += frame.len() as u64;
        let mut joined = body.take().map(|b| b.to_vec()).unwrap_or_default();
        joined.extend_from_slice(&frame);
        *body = Some(Bytes::from(joined));
    }
}

fn unfinished_run(ctx: &mut RequestCtx) -> Option<Bytes> {
    let err = ProxyError::UpstreamUnavailable;
    let ResponseBody::Stream(stream) = &ctx.response else {
        return None;
    };
    if stream.relay.terminal_seen() {
        return None;
    }
    let agui = ctx
        .core
        .route
        .as_ref()
        .is_some_and(|r| r.protocol == RouteProtocol::Agui);
    if !agui {
        return None;
    }
    let frame = agui::run_error_frame(
        err.kind().code,
        "upstream ended the stream before the run finished",
    );
    if let ResponseBody::Stream(stream) = &mut ctx.response {
        stream.relay.mark_terminal();
    }
    ctx.error = Some(err);
    Some(frame)
}

/// How a stream's events are read: as JSON on dialect routes (unreadable ends the stream), as
/// JSON-or-text where guardrails scan a plain stream, never otherwise.
pub fn reading(protocol: RouteProtocol, guarded: bool) -> Reading {
    match protocol {
        RouteProtocol::Http if guarded => Reading::JsonOrText,
        RouteProtocol::Http => Reading::Text,
        _ => Reading::Json,
    }
}

/// Answers the RFC 9728 metadata document of an MCP route (public: it tells clients where to
/// get a token). Returns whether it answered.
pub async fn metadata(
    session: &mut Session,
    routes: &RouteTable,
    authn: &crate::authn::Authenticator,
) -> pingora_core::Result<bool> {
    let path = session.req_header().uri.path();
    if !path.starts_with(super::metadata::WELL_KNOWN) {
        return Ok(false);
    }
    let Some(doc) = super::metadata::document(
        routes,
        path,
        &origin(session),
        &authn.authorization_servers(),
    ) else {
        return Ok(false);
    };
    let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "max-age=300")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

/// `scheme://host` as the client addressed this proxy.
pub fn origin(session: &Session) -> String {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let req = session.req_header();
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// Classifies a pingora error into the documented error, or `None` when the client is gone; an
/// upstream failure is counted in `palisade_upstream_errors_total{kind}`.
pub fn classify(e: &Error, ctx: &RequestCtx, metrics: &Metrics) -> Option<ProxyError> {
    let err = classify_error(e, ctx);
    if matches!(
        err,
        Some(ProxyError::UpstreamUnavailable | ProxyError::UpstreamTimeout)
    ) && ctx.error.is_none()
    {
        metrics
            .upstream_errors
            .with_label_values(&[ctx.route_name(), upstream_error_kind(e)])
            .inc();
    }
    err
}

fn classify_error(e: &Error, ctx: &RequestCtx) -> Option<ProxyError> {
    if ctx.ended_by_drain() {
        return Some(ProxyError::ShuttingDown);
    }
    if let Some(err) = &ctx.error {
        return Some(err.clone());
    }
    let err = match (e.esource(), e.etype()) {
        (_, ErrorType::HTTPStatus(413)) => ProxyError::PayloadTooLarge { limit: 0 },
        (ErrorSource::Downstream, ErrorType::ReadError | ErrorType::WriteError)
        | (ErrorSource::Downstream, ErrorType::ConnectionClosed) => return None,
        (ErrorSource::Downstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            return None
        }
        (ErrorSource::Downstream, _) => ProxyError::InvalidRequest("malformed request".into()),
        (_, ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            ProxyError::UpstreamTimeout
        }
        (ErrorSource::Upstream, _) => ProxyError::UpstreamUnavailable,
        (_, t) if is_connect_error(t) => ProxyError::UpstreamUnavailable,
        _ => ProxyError::Internal,
    };
    Some(err)
}

fn is_connect_error(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::ConnectProxyFailure
            | ErrorType::TLSHandshakeFailure
            | ErrorType::InvalidCert
    )
}

/// A short label for `palisade_upstream_errors_total{kind}`.
fn upstream_error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "idle_timeout",
        t if is_connect_error(t) => "connect_error",
        _ => "reset",
    }
}

/// The request's audit record, before the stages fill their parts.
pub fn record(
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    reason: &'static str,
) -> AuditRecord {
    AuditRecord::new(RecordFacts {
        request_id: &ctx.core.request_id,
        trace_id: ctx.trace_id(),
        principal: ctx.core.principal.as_deref(),
        client_ip: ctx.core.client_ip,
        config_hash: &ctx.stages.config_hash,
        method: session.req_header().method.as_str(),
        path: session.req_header().uri.path(),
        route: ctx.core.route.as_ref().map(|r| r.name.as_str()),
        status,
        upstream_status: ctx.upstream_status,
        bytes_in: ctx.request_bytes,
        bytes_out: ctx.response_bytes,
        started: ctx.started,
        stream: ctx.stream().map(|s| StreamFacts {
            events: s.relay.events(),
            ended_by_drain: ctx.ended_by_drain(),
        }),
        error: ctx.error.as_ref(),
        reason,
    })
}

/// One metrics update, one log line and the end of the request's spans.
pub fn observe(
    metrics: &Metrics,
    session: &Session,
    ctx: &mut RequestCtx,
    status: u16,
    reason: &'static str,
) {
    // The route is shared (`Arc`): its name outlives the edits to `ctx` below, uncopied.
    let route_arc = ctx.core.route.clone();
    let route = route_arc.as_deref().map_or("-", |r| r.name.as_str());
    let method = session.req_header().method.as_str();
    let status_label = session
        .response_written()
        .map_or("0", |r| r.status.as_str());
    let elapsed = ctx.started.elapsed();
    // Invented methods share one series: clients choose them, the label set must stay bounded.
    let labels = [
        route,
        crate::telemetry::metrics::method_label(method),
        status_label,
        reason,
    ];
    metrics.requests.with_label_values(&labels).inc();
    metrics
        .request_duration
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
    let per_route = metrics.route(route);
    per_route.request_bytes.inc_by(ctx.request_bytes);
    per_route.response_bytes.inc_by(ctx.response_bytes);
    if let ResponseBody::Stream(stream) = std::mem::take(&mut ctx.response) {
        per_route.active_streams.dec();
        metrics
            .stream_duration
            .observe(stream.started.elapsed().as_secs_f64());
    }
    tracing::info!(
        request_id = %ctx.core.request_id,
        trace_id = %ctx.trace_id(),
        route = %route,
        method = %method,
        path = %session.req_header().uri.path(),
        status,
        reason,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_bytes = ctx.request_bytes,
        response_bytes = ctx.response_bytes,
        "request"
    );
    let code = ctx.error.as_ref().map(|e| e.kind().code);
    crate::telemetry::otel::finish_request(
        &mut ctx.span,
        &ctx.core.request_id,
        code,
        ctx.states
            .authz
            .decision
            .as_ref()
            .map(|d| (d.verdict(), d.policies.join(","))),
        (
            status,
            ctx.core
                .route
                .as_deref()
                .map(|r| (r.name.as_str(), r.path_prefix.as_str())),
            reason,
        ),
        method,
    );
}
