//! Response filtering over parsed events: denied tool calls out of AG-UI streams, denied tools
//! out of MCP `tools/list` answers (SSE events or a whole JSON answer).
//!
//! Every event arrives parsed once by the relay, so the event type and ids are read after
//! JSON unescaping — `"TOOL\u005fCALL\u005fSTART"` is a `TOOL_CALL_START` here as it is for the
//! client — and what the client receives is re-encoded from the value this filter left.
//!
//! AG-UI: a `TOOL_CALL_START` (or a first `TOOL_CALL_CHUNK`) naming a tool the principal may
//! not `use_tool` drops that call's START/ARGS/END/CHUNK/RESULT events and its entries in
//! `MESSAGES_SNAPSHOT` — or, when the route says `denied_tool_call: run_error`, ends the run
//! with a `RUN_ERROR` of code `FORBIDDEN`.

use serde_json::Value;

use super::decide::{AuthzStage, State};
use super::spec::DeniedToolCall;
use crate::error::ProxyError;
use crate::protocol::event::Item;
use crate::protocol::{agui, mcp, RouteProtocol};
use crate::stage::Exchange;

/// Filters the items of one chunk. `Err(Forbidden)` ends a run whose agent called a denied
/// tool on a `run_error` route (the items then end with the `RUN_ERROR`).
pub(super) fn filter_events(
    stage: &AuthzStage,
    x: &Exchange<'_>,
    state: &mut State,
    items: &mut Vec<Item>,
) -> Result<(), ProxyError> {
    match x.route.protocol {
        RouteProtocol::Agui => filter_agui(stage, x, state, items),
        RouteProtocol::Mcp if !state.mcp_list_ids.is_empty() => {
            for item in items.iter_mut() {
                if let Item::Event(e) = item {
                    if let Some(v) = e.value_mut() {
                        filter_answer(stage, x, state, v);
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn filter_agui(
    stage: &AuthzStage,
    x: &Exchange<'_>,
    state: &mut State,
    items: &mut Vec<Item>,
) -> Result<(), ProxyError> {
    let mode = stage
        .route(x)
        .map_or(DeniedToolCall::Drop, |r| r.denied_tool_call);
    let mut kept = Vec::with_capacity(items.len());
    for mut item in std::mem::take(items) {
        let Item::Event(event) = &mut item else {
            kept.push(item);
            continue;
        };
        let call_id = event.str_field("toolCallId").map(str::to_string);
        match event.kind() {
            "TOOL_CALL_START" | "TOOL_CALL_CHUNK" if event.str_field("toolCallName").is_some() => {
                let name = event
                    .str_field("toolCallName")
                    .unwrap_or_default()
                    .to_string();
                if stage.tool_allowed(x, state, "use_tool", &name) {
                    kept.push(item);
                } else if mode == DeniedToolCall::RunError {
                    kept.push(Item::Event(agui::run_error_event(
                        "FORBIDDEN",
                        "the agent called a tool this caller may not use",
                    )));
                    *items = kept;
                    return Err(ProxyError::Forbidden);
                } else if let Some(id) = call_id {
                    state.dropped_calls.insert(id);
                }
            }
            "TOOL_CALL_START" | "TOOL_CALL_CHUNK" | "TOOL_CALL_ARGS" | "TOOL_CALL_END"
            | "TOOL_CALL_RESULT" => {
                if !call_id.is_some_and(|id| state.dropped_calls.contains(&id)) {
                    kept.push(item);
                }
            }
            "MESSAGES_SNAPSHOT" => {
                if let Some(json) = event.value_mut() {
                    scrub_snapshot(stage, x, state, json);
                }
                kept.push(item);
            }
            _ => kept.push(item),
        }
    }
    *items = kept;
    Ok(())
}

/// Removes denied tool calls (and the tool messages answering them) from a snapshot.
fn scrub_snapshot(stage: &AuthzStage, x: &Exchange<'_>, state: &mut State, json: &mut Value) {
    let Some(messages) = json.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for m in messages.iter_mut() {
        if let Some(calls) = m.get_mut("toolCalls").and_then(Value::as_array_mut) {
            calls.retain(|c| {
                let name = c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
                let keep = !state.dropped_calls.contains(id)
                    && stage.tool_allowed(x, state, "use_tool", name);
                if !keep {
                    state.dropped_calls.insert(id.to_string());
                }
                keep
            });
        }
    }
    messages.retain(|m| {
        !m.get("toolCallId")
            .and_then(Value::as_str)
            .is_some_and(|id| state.dropped_calls.contains(id))
    });
}

/// Filters `result.tools` of JSON-RPC answers (one or a batch) to remembered `tools/list` ids.
pub(super) fn filter_answer(
    stage: &AuthzStage,
    x: &Exchange<'_>,
    state: &mut State,
    answer: &mut Value,
) {
    if state.mcp_list_ids.is_empty() {
        return;
    }
    let list_ids = std::mem::take(&mut state.mcp_list_ids);
    let mut one = |msg: &mut Value| {
        if let Some(tools) = mcp::listed_tools(msg, &list_ids) {
            let all = std::mem::take(tools);
            let kept: Vec<Value> = all
                .into_iter()
                .filter(|t| {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                    stage.tool_allowed(x, state, "list_tools", name)
                })
                .collect();
            if let Some(tools) = mcp::listed_tools(msg, &list_ids) {
                *tools = kept;
            }
        }
    };
    match answer {
        Value::Array(list) => list.iter_mut().for_each(&mut one),
        msg => one(msg),
    }
    state.mcp_list_ids = list_ids;
}
