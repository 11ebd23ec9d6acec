//! [`AuthzStage`] as a pipeline stage (its [`Stage`] hooks). The request-level decision on the head;
//! body-aware decisions on the parsed body ([`super::body`]); tool filtering of the parsed
//! response events and JSON answers ([`super::stream`]); its part of the audit record.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use async_trait::async_trait;
use pingora_http::RequestHeader;
use serde_json::Value;

pub use super::decide::{record, AuthzStage, State};
use super::request::{Resource, ResourceKind};
use super::{AuthzRequest, Decision, RequestFacts};
use crate::audit::record::{AuditDecision, AuditRecord, ToolCall};
use crate::error::ProxyError;
use crate::protocol::{a2a, event::Item, message::Message, RouteProtocol};
use crate::stage::{Exchange, Refusal, ResponseHead, Stage};

/// The facts of the exchange (route, client, time) for the Cedar context.
pub fn facts(x: &Exchange<'_>, declared_bytes: u64) -> RequestFacts {
    RequestFacts {
        method: x.method.as_str().to_string(),
        path: x.path.to_string(),
        ip: x.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        forwarded: x.forwarded,
        time: time::OffsetDateTime::now_utc(),
        tls: x.tls,
        request_bytes: declared_bytes,
        route: x.route.name.clone(),
        protocol: x.route.protocol.as_str(),
    }
}

#[async_trait]
impl Stage for AuthzStage {
    type State = State;

    /// Decides the request with every policy set (after identify: policies are about the
    /// principal; before limits: a refused request must not spend budget).
    async fn on_request(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        req: &RequestHeader,
    ) -> Result<(), ProxyError> {
        let (Some(authz), Some(route)) = (self.authz.as_deref(), self.route(x)) else {
            return Ok(());
        };
        let started = Instant::now();
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let facts = facts(x, declared);
        let target = route.target(x.method, x.path);
        let request = AuthzRequest {
            principal: x.principal,
            action: &target.action,
            resource: &target.resource,
            facts: &facts,
            arguments: None,
        };
        let decisions = authz.decide(&request);
        self.metrics
            .authz_duration
            .observe(started.elapsed().as_secs_f64());
        let blocks = record(&self.metrics, &decisions, x.request_id);
        // Only a refused request looks for a step-up challenge (bounded: `super::stepup`).
        let refusal = blocks.then(|| self.refusal(x, &request));
        state.facts = Some(facts);
        state.decision = decisions.primary;
        state.shadow.extend(decisions.shadow);
        if let Some(err) = refusal {
            return Err(err);
        }
        match x.route.protocol {
            RouteProtocol::Mcp => state.mcp_headers = Some(super::body::mcp_headers(&req.headers)),
            // The HTTP+JSON binding names its method in the path, not in a body.
            RouteProtocol::A2a => {
                if let Some(action) = a2a::rest_action(x.method, x.path) {
                    let agent = Resource::new(ResourceKind::Agent, route.agent.clone());
                    if self.decide_refusing(x, state, action, &agent, None) {
                        return Err(state.challenge.take().unwrap_or(ProxyError::Forbidden));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_message(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        message: &mut Message,
    ) -> Result<(), Refusal> {
        if self.authz.is_none() {
            return Ok(());
        }
        super::body::decide_message(self, x, state, message)
    }

    fn on_response(
        &self,
        _x: &Exchange<'_>,
        state: &mut State,
        _head: &ResponseHead,
        _resp: &mut pingora_http::ResponseHeader,
    ) -> Result<(), ProxyError> {
        state.verdicts.clear();
        Ok(())
    }

    fn on_events(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        items: &mut Vec<Item>,
        _end: bool,
    ) -> Result<(), ProxyError> {
        if self.authz.is_none() {
            return Ok(());
        }
        super::stream::filter_events(self, x, state, items)
    }

    fn on_answer(&self, x: &Exchange<'_>, state: &mut State, answer: &mut Value) {
        if self.authz.is_some() && x.route.protocol == RouteProtocol::Mcp {
            super::stream::filter_answer(self, x, state, answer);
        }
    }

    fn audit(&self, state: &State, record: &mut AuditRecord) {
        if let Some(d) = &state.decision {
            record.set_decision(&d.action, &d.resource, audit_decision(d));
        }
        for d in state
            .body_decisions
            .iter()
            .filter(|d| d.resource.starts_with("Tool::"))
        {
            record.add_tool_decision(ToolCall {
                action: d.action.clone(),
                allowed: !d.blocks(),
                id: None,
                tool: d.resource.clone(),
            });
        }
    }
}

/// A decision as the audit record keeps it.
fn audit_decision(d: &Decision) -> AuditDecision {
    AuditDecision {
        allowed: d.allowed,
        mode: d.mode.as_str(),
        policies: d.policies.clone(),
        policy_set: d.policy_set.to_string(),
        policy_set_hash: d.policy_set_hash.to_string(),
    }
}
