//! [`ApprovalsStage`]: the pipeline stage that holds calls needing a human approval.
//!
//! - `on_message` (after authorization permitted the body): for each MCP `tools/call` and A2A
//!   send (`a2a_send` / `a2a_stream`), asks the enforcing policy set which permits decided it;
//!   when one is annotated `@approval("required")` the call is to be held. A request holds at
//!   most one such call (a batch with two is refused: send them one by one).
//! - `on_hold` (the async hook after every `on_message`): waits for the approval's outcome
//!   ([`super::Approvals::hold`]); a denial, a timeout, a full queue or an unreachable store
//!   refuse the request with the JSON-RPC id of the held call.
//! - `audit`: the approval's id, outcome and approver on the request's record.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{record, Approvals, Call};
use crate::audit::record::{AuditApproval, AuditRecord};
use crate::authz::{AuthzRequest, Mode, Resource, ResourceKind, RouteAuthz};
use crate::error::ProxyError;
use crate::protocol::{a2a, jsonrpc, mcp, message::Message, RouteProtocol};
use crate::stage::{Exchange, Refusal, Stage};

/// The approvals stage: the shared service and each route's agent (by route id).
pub struct ApprovalsStage {
    approvals: Option<Arc<Approvals>>,
    routes: Vec<Arc<RouteAuthz>>,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct State {
    /// The call to hold and its JSON-RPC id, found by `on_message`.
    held: Option<(Call, Value)>,
    /// What came of it, for the audit record.
    outcome: Option<AuditApproval>,
}

impl ApprovalsStage {
    /// The stage over `approvals` (`None`: no hook does anything) with each route's
    /// authorization mapping (the agent of A2A routes).
    pub fn new(approvals: Option<Arc<Approvals>>, routes: Vec<Arc<RouteAuthz>>) -> Self {
        Self { approvals, routes }
    }

    /// The call `m` makes that an approval must let through, if any.
    fn needs_approval(&self, x: &Exchange<'_>, m: &Value) -> Result<Option<Call>, ProxyError> {
        let Some(approvals) = &self.approvals else {
            return Ok(None);
        };
        let (Some(authz), Some(principal)) = (approvals.authz.as_deref(), x.principal) else {
            return Ok(None);
        };
        let (action, resource, arguments) = match x.route.protocol {
            RouteProtocol::Mcp => match mcp::classify(m) {
                Ok(mcp::Call::Tool { name, arguments }) => {
                    // The tool as authorization saw it: with the annotations the route's tool
                    // lock pinned (docs/tool-integrity.md), which policies may read.
                    let mut tool = Resource::new(ResourceKind::Tool, name);
                    tool.hints = self
                        .routes
                        .get(x.route.id)
                        .and_then(|r| r.tool_hints.get(name).copied());
                    ("call_tool", tool, arguments)
                }
                _ => return Ok(None),
            },
            RouteProtocol::A2a => match a2a::action(jsonrpc::method(m)) {
                Some(action @ ("a2a_send" | "a2a_stream")) => {
                    let agent = self
                        .routes
                        .get(x.route.id)
                        .map(|r| r.agent.clone())
                        .unwrap_or_default();
                    let params = m.get("params");
                    (action, Resource::new(ResourceKind::Agent, agent), params)
                }
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let set = authz.primary();
        if set.mode() != Mode::Enforce {
            return Ok(None);
        }
        let facts = crate::authz::stage::facts(x, 0);
        let decision = set.decide(&AuthzRequest {
            principal: Some(principal),
            action,
            resource: &resource,
            facts: &facts,
            // A2A parameters are not tool arguments: the schema types them for tools only.
            arguments: (action == "call_tool").then_some(arguments).flatten(),
        });
        if !decision.allowed {
            // Authorization permitted it a moment ago; a policy reload in between refuses.
            return Err(ProxyError::Forbidden);
        }
        if !set.requires_approval(&decision) {
            return Ok(None);
        }
        Ok(Some(Call {
            principal: principal.entity_uid(),
            action,
            resource: resource.uid_text(),
            arguments_digest: record::digest(arguments.unwrap_or(&Value::Null)),
            request_id: x.request_id.to_string(),
            route: x.route.name.clone(),
        }))
    }
}

#[async_trait]
impl Stage for ApprovalsStage {
    type State = State;

    fn on_message(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        message: &mut Message,
    ) -> Result<(), Refusal> {
        let Message::JsonRpc(batch) = message else {
            return Ok(());
        };
        for m in &batch.messages {
            let call = self.needs_approval(x, m).map_err(|error| Refusal {
                error,
                culprits: vec![jsonrpc::id(m)],
            })?;
            if let Some(call) = call {
                if state.held.is_some() {
                    return Err(Refusal {
                        error: ProxyError::InvalidRequest(
                            "a batch may hold at most one call needing an approval: send them \
                             one by one"
                                .into(),
                        ),
                        culprits: vec![jsonrpc::id(m)],
                    });
                }
                state.held = Some((call, jsonrpc::id(m)));
            }
        }
        Ok(())
    }

    async fn on_hold(&self, x: &Exchange<'_>, state: &mut State) -> Result<(), Refusal> {
        let (Some(approvals), Some((call, id))) = (&self.approvals, state.held.take()) else {
            return Ok(());
        };
        let outcome = approvals.hold(&call, x.principal).await;
        let label = match &outcome.result {
            Ok(()) => "approved",
            Err(ProxyError::ApprovalDenied { .. }) => "denied",
            Err(ProxyError::ApprovalTimeout) => "timeout",
            Err(ProxyError::ApprovalQueueFull(_)) => "queue_full",
            Err(_) => "unavailable",
        };
        let approval = outcome.approval.as_ref();
        state.outcome = Some(AuditApproval {
            approver: approval.and_then(|a| a.approver.clone()),
            id: approval.map(|a| a.id.clone()).unwrap_or_default(),
            outcome: label,
            reason: approval.and_then(|a| a.reason.clone()),
            requester: call.principal.clone(),
        });
        outcome.result.map_err(|error| Refusal {
            error,
            culprits: vec![id],
        })
    }

    fn audit(&self, state: &State, record: &mut AuditRecord) {
        if let Some(outcome) = &state.outcome {
            record.approval = Some(outcome.clone());
        }
    }
}
