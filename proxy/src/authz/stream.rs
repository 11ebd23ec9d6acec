//! Response filtering: denied tool calls out of AG-UI streams, denied tools out of MCP
//! `tools/list` answers (JSON or SSE).
//!
//! The pipeline's SSE relay hands on complete, LF-framed events; this filter re-reads only
//! those bytes, and only parses the JSON of events that can matter (a cheap substring test
//! first), so nothing is held beyond the events of the current chunk. A JSON `tools/list`
//! answer is the one thing buffered, bounded by [`MAX_JSON_RESPONSE_BYTES`].
//!
//! AG-UI: a `TOOL_CALL_START` (or a first `TOOL_CALL_CHUNK`) naming a tool the principal may
//! not `use_tool` drops that call's START/ARGS/END/CHUNK/RESULT events and its entries in
//! `MESSAGES_SNAPSHOT` — or, when the route says `denied_tool_call: run_error`, ends the run
//! with a `RUN_ERROR` of code `FORBIDDEN` and drops the rest of the stream.

use std::collections::{HashMap, HashSet};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::entities::{Resource, ResourceKind};
use super::spec::DeniedToolCall;
use super::stage::record;
use super::{Authz, AuthzRequest};
use crate::config::spec::RouteProtocol;
use crate::pipeline::context::RequestCtx;
use crate::protocol::sse::rewrite_events;
use crate::telemetry::Metrics;

/// Largest JSON `tools/list` answer the proxy filters; a larger one is refused.
pub const MAX_JSON_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// What the response filter does for one response.
#[derive(Debug)]
pub enum ResponseFilter {
    /// AG-UI SSE: drop denied tool calls.
    Agui(AguiFilter),
    /// MCP SSE: filter `tools/list` results event by event.
    McpSse,
    /// MCP JSON: buffer and filter the `tools/list` result.
    McpJson(BytesMut),
}

/// State of an AG-UI stream filter.
#[derive(Debug, Default)]
pub struct AguiFilter {
    dropped: HashSet<String>,
    ended: bool,
}

/// Decision cache for one response (a tool is decided once).
pub(super) type Verdicts = HashMap<String, bool>;

/// Response header hook: picks the filter. Returns whether the body must be re-framed without
/// its `Content-Length` (a JSON answer that may shrink).
pub fn on_response_header(
    authz: Option<&Authz>,
    ctx: &mut RequestCtx,
    is_sse: bool,
    content_type: &str,
) -> bool {
    if authz.is_none() {
        return false;
    }
    let protocol = ctx
        .route
        .as_ref()
        .map_or(RouteProtocol::Http, |r| r.protocol);
    ctx.authz.response = match protocol {
        RouteProtocol::Agui if is_sse => Some(ResponseFilter::Agui(AguiFilter::default())),
        RouteProtocol::Mcp if !ctx.authz.mcp_list_ids.is_empty() => {
            if is_sse {
                Some(ResponseFilter::McpSse)
            } else if content_type.starts_with("application/json") {
                Some(ResponseFilter::McpJson(BytesMut::new()))
            } else {
                None
            }
        }
        _ => None,
    };
    matches!(ctx.authz.response, Some(ResponseFilter::McpJson(_)))
}

/// Response body hook, after SSE re-framing. `Err` when a JSON answer is too large to filter.
pub fn on_response_body(
    authz: Option<&Authz>,
    metrics: &Metrics,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) -> Result<(), &'static str> {
    let (Some(authz), Some(mut filter)) = (authz, ctx.authz.response.take()) else {
        return Ok(());
    };
    let mut verdicts = std::mem::take(&mut ctx.authz.verdicts);
    let result = match &mut filter {
        ResponseFilter::Agui(state) => {
            if let Some(chunk) = body.take() {
                *body = Some(filter_agui(
                    authz,
                    metrics,
                    ctx,
                    state,
                    &mut verdicts,
                    &chunk,
                ));
            }
            Ok(())
        }
        ResponseFilter::McpSse => {
            if let Some(chunk) = body.take() {
                *body = Some(filter_mcp_sse(authz, metrics, ctx, &mut verdicts, &chunk));
            }
            Ok(())
        }
        ResponseFilter::McpJson(held) => {
            if let Some(chunk) = body.take() {
                held.extend_from_slice(&chunk);
            }
            if held.len() > MAX_JSON_RESPONSE_BYTES {
                Err("tools/list answer too large to filter")
            } else if end_of_stream {
                let whole = std::mem::take(held).freeze();
                *body = Some(filter_mcp_json(authz, metrics, ctx, &mut verdicts, whole));
                Ok(())
            } else {
                *body = Some(Bytes::new());
                Ok(())
            }
        }
    };
    ctx.authz.response = Some(filter);
    ctx.authz.verdicts = verdicts;
    result
}

