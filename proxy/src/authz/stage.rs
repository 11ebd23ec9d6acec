//! [`AuthzStage`]: authorization as a pipeline stage. The request-level decision on the head;
//! body-aware decisions on the parsed body ([`super::body`]); tool filtering of the parsed
//! response events and JSON answers ([`super::stream`]); its part of the audit record.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_http::RequestHeader;
use serde_json::Value;

use super::entities::{Resource, ResourceKind};
use super::{Authz, AuthzRequest, Decision, Decisions, RequestFacts, RouteAuthz};
use crate::audit::AuditRecord;
use crate::error::ProxyError;
use crate::protocol::{a2a, event::Item, message::Message, RouteProtocol};
use crate::stage::{Exchange, Refusal, ResponseHead, Stage};
use crate::telemetry::Metrics;

/// Authorization for every route; `authz` is `None` when no policy set is configured (then
/// every hook is a no-op).
pub struct AuthzStage {
    authz: Option<Arc<Authz>>,
    /// Each route's request mapping, by route id.
    routes: Vec<Arc<RouteAuthz>>,
    metrics: Metrics,
}

/// Per-request authorization state.
#[derive(Debug, Default)]
pub struct State {
    /// The request's facts, kept for body-aware and stream decisions.
    pub facts: Option<RequestFacts>,
    /// The request-level decision of the enforcing set.
    pub decision: Option<Decision>,
    /// Decisions of shadow policy sets.
    pub shadow: Vec<Decision>,
    /// Body-aware decisions (tools, MCP calls, A2A methods), in order, enforcing set only.
    pub body_decisions: Vec<Decision>,
    /// `Mcp-Method` / `Mcp-Name` header problems found on the head, refused with the body.
    pub(super) mcp_headers: Option<Result<http::HeaderMap, String>>,
    /// Ids of MCP `tools/list` requests whose answers are filtered per principal.
    pub(super) mcp_list_ids: Vec<Value>,
    /// AG-UI response filtering.
    pub(super) stream: super::stream::AguiFilter,
    /// Tool verdicts already made for this response.
    pub(super) verdicts: std::collections::HashMap<String, bool>,
}

impl AuthzStage {
    /// The stage over `authz` with each route's mapping (indexed by route id).
    pub fn new(authz: Option<Arc<Authz>>, routes: Vec<Arc<RouteAuthz>>, metrics: Metrics) -> Self {
        Self {
            authz,
            routes,
            metrics,
        }
    }

    /// The live policy sets, when configured.
    pub fn policies(&self) -> Option<&Arc<Authz>> {
        self.authz.as_ref()
    }

    pub(super) fn route(&self, x: &Exchange<'_>) -> Option<&RouteAuthz> {
        self.routes.get(x.route.id).map(AsRef::as_ref)
    }

    /// Decides `action` on `resource` with every set, records it, and says whether it blocks.
    pub(super) fn decide(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        action: &str,
        resource: &Resource,
        arguments: Option<&Value>,
    ) -> bool {
        let (Some(authz), Some(facts)) = (self.authz.as_deref(), state.facts.as_ref()) else {
            return true;
        };
        let decisions = authz.decide(&AuthzRequest {
            principal: x.principal,
            action,
            resource,
            facts,
            arguments,
        });
        let blocks = record(&self.metrics, &decisions, x.request_id);
        state.body_decisions.extend(decisions.primary);
        state.shadow.extend(decisions.shadow);
        blocks
    }

    /// Whether the principal may `action` the tool `name` (decided once per response).
    pub(super) fn tool_allowed(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        action: &str,
        name: &str,
    ) -> bool {
        if let Some(v) = state.verdicts.get(name) {
            return *v;
        }
        let resource = Resource::new(ResourceKind::Tool, name);
        let allowed = !self.decide(x, state, action, &resource, None);
        state.verdicts.insert(name.to_string(), allowed);
        allowed
    }
}

/// The facts of the exchange (route, client, time) for the Cedar context.
pub fn facts(x: &Exchange<'_>, declared_bytes: u64) -> RequestFacts {
    RequestFacts {
        method: x.method.as_str().to_string(),
        path: x.path.to_string(),
        ip: x.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
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
        let decisions = authz.decide(&AuthzRequest {
            principal: x.principal,
            action: &target.action,
            resource: &target.resource,
            facts: &facts,
            arguments: None,
        });
        self.metrics
            .authz_duration
            .observe(started.elapsed().as_secs_f64());
        let blocks = record(&self.metrics, &decisions, x.request_id);
        state.facts = Some(facts);
        state.decision = decisions.primary;
        state.shadow.extend(decisions.shadow);
        if blocks {
            return Err(ProxyError::Forbidden);
        }
        match x.route.protocol {
            RouteProtocol::Mcp => state.mcp_headers = Some(super::body::mcp_headers(&req.headers)),
            // The HTTP+JSON binding names its method in the path, not in a body.
            RouteProtocol::A2a => {
                if let Some(action) = a2a::rest_action(x.method, x.path) {
                    let agent = Resource::new(ResourceKind::Agent, route.agent.clone());
                    if self.decide(x, state, action, &agent, None) {
                        return Err(ProxyError::Forbidden);
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
        record.set_decision(state.decision.as_ref());
        record.tool_decisions(&state.body_decisions);
    }
}

/// Counts and logs `decisions`; returns whether they refuse the request.
pub fn record(metrics: &Metrics, decisions: &Decisions, request_id: &str) -> bool {
    for d in decisions.all() {
        let action = d
            .action
            .strip_prefix("Action::\"")
            .and_then(|a| a.strip_suffix('"'))
            .unwrap_or(&d.action);
        metrics
            .authz_decisions
            .with_label_values(&[&d.policy_set, d.mode.as_str(), action, d.verdict()])
            .inc();
        tracing::debug!(
            request_id,
            authz.decision = d.verdict(),
            authz.mode = d.mode.as_str(),
            authz.policy_set = %d.policy_set,
            authz.policy_set_hash = %d.policy_set_hash,
            authz.policies = ?d.policies,
            authz.principal = %d.principal,
            authz.action = %d.action,
            authz.resource = %d.resource,
            "authorization decision"
        );
        if !d.errors.is_empty() {
            tracing::warn!(request_id, authz.errors = ?d.errors, "policies failed to evaluate");
        }
    }
    decisions.blocks()
}
