//! Writing the proxy's own responses: error bodies before a response started, `RUN_ERROR` after.

use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::context::RequestCtx;
use crate::config::spec::RouteProtocol;
use crate::error::ProxyError;
use crate::protocol::agui;

/// Writes `err` as the documented JSON error response and records it in `ctx`.
pub async fn error_response(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: ProxyError,
) -> pingora_core::Result<()> {
    let kind = err.kind();
    let body = err.body(&ctx.request_id, ctx.trace_id());
    let mut resp = ResponseHeader::build(kind.status, Some(5))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    if !ctx.request_id.is_empty() {
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    }
    for (name, value) in err.headers() {
        resp.insert_header(name, value)?;
    }
    ctx.error = Some(err);
    // The request body may be unread: do not reuse this connection for another request.
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Ends a stream whose response already started. AG-UI streams that have not reached their
/// terminal event get a final `RUN_ERROR` with the error's code; other streams are just closed.
pub async fn end_started_stream(session: &mut Session, ctx: &mut RequestCtx, err: ProxyError) {
    let needs_run_error = ctx
        .route
        .as_ref()
        .is_some_and(|r| r.protocol == RouteProtocol::Agui)
        && ctx
            .stream
            .as_ref()
            .is_some_and(|s| !s.relay.terminal_seen());
    let code = err.kind().code;
    let message = err.to_string();
    ctx.error = Some(err);
    if needs_run_error {
        let frame: Bytes = agui::run_error_frame(code, &message);
        ctx.response_bytes += frame.len() as u64;
        if let Err(e) = session.write_response_body(Some(frame), true).await {
            tracing::debug!(request_id = %ctx.request_id, error = %e, "could not write RUN_ERROR");
        }
    }
}

/// Classifies a pingora error into the documented error, or `None` when the client is gone.
pub fn classify(e: &Error, ctx: &RequestCtx) -> Option<ProxyError> {
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
pub fn upstream_error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "idle_timeout",
        t if is_connect_error(t) => "connect_error",
        _ => "reset",
    }
}
