//! The pipeline's body mechanics: a dialect route's request body parsed once and handed to the
//! body stages, each SSE chunk parsed once and run through the event chain, and a dialect
//! route's JSON answer held (bounded), parsed once and filtered. What goes on is always
//! re-encoded from what the stages left.

use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;

use super::context::{RequestCtx, ResponseBody, StreamCtx};
use super::respond;
use super::Stages;
use crate::error::ProxyError;
use crate::protocol::relay::SseRelay;
use crate::protocol::{event::Item, json, message::Message, RouteProtocol};
use crate::stage::{Refusal, ResponseHead};

/// Largest JSON answer of a dialect route the proxy holds to inspect; a larger one is refused.
pub const MAX_JSON_ANSWER_BYTES: usize = 8 * 1024 * 1024;

impl Stages {
    /// The whole held body: parsed once, through the body stages (`on_message`, then
    /// `on_hold`, in `pipeline.rs`'s order), and re-encoded from what they left.
    pub(super) async fn decide_body(
        &self,
        ctx: &mut RequestCtx,
        whole: &[u8],
    ) -> Result<Bytes, Refusal> {
        let protocol = ctx
            .core
            .route
            .as_ref()
            .map_or(Default::default(), |r| r.protocol);
        let Some(mut message) = Message::parse(protocol, whole)? else {
            return Ok(Bytes::new());
        };
        ctx.jsonrpc = message.jsonrpc().map(|b| (b.ids(), b.batch));
        let x = ctx.core.view().ok_or(ProxyError::Internal)?;
        self.on_message(&x, &mut ctx.states, &mut message)?;
        self.on_hold(&x, &mut ctx.states).await?;
        Ok(message.encode())
    }

    /// One chunk of an SSE response: parsed once, through the event chain, encoded once.
    pub(super) fn relay_chunk(
        &self,
        ctx: &mut RequestCtx,
        chunk: &[u8],
        end: bool,
    ) -> Result<Bytes, ProxyError> {
        let ResponseBody::Stream(stream) = &mut ctx.response else {
            return Ok(Bytes::copy_from_slice(chunk));
        };
        let mut items: Vec<Item> = stream.relay.parse(chunk).map_err(|e| {
            tracing::warn!(request_id = %ctx.core.request_id, error = %e, "upstream stream refused");
            ProxyError::UpstreamUnavailable
        })?;
        let x = ctx.core.view().ok_or(ProxyError::Internal)?;
        let chain = self.on_events(&x, &mut ctx.states, &mut items, end);
        let out = stream.relay.encode(&items);
        stream
            .metrics
            .sse_events
            .inc_by(stream.relay.events() - stream.events_counted);
        stream.events_counted = stream.relay.events();
        if let Err(err) = chain {
            // The stage left the items that end the stream; `fail_to_proxy` writes them.
            ctx.closing = Some(out);
            return Err(err);
        }
        Ok(out)
    }

    /// One chunk of a held JSON answer; at the end, parsed once, filtered, re-encoded.
    pub(super) fn answer_chunk(
        &self,
        ctx: &mut RequestCtx,
        chunk: &[u8],
        end: bool,
    ) -> Result<Bytes, ProxyError> {
        let ResponseBody::Answer { held, success } = &mut ctx.response else {
            return Ok(Bytes::copy_from_slice(chunk));
        };
        let success = *success;
        held.extend_from_slice(chunk);
        if held.len() > MAX_JSON_ANSWER_BYTES {
            return Err(ProxyError::UpstreamUnavailable);
        }
        if !end {
            return Ok(Bytes::new());
        }
        let whole = std::mem::take(held);
        if whole.iter().all(u8::is_ascii_whitespace) {
            return Ok(whole.freeze());
        }
        let mut answer = match json::parse(&whole) {
            Ok(answer) => answer,
            // An error answer (a 404 or 405 page, a gateway's HTML 502) keeps its status for
            // the client but not a body nothing could inspect: it goes out empty.
            Err(e) if !success => {
                tracing::warn!(request_id = %ctx.core.request_id, error = %e,
                    "upstream error answer is not JSON: relayed without its body");
                return Ok(Bytes::new());
            }
            Err(e) => {
                tracing::warn!(request_id = %ctx.core.request_id, error = %e,
                    "upstream answer refused");
                return Err(ProxyError::UpstreamUnavailable);
            }
        };
        let x = ctx.core.view().ok_or(ProxyError::Internal)?;
        self.on_answer(&x, &mut ctx.states, &mut answer);
        Ok(json::to_bytes(&answer))
    }
    /// What the response body is: an SSE stream relayed event by event, a dialect route's
    /// answer held whole (one JSON document, whatever its declared content type or status), or
    /// passed.
    pub(super) fn response_body(
        &self,
        ctx: &RequestCtx,
        head: &ResponseHead,
        resp: &mut ResponseHeader,
    ) -> ResponseBody {
        let Some(route) = ctx.core.route.as_ref() else {
            return ResponseBody::Pass;
        };
        let protocol = route.protocol;
        if head.is_sse {
            let metrics = self.metrics.route(route.name.as_str());
            metrics.active_streams.inc();
            let reading = respond::reading(protocol, ctx.states.guard.inspects_response());
            ResponseBody::Stream(Box::new(StreamCtx {
                metrics,
                relay: SseRelay::new(reading, protocol == RouteProtocol::Agui),
                events_counted: 0,
                guard: ctx
                    .upstream_socket
                    .map(|(fd, peer)| self.lifecycle.register_stream(fd, peer)),
                started: std::time::Instant::now(),
            }))
        } else if protocol.is_inspected() {
            resp.remove_header(&http::header::CONTENT_LENGTH);
            ResponseBody::Answer {
                held: BytesMut::new(),
                success: resp.status.is_success(),
            }
        } else {
            ResponseBody::Pass
        }
    }
}

#[cfg(test)]
mod tests;
