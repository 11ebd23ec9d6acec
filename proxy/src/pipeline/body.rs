//! The pipeline's body mechanics: a dialect route's request body parsed once and handed to the
//! body stages, each SSE chunk parsed once and run through the event chain, and a dialect
//! route's JSON answer held (bounded), parsed once and filtered. What goes on is always
//! re-encoded from what the stages left.

use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;

use super::context::{RequestCtx, ResponseBody, StreamCtx};
use super::respond;
use super::Stages;
use crate::authz::stage::AuthzStage;
use crate::error::ProxyError;
use crate::guardrails::GuardrailsStage;
use crate::integrity::IntegrityStage;
use crate::protocol::agui::SeenToolCalls;
use crate::protocol::relay::SseRelay;
use crate::protocol::{event::Item, json, message::Message, RouteProtocol};
use crate::stage::{Exchange, Refusal, ResponseHead, Stage};

/// Largest JSON answer of a dialect route the proxy holds to inspect; a larger one is refused.
pub const MAX_JSON_ANSWER_BYTES: usize = 8 * 1024 * 1024;

impl Stages {
    /// The whole held body: parsed once, inspected by guardrails then authorization (which
    /// therefore decides on the redacted body), and re-encoded from what they left.
    /// Then the approvals stage may hold the request (`on_hold`) until an approver decides.
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
        self.guard.on_message(&x, &mut ctx.guard, &mut message)?;
        // Integrity before authorization: a tool nobody reviewed is refused whoever calls it.
        self.integrity
            .on_message(&x, &mut ctx.integrity, &mut message)?;
        self.authz.on_message(&x, &mut ctx.authz, &mut message)?;
        // Approvals after authorization: a forbid always wins, and only a permitted call waits.
        self.approvals
            .on_message(&x, &mut ctx.approvals, &mut message)?;
        self.approvals.on_hold(&x, &mut ctx.approvals).await?;
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
        let audit = self.audit.is_enabled().then_some(&mut ctx.audit);
        let states = (audit, &mut ctx.integrity, &mut ctx.authz, &mut ctx.guard);
        let inspectors = (&self.integrity, &self.authz, &self.guard);
        let chain = event_chain(inspectors, &x, states, &mut items, end);
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
        self.integrity
            .on_answer(&x, &mut ctx.integrity, &mut answer);
        self.authz.on_answer(&x, &mut ctx.authz, &mut answer);
        self.guard.on_answer(&x, &mut ctx.guard, &mut answer);
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
            let reading = respond::reading(protocol, ctx.guard.inspects_response());
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

/// The per-request states the event chain edits: the audit facts (when auditing), integrity's,
/// authorization's and guardrails'.
type ChainStates<'a> = (
    Option<&'a mut SeenToolCalls>,
    &'a mut crate::integrity::State,
    &'a mut crate::authz::stage::State,
    &'a mut crate::guardrails::State,
);

/// The event chain over the parsed items of one chunk, in order: audit facts first (the record
/// lists the calls authorization drops), then tool integrity (the whole upstream `tools/list`,
/// before any principal's filter), then authorization (what may exist), then guardrails (scan
/// only what the client may see). `Err` ends the stream after the items left.
pub(super) fn event_chain(
    (integrity, authz, guard): (&IntegrityStage, &AuthzStage, &GuardrailsStage),
    x: &Exchange<'_>,
    (audit, integrity_state, authz_state, guard_state): ChainStates<'_>,
    items: &mut Vec<Item>,
    end: bool,
) -> Result<(), ProxyError> {
    if let Some(seen) = audit {
        seen.note(items);
    }
    integrity.on_events(x, integrity_state, items, end)?;
    // Authorization may end the stream (a denied call under `run_error`); what it kept before
    // its RUN_ERROR still goes through guardrails, as the stream's last items — a secret in the
    // same chunk as a denied call is not relayed because the run ended for another reason.
    let authz_end = authz.on_events(x, authz_state, items, end);
    guard.on_events(x, guard_state, items, end || authz_end.is_err())?;
    authz_end
}

#[cfg(test)]
mod tests;
