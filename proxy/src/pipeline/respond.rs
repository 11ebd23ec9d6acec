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
    if kind.status == 401 {
        if let Some(route) = ctx
            .route
            .as_ref()
            .filter(|r| r.protocol == RouteProtocol::Mcp)
        {
            let url = crate::authn::metadata::metadata_url(&origin(session), route);
            resp.insert_header(
                "www-authenticate",
                format!("Bearer resource_metadata=\"{url}\""),
            )?;
        }
    }
    ctx.error = Some(err);
    // A request body we did not read would be parsed as the next request: close instead. Bodiless
    // requests keep their connection (clients retrying after a 401/429 reuse it).
    let req = session.req_header();
    let declares_body = req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if declares_body && !session.is_body_done() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
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

/// Writes a small JSON response the proxy answers itself.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
) -> pingora_core::Result<()> {
    let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "max-age=300")?;
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
