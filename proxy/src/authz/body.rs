//! Body-aware authorization over a parsed request ([`Message`]): the tools offered in an
//! AG-UI run (`use_tool`; denied ones are removed from what is forwarded), MCP `tools/call`
//! (`call_tool` with its arguments) and `tools/list` (answers filtered later), A2A methods
//! (`a2a_*` on the route's agent; unknown methods refused).
//!
//! The pipeline parsed the body once and forwards the value this module leaves, so a tool
//! removed here is not in the bytes the upstream reads. A denial answers without a byte of the
//! body reaching the upstream: a JSON-RPC error with the request's `id` on MCP and A2A.

use serde_json::Value;

use super::decide::{AuthzStage, State};
use super::request::{Resource, ResourceKind};
use crate::error::ProxyError;
use crate::protocol::{a2a, jsonrpc, mcp, message::Message};
use crate::stage::{Exchange, Refusal};

/// The `Mcp-Method` / `Mcp-Name` headers of a request, every value kept (a duplicate is refused
/// when the body is checked against them: [`mcp::check_headers`]).
pub(super) fn mcp_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    for name in ["mcp-method", "mcp-name"] {
        for v in headers.get_all(name) {
            out.append(name, v.clone());
        }
    }
    out
}

/// Decides a parsed body; `Err` carries the refusal.
pub(super) fn decide_message(
    stage: &AuthzStage,
    x: &Exchange<'_>,
    state: &mut State,
    message: &mut Message,
) -> Result<(), Refusal> {
    match message {
        Message::Agui(input) => {
            agui_tools(stage, x, state, input);
            Ok(())
        }
        Message::JsonRpc(batch) => {
            let mut culprits = Vec::new();
            if let Some(headers) = &state.mcp_headers {
                mcp::check_headers(headers, batch).map_err(|why| Refusal {
                    error: ProxyError::InvalidRequest(why),
                    culprits: batch.ids(),
                })?;
            }
            for m in &batch.messages {
                let blocked = match x.route.protocol {
                    crate::protocol::RouteProtocol::Mcp => mcp_message(stage, x, state, m)?,
                    _ => a2a_message(stage, x, state, m),
                };
                if blocked {
                    culprits.push(jsonrpc::id(m));
                }
            }
            // A step-up challenge answers for one refused call; a batch refusing several
            // gets the plain denial (each might need something else).
            let challenge = state.challenge.take();
            match culprits.len() {
                0 => Ok(()),
                1 => Err(Refusal {
                    error: challenge.unwrap_or(ProxyError::Forbidden),
                    culprits,
                }),
                _ => Err(Refusal {
                    error: ProxyError::Forbidden,
                    culprits,
                }),
            }
        }
    }
}

/// AG-UI `RunAgentInput`: every offered tool is checked as `use_tool`; denied ones are removed.
fn agui_tools(stage: &AuthzStage, x: &Exchange<'_>, state: &mut State, input: &mut Value) {
    let Some(tools) = input.get_mut("tools").and_then(Value::as_array_mut) else {
        return;
    };
    let before = tools.len();
    tools.retain(|tool| {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        let resource = Resource::new(ResourceKind::Tool, name);
        !stage.decide(x, state, "use_tool", &resource, None)
    });
    let removed = before - tools.len();
    if removed > 0 {
        tracing::debug!(request_id = %x.request_id, removed, "denied AG-UI tools removed from the run");
    }
}

/// MCP: `tools/call` is `call_tool` on `Tool::"<name>"`; `tools/list` ids are remembered.
fn mcp_message(
    stage: &AuthzStage,
    x: &Exchange<'_>,
    state: &mut State,
    m: &Value,
) -> Result<bool, Refusal> {
    let call = mcp::classify(m).map_err(|why| Refusal {
        error: ProxyError::InvalidRequest(why),
        culprits: vec![jsonrpc::id(m)],
    })?;
    Ok(match call {
        mcp::Call::Tool { name, arguments } => {
            let resource = Resource::new(ResourceKind::Tool, name);
            stage.decide_refusing(x, state, "call_tool", &resource, arguments)
        }
        mcp::Call::ListTools => {
            state.mcp_list_ids.push(jsonrpc::id(m));
            false
        }
        mcp::Call::Other => false,
    })
}

/// A2A: each method is its `a2a_*` action on `Agent::"<agent>"`; unknown methods are refused.
fn a2a_message(stage: &AuthzStage, x: &Exchange<'_>, state: &mut State, m: &Value) -> bool {
    let method = jsonrpc::method(m);
    let agent = stage.route(x).map(|r| r.agent.clone()).unwrap_or_default();
    let resource = Resource::new(ResourceKind::Agent, agent);
    match a2a::action(method) {
        Some(action) => stage.decide_refusing(x, state, action, &resource, None),
        None => {
            tracing::debug!(request_id = %x.request_id, method, "unknown A2A method refused");
            true
        }
    }
}
