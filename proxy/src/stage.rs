//! The stage contract: what every concern (identity, authorization, limits, guardrails, audit)
//! implements, and the read-only view of the exchange each hook receives.
//!
//! A stage is its folder plus the hooks of [`Stage`] it implements; every hook has a no-op
//! default, so a stage that only looks at request heads implements one method. The pipeline
//! (`pipeline.rs`) calls the hooks in its fixed order with an [`Exchange`] — ids, route,
//! principal, client, trace — and the stage's own per-request [`Stage::State`]; a stage never
//! sees the pipeline's context or another stage's state.
//!
//! Bodies and events arrive parsed ([`crate::protocol`]): a stage reads and edits the one parsed
//! value and never parses bytes itself, and the pipeline forwards what the stages left.

use std::net::IpAddr;

use async_trait::async_trait;
use pingora_http::{RequestHeader, ResponseHeader};
use serde_json::Value;

use crate::audit::record::AuditRecord;
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::protocol::event::Item;
use crate::protocol::message::Message;
use crate::route::Route;

/// A read-only view of one exchange, as far as the pipeline knows it.
#[derive(Clone, Copy)]
pub struct Exchange<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// The W3C trace id (empty when none).
    pub trace_id: &'a str,
    /// The matched route.
    pub route: &'a Route,
    /// Who is calling, once identified.
    pub principal: Option<&'a Principal>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// Whether a proxy Palisade does not trust relayed the request (`client_ip` is then that
    /// proxy, not the client): see [`crate::listener::forwarded::Edge::relayed_untrusted`].
    pub forwarded: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The request's method.
    pub method: &'a http::Method,
    /// The request's canonical path (no query).
    pub path: &'a str,
}

/// What the upstream's response head said, as stages need it.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead {
    /// The upstream's status.
    pub status: u16,
    /// Whether the body is an SSE stream (relayed event by event).
    pub is_sse: bool,
}

/// A refusal by a stage that read a body or an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The documented error (code, status, metric reason).
    pub error: ProxyError,
    /// The JSON-RPC ids of the requests that caused it (the others of a batch are refused as
    /// bystanders).
    pub culprits: Vec<Value>,
}

impl From<ProxyError> for Refusal {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            culprits: Vec::new(),
        }
    }
}

/// One concern of the pipeline. Hooks run in pipeline order; each has a no-op default.
#[async_trait]
pub trait Stage: Send + Sync {
    /// What the stage keeps for one request.
    type State: Default + Send + Sync;

    /// The request head, after routing and identification. `Err` refuses the request.
    async fn on_request(
        &self,
        _x: &Exchange<'_>,
        _state: &mut Self::State,
        _req: &RequestHeader,
    ) -> Result<(), ProxyError> {
        Ok(())
    }

    /// A chunk of a body the pipeline does not hold (routes that speak no dialect).
    fn on_body_chunk(
        &self,
        _x: &Exchange<'_>,
        _state: &mut Self::State,
        _chunk: &[u8],
    ) -> Result<(), ProxyError> {
        Ok(())
    }

    /// The whole request body of a dialect route, parsed once; edits are forwarded.
    fn on_message(
        &self,
        _x: &Exchange<'_>,
        _state: &mut Self::State,
        _message: &mut Message,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    /// After every stage's `on_message`, before a byte of the body goes upstream: the one
    /// hook that may wait on something outside the request (a human approval,
    /// `crate::approvals`) — bounded by the stage's own deadline — and then refuse it.
    async fn on_hold(&self, _x: &Exchange<'_>, _state: &mut Self::State) -> Result<(), Refusal> {
        Ok(())
    }

    /// The request about to go upstream.
    fn on_upstream_request(
        &self,
        _x: &Exchange<'_>,
        _state: &Self::State,
        _upstream: &mut RequestHeader,
    ) -> Result<(), ProxyError> {
        Ok(())
    }

    /// The upstream's response head (headers may be added to what the client receives).
    fn on_response(
        &self,
        _x: &Exchange<'_>,
        _state: &mut Self::State,
        _head: &ResponseHead,
        _resp: &mut ResponseHeader,
    ) -> Result<(), ProxyError> {
        Ok(())
    }

    /// The events completed by one upstream chunk, parsed once; a stage may edit, drop or add
    /// items. `end` is the last call. `Err` ends the stream after the items left in `items`.
    fn on_events(
        &self,
        _x: &Exchange<'_>,
        _state: &mut Self::State,
        _items: &mut Vec<Item>,
        _end: bool,
    ) -> Result<(), ProxyError> {
        Ok(())
    }

    /// A whole JSON answer (not a stream) of a dialect route, parsed once; edits are sent.
    fn on_answer(&self, _x: &Exchange<'_>, _state: &mut Self::State, _answer: &mut Value) {}

    /// Fills the stage's part of the audit record.
    fn audit(&self, _state: &Self::State, _record: &mut AuditRecord) {}
}