/// Whether the principal may `action` the tool `name` (decided once per response).
fn allowed(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    verdicts: &mut Verdicts,
    action: &str,
    name: &str,
) -> bool {
    if let Some(v) = verdicts.get(name) {
        return *v;
    }
    let Some(facts) = ctx.authz.facts.as_ref() else {
        return false;
    };
    let resource = Resource::new(ResourceKind::Tool, name);
    let decisions = authz.decide(&AuthzRequest {
        principal: ctx.principal.as_ref(),
        action,
        resource: &resource,
        facts,
        arguments: None,
    });
    let blocks = record(metrics, &decisions, &ctx.request_id);
    ctx.authz.body_decisions.extend(decisions.primary);
    ctx.authz.shadow.extend(decisions.shadow);
    verdicts.insert(name.to_string(), !blocks);
    !blocks
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn filter_agui(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    state: &mut AguiFilter,
    verdicts: &mut Verdicts,
    chunk: &Bytes,
) -> Bytes {
    if state.ended {
        return Bytes::new();
    }
    if !contains(chunk, b"TOOL_CALL") && !contains(chunk, b"MESSAGES_SNAPSHOT") {
        return chunk.clone();
    }
    let mode = ctx
        .route
        .as_ref()
        .map_or(DeniedToolCall::Drop, |r| r.authz.denied_tool_call);
    let mut out = BytesMut::with_capacity(chunk.len());
    // `Err` ends the chunk: the run was ended with RUN_ERROR.
    let _ = rewrite_events(chunk, &mut out, |mut event, out| {
        let Some(data) = event.data.as_deref() else {
            event.encode(out);
            return Ok(());
        };
        if !data.contains("TOOL_CALL") && !data.contains("MESSAGES_SNAPSHOT") {
            event.encode(out);
            return Ok(());
        }
        let Ok(mut json) = serde_json::from_str::<Value>(data) else {
            event.encode(out);
            return Ok(());
        };
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let call_id = json
            .get("toolCallId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = json
            .get("toolCallName")
            .and_then(Value::as_str)
            .map(str::to_string);
        match kind.as_str() {
            "TOOL_CALL_START" | "TOOL_CALL_CHUNK" if name.is_some() => {
                let name = name.unwrap_or_default();
                if allowed(authz, metrics, ctx, verdicts, "use_tool", &name) {
                    event.encode(out);
                } else if mode == DeniedToolCall::RunError {
                    out.extend_from_slice(&crate::protocol::agui::run_error_frame(
                        "FORBIDDEN",
                        "the agent called a tool this caller may not use",
                    ));
                    state.ended = true;
                    return Err(());
                } else if let Some(id) = call_id {
                    state.dropped.insert(id);
                }
            }
            "TOOL_CALL_START" | "TOOL_CALL_CHUNK" | "TOOL_CALL_ARGS" | "TOOL_CALL_END"
            | "TOOL_CALL_RESULT" => {
                if !call_id.is_some_and(|id| state.dropped.contains(&id)) {
                    event.encode(out);
                }
            }
            "MESSAGES_SNAPSHOT" => {
                scrub_snapshot(authz, metrics, ctx, state, verdicts, &mut json);
                event.data = Some(json.to_string());
                event.encode(out);
            }
            _ => event.encode(out),
        }
        Ok::<(), ()>(())
    });
    out.freeze()
}

/// Removes denied tool calls (and the tool messages answering them) from a snapshot.
fn scrub_snapshot(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    state: &mut AguiFilter,
    verdicts: &mut Verdicts,
    json: &mut Value,
) {
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
                let keep = !state.dropped.contains(id)
                    && allowed(authz, metrics, ctx, verdicts, "use_tool", name);
                if !keep {
                    state.dropped.insert(id.to_string());
                }
                keep
            });
        }
    }
    messages.retain(|m| {
        !m.get("toolCallId")
            .and_then(Value::as_str)
            .is_some_and(|id| state.dropped.contains(id))
    });
}

/// Filters `result.tools` of a JSON-RPC answer to one of the remembered `tools/list` ids.
fn filter_tools_result(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    verdicts: &mut Verdicts,
    msg: &mut Value,
) -> bool {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    if !ctx.authz.mcp_list_ids.contains(&id) {
        return false;
    }
    let Some(tools) = msg
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let list: Vec<Value> = std::mem::take(tools);
    let mut kept = Vec::with_capacity(list.len());
    for t in list {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if allowed(authz, metrics, ctx, verdicts, "list_tools", &name) {
            kept.push(t);
        }
    }
    if let Some(tools) = msg
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    {
        *tools = kept;
    }
    true
}

fn filter_mcp_json(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    verdicts: &mut Verdicts,
    whole: Bytes,
) -> Bytes {
    let Ok(mut json) = serde_json::from_slice::<Value>(&whole) else {
        return whole;
    };
    let changed = match &mut json {
        Value::Array(list) => {
            let mut changed = false;
            for m in list.iter_mut() {
                changed |= filter_tools_result(authz, metrics, ctx, verdicts, m);
            }
            changed
        }
        msg => filter_tools_result(authz, metrics, ctx, verdicts, msg),
    };
    if changed {
        Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
    } else {
        whole
    }
}

fn filter_mcp_sse(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    verdicts: &mut Verdicts,
    chunk: &Bytes,
) -> Bytes {
    if !contains(chunk, b"\"tools\"") {
        return chunk.clone();
    }
    let mut out = BytesMut::with_capacity(chunk.len());
    let _ = rewrite_events(chunk, &mut out, |mut event, out| {
        if let Some(Ok(mut json)) = event.data.as_deref().map(serde_json::from_str::<Value>) {
            if filter_tools_result(authz, metrics, ctx, verdicts, &mut json) {
                event.data = Some(json.to_string());
            }
        }
        event.encode(out);
        Ok::<(), ()>(())
    });
    out.freeze()
}
