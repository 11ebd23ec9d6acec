//! [`AuthzStage`]: the live policy sets with each route's request mapping, and the decisions
//! every authorization hook makes through it (each recorded in metrics and the log, and kept in
//! the request's [`State`] for the audit record).

use std::sync::Arc;

use serde_json::Value;

use super::request::{Resource, ResourceKind};
use super::stepup::Challenge;
use super::{Authz, AuthzRequest, Decision, Decisions, RequestFacts, RouteAuthz};
use crate::error::ProxyError;
use crate::stage::Exchange;
use crate::telemetry::Metrics;

/// Authorization for every route; `authz` is `None` when no policy set is configured (then
/// every hook is a no-op).
pub struct AuthzStage {
    pub(super) authz: Option<Arc<Authz>>,
    /// Each route's request mapping, by route id.
    routes: Vec<Arc<RouteAuthz>>,
    pub(super) metrics: Metrics,
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
    /// The `Mcp-Method` / `Mcp-Name` headers of an MCP request, checked against its body.
    pub(super) mcp_headers: Option<http::HeaderMap>,
    /// Ids of MCP `tools/list` requests whose answers are filtered per principal.
    pub(super) mcp_list_ids: Vec<Value>,
    /// Tool calls dropped from the AG-UI response, by call id.
    pub(super) dropped_calls: std::collections::HashSet<String>,
    /// Tool verdicts already made for this response.
    pub(super) verdicts: std::collections::HashMap<String, bool>,
    /// The step-up challenge of the first refused body-level decision, when it has one.
    pub(super) challenge: Option<ProxyError>,
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
        let hinted = self.hinted(x, resource);
        let resource = hinted.as_ref().unwrap_or(resource);
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

    /// [`Self::decide`] for a decision whose deny refuses the request (MCP `tools/call`, A2A
    /// methods): the first such deny also looks for a step-up challenge ([`Self::refusal`]),
    /// kept in `state` for the refusal.
    pub(super) fn decide_refusing(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        action: &str,
        resource: &Resource,
        arguments: Option<&Value>,
    ) -> bool {
        let blocks = self.decide(x, state, action, resource, arguments);
        if blocks && state.challenge.is_none() {
            let hinted = self.hinted(x, resource);
            let resource = hinted.as_ref().unwrap_or(resource);
            if let Some(facts) = state.facts.as_ref() {
                let err = self.refusal(
                    x,
                    &AuthzRequest {
                        principal: x.principal,
                        action,
                        resource,
                        facts,
                        arguments,
                    },
                );
                state.challenge = Some(err);
            }
        }
        blocks
    }

    /// The error refusing `req`, which the enforcing set denied: a step-up challenge when the
    /// set would permit it with more scopes or MFA ([`super::stepup`]), else `Forbidden`.
    /// Runs only on the deny path, at most `3 + stepup::MAX_CANDIDATES` extra evaluations.
    pub(super) fn refusal(&self, x: &Exchange<'_>, req: &AuthzRequest<'_>) -> ProxyError {
        let Some(authz) = self.authz.as_deref() else {
            return ProxyError::Forbidden;
        };
        let set = authz.primary();
        let found = super::stepup::challenge(&set, req);
        tracing::debug!(request_id = %x.request_id, authz.challenge = ?found, "step-up challenge");
        match found {
            None => ProxyError::Forbidden,
            Some(Challenge::Scope(scopes)) => ProxyError::InsufficientScope { scopes },
            Some(Challenge::Mfa(scopes)) => {
                let step_up = authz.step_up();
                ProxyError::StepUpRequired {
                    acr_values: step_up.acr_values.clone(),
                    max_age: step_up.max_age.map(crate::error::ceil_secs),
                    scopes,
                }
            }
        }
    }

    /// `resource` with its pinned MCP annotations, when it is a tool the route's lock pinned
    /// with some (`None`: use `resource` as it is).
    fn hinted(&self, x: &Exchange<'_>, resource: &Resource) -> Option<Resource> {
        if resource.kind != ResourceKind::Tool || resource.hints.is_some() {
            return None;
        }
        let hints = *self.route(x)?.tool_hints.get(&resource.id)?;
        Some(Resource {
            hints: Some(hints),
            ..resource.clone()
        })
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
