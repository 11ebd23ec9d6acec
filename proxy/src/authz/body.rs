//! Body-aware authorization: the tools offered in an AG-UI run, MCP `tools/call` (and which
//! `tools/list` answers to filter), A2A methods.
//!
//! On routes that speak one of these protocols, a `POST` body is held back as it arrives
//! (bounded by the route's `max_body_bytes`, which the pipeline enforces first), parsed once
//! complete, decided, and then forwarded — rewritten when AG-UI tools were removed. Because
//! its length may change, such a body goes upstream chunked. A denial answers the client
//! without a byte of the body reaching the upstream: a JSON-RPC error with the request's `id`
//! on MCP and A2A, never a policy id or name.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::entities::{Resource, ResourceKind};
use super::stage::record;
use super::{Authz, AuthzRequest, Decision, Decisions, RequestFacts};
use crate::config::spec::RouteProtocol;
use crate::error::ProxyError;
use crate::pipeline::context::RequestCtx;
use crate::telemetry::Metrics;

/// JSON-RPC error code for an authorization denial: in the server-defined range, and outside the
/// codes MCP and A2A (-32001…-32009) give meanings of their own.
pub const JSONRPC_FORBIDDEN: i64 = -32030;
/// JSON-RPC error code for a malformed or inconsistent request.
pub const JSONRPC_INVALID_REQUEST: i64 = -32600;

/// Per-request authorization state beyond the request-level decision.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The request's facts, kept for body-aware decisions.
    pub facts: Option<RequestFacts>,
    /// Decisions of shadow policy sets.
    pub shadow: Vec<Decision>,
    /// Body-aware decisions (tools, MCP calls, A2A methods), in order, enforcing set only.
    pub body_decisions: Vec<Decision>,
    /// The request body being held back, when this request's body is inspected.
    pub(super) held: Option<BytesMut>,
    /// Ids of MCP `tools/list` requests whose answers are filtered per principal.
    pub(super) mcp_list_ids: Vec<Value>,
    /// Response filtering, once the response header said what it is.
    pub(super) response: Option<super::stream::ResponseFilter>,
    /// Tool verdicts already made for this response.
    pub(super) verdicts: super::stream::Verdicts,
}

impl Exchange {
    /// Whether the request body is held for inspection (it then goes upstream chunked).
    pub fn holds_body(&self) -> bool {
        self.held.is_some()
    }
}

/// A refusal made after reading the body.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A documented error body (AG-UI / plain).
    Http(ProxyError),
    /// A JSON-RPC error (MCP, A2A): HTTP 200 with `{"jsonrpc":"2.0","id":…,"error":…}` (an
    /// array for a batch), or HTTP 400 for requests refused as malformed.
    JsonRpc {
        /// HTTP status.
        status: u16,
        /// The JSON-RPC response body.
        body: Value,
    },
}

/// Called after the request-level stage allowed the request: hold the body of protocol
/// requests that carry decisions.
pub fn start(ctx: &mut RequestCtx, method: &http::Method) {
    let inspect = ctx.route.as_ref().is_some_and(|r| {
        matches!(
            r.protocol,
            RouteProtocol::Agui | RouteProtocol::Mcp | RouteProtocol::A2a
        )
    });
    if inspect && method == http::Method::POST {
        ctx.authz.held = Some(BytesMut::new());
    }
}

/// Makes a held body go upstream chunked (its length may change).
pub fn prepare_upstream(
    upstream: &mut pingora_http::RequestHeader,
    ctx: &RequestCtx,
) -> pingora_core::Result<()> {
    if ctx.authz.holds_body() {
        upstream.remove_header(&http::header::CONTENT_LENGTH);
        upstream.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

/// Request body hook: holds chunks back; at the end, decides and puts the (possibly
/// rewritten) body in `body`. `Err` carries the refusal to answer with.
pub fn on_request_body(
    authz: Option<&Authz>,
    metrics: &Metrics,
    headers: &http::HeaderMap,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let (Some(authz), Some(held)) = (authz, ctx.authz.held.as_mut()) else {
        return Ok(());
    };
    if let Some(chunk) = body.take() {
        held.extend_from_slice(&chunk);
    }
    if !end_of_stream {
        // Hold: an empty chunk is not written upstream.
        *body = Some(Bytes::new());
        return Ok(());
    }
    let whole = std::mem::take(held).freeze();
    if whole.is_empty() {
        return Ok(());
    }
    let protocol = ctx
        .route
        .as_ref()
        .map_or(RouteProtocol::Http, |r| r.protocol);
    let out = match protocol {
        RouteProtocol::Agui => agui_request(authz, metrics, &whole, ctx),
        RouteProtocol::Mcp => mcp_request(authz, metrics, headers, &whole, ctx).map(|()| whole),
        RouteProtocol::A2a => a2a_request(authz, metrics, &whole, ctx).map(|()| whole),
        RouteProtocol::Http => Ok(whole),
    }?;
    *body = Some(out);
    Ok(())
}

/// Decides `action` on `resource` with every set, records it, and says whether it blocks.
fn decide(
    authz: &Authz,
    metrics: &Metrics,
    ctx: &mut RequestCtx,
    action: &str,
    resource: &Resource,
    arguments: Option<&Value>,
) -> bool {
    let Some(facts) = ctx.authz.facts.as_ref() else {
        return true;
    };
    let decisions: Decisions = authz.decide(&AuthzRequest {
        principal: ctx.principal.as_ref(),
        action,
        resource,
        facts,
        arguments,
    });
    let blocks = record(metrics, &decisions, &ctx.request_id);
    ctx.authz.body_decisions.extend(decisions.primary);
    ctx.authz.shadow.extend(decisions.shadow);
    blocks
}

/// AG-UI `RunAgentInput`: every offered tool is checked as `use_tool`; denied ones are
/// removed. The body is rewritten only when something was removed.
fn agui_request(
    authz: &Authz,
    metrics: &Metrics,
    whole: &Bytes,
    ctx: &mut RequestCtx,
) -> Result<Bytes, Refusal> {
    let mut input: Value = serde_json::from_slice(whole).map_err(|_| {
        Refusal::Http(ProxyError::InvalidRequest(
            "the run request is not JSON".into(),
        ))
    })?;
    let Some(tools) = input.get_mut("tools").and_then(Value::as_array_mut) else {
        return Ok(whole.clone());
    };
    let before = tools.len();
    let mut kept = Vec::with_capacity(before);
    for tool in tools.drain(..) {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let resource = Resource::new(ResourceKind::Tool, name);
        if !decide(authz, metrics, ctx, "use_tool", &resource, None) {
            kept.push(tool);
        }
    }
    let removed = before - kept.len();
    *tools = kept;
    if removed == 0 {
        return Ok(whole.clone());
    }
    tracing::debug!(request_id = %ctx.request_id, removed, "denied AG-UI tools removed from the run");
    Ok(Bytes::from(serde_json::to_vec(&input).unwrap_or_default()))
}

fn jsonrpc_error(
    id: &Value,
    code: i64,
    message: &str,
    error_code: &str,
    request_id: &str,
) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": code,
            "message": message,
            "data": {"code": error_code, "request_id": request_id}
        }
    })
}

fn forbidden(id: &Value, request_id: &str) -> Value {
    jsonrpc_error(
        id,
        JSONRPC_FORBIDDEN,
        "access denied",
        "FORBIDDEN",
        request_id,
    )
}

fn invalid(id: &Value, message: &str, request_id: &str) -> Refusal {
    Refusal::JsonRpc {
        status: 400,
        body: jsonrpc_error(
            id,
            JSONRPC_INVALID_REQUEST,
            message,
            "INVALID_REQUEST",
            request_id,
        ),
    }
}

/// The JSON-RPC messages of a body (one object, or a batch array), and whether it was a batch.
fn messages(whole: &Bytes, request_id: &str) -> Result<(Vec<Map<String, Value>>, bool), Refusal> {
    let parsed: Value = serde_json::from_slice(whole)
        .map_err(|_| invalid(&Value::Null, "the body is not JSON-RPC", request_id))?;
    match parsed {
        Value::Object(m) => Ok((vec![m], false)),
        Value::Array(list) => {
            let msgs = list
                .into_iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(m),
                    _ => Err(invalid(
                        &Value::Null,
                        "a batch entry is not an object",
                        request_id,
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((msgs, true))
        }
        _ => Err(invalid(
            &Value::Null,
            "the body is not JSON-RPC",
            request_id,
        )),
    }
}

/// Answers a refused batch: FORBIDDEN for the denied requests, a note for the others.
fn refuse(denied: Vec<Value>, all_ids: Vec<Value>, batch: bool, request_id: &str) -> Refusal {
    let body = if batch {
        Value::Array(
            all_ids
                .iter()
                .map(|id| {
                    if denied.contains(id) {
                        forbidden(id, request_id)
                    } else {
                        jsonrpc_error(
                            id,
                            JSONRPC_FORBIDDEN,
                            "batch refused: another request in it was denied",
                            "FORBIDDEN",
                            request_id,
                        )
                    }
                })
                .collect(),
        )
    } else {
        forbidden(denied.first().unwrap_or(&Value::Null), request_id)
    };
    Refusal::JsonRpc { status: 200, body }
}

/// MCP: `tools/call` is `call_tool` on `Tool::"<name>"` with the arguments; `tools/list` ids
/// are remembered so their answers are filtered. `Mcp-Method` / `Mcp-Name` headers, when
/// sent, must agree with the body.
fn mcp_request(
    authz: &Authz,
    metrics: &Metrics,
    headers: &http::HeaderMap,
    whole: &Bytes,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let request_id = ctx.request_id.clone();
    let (msgs, batch) = messages(whole, &request_id)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (h_method, h_name) = (header("mcp-method"), header("mcp-name"));
    let mut denied = Vec::new();
    let mut ids = Vec::new();
    for m in &msgs {
        let id = m.get("id").cloned().unwrap_or(Value::Null);
        let method = m.get("method").and_then(Value::as_str).unwrap_or_default();
        let name = m
            .get("params")
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str);
        if !batch {
            if h_method.as_deref().is_some_and(|h| h != method) {
                return Err(invalid(
                    &id,
                    "the Mcp-Method header does not match the body",
                    &request_id,
                ));
            }
            if let Some(h) = &h_name {
                if name != Some(h.as_str()) {
                    return Err(invalid(
                        &id,
                        "the Mcp-Name header does not match the body",
                        &request_id,
                    ));
                }
            }
        }
        if m.contains_key("id") {
            ids.push(id.clone());
        }
        match method {
            "tools/call" => {
                let Some(name) = name else {
                    return Err(invalid(&id, "tools/call without params.name", &request_id));
                };
                let resource = Resource::new(ResourceKind::Tool, name);
                let arguments = m.get("params").and_then(|p| p.get("arguments"));
                if decide(authz, metrics, ctx, "call_tool", &resource, arguments) {
                    denied.push(id);
                }
            }
            "tools/list" => ctx.authz.mcp_list_ids.push(id),
            _ => {}
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(refuse(denied, ids, batch, &request_id))
    }
}

/// The `a2a_*` action of an A2A JSON-RPC method (v0.3 and v1.0 names); `None` when unknown.
pub fn a2a_action(method: &str) -> Option<&'static str> {
    Some(match method {
        "message/send" | "SendMessage" => "a2a_send",
        "message/stream"
        | "SendStreamingMessage"
        | "tasks/resubscribe"
        | "SubscribeToTask"
        | "TaskSubscription" => "a2a_stream",
        "tasks/get"
        | "GetTask"
        | "tasks/list"
        | "ListTasks"
        | "tasks/pushNotificationConfig/get"
        | "tasks/pushNotificationConfig/list"
        | "GetTaskPushNotificationConfig"
        | "ListTaskPushNotificationConfig"
        | "agent/getAuthenticatedExtendedCard"
        | "GetExtendedAgentCard"
        | "GetAuthenticatedExtendedCard" => "a2a_get_task",
        "tasks/cancel"
        | "CancelTask"
        | "tasks/pushNotificationConfig/delete"
        | "DeleteTaskPushNotificationConfig" => "a2a_cancel",
        "tasks/pushNotificationConfig/set"
        | "SetTaskPushNotificationConfig"
        | "CreateTaskPushNotificationConfig" => "a2a_send",
        _ => return None,
    })
}

/// A2A: each method is its `a2a_*` action on `Agent::"<agent>"`; unknown methods are refused.
fn a2a_request(
    authz: &Authz,
    metrics: &Metrics,
    whole: &Bytes,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let request_id = ctx.request_id.clone();
    let (msgs, batch) = messages(whole, &request_id)?;
    let agent = ctx
        .route
        .as_ref()
        .map(|r| r.authz.agent.clone())
        .unwrap_or_default();
    let resource = Resource::new(ResourceKind::Agent, agent);
    let mut denied = Vec::new();
    let mut ids = Vec::new();
    for m in &msgs {
        let id = m.get("id").cloned().unwrap_or(Value::Null);
        if m.contains_key("id") {
            ids.push(id.clone());
        }
        let method = m.get("method").and_then(Value::as_str).unwrap_or_default();
        let blocked = match a2a_action(method) {
            Some(action) => decide(authz, metrics, ctx, action, &resource, None),
            None => {
                tracing::debug!(request_id = %request_id, method, "unknown A2A method refused");
                true
            }
        };
        if blocked {
            denied.push(id);
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(refuse(denied, ids, batch, &request_id))
    }
}

/// Writes a body-aware refusal to the client.
pub async fn write_refusal(
    session: &mut pingora_proxy::Session,
    ctx: &mut RequestCtx,
    refusal: Refusal,
) -> pingora_core::Result<()> {
    match refusal {
        Refusal::Http(err) => crate::pipeline::respond::error_response(session, ctx, err).await,
        Refusal::JsonRpc { status, body } => {
            let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let mut resp = pingora_http::ResponseHeader::build(status, Some(4))?;
            resp.insert_header("content-type", "application/json")?;
            resp.insert_header("content-length", bytes.len().to_string())?;
            resp.insert_header("cache-control", "no-store")?;
            resp.insert_header("x-request-id", ctx.request_id.as_str())?;
            ctx.error = Some(if status == 400 {
                ProxyError::InvalidRequest("inconsistent JSON-RPC request".into())
            } else {
                ProxyError::Forbidden
            });
            session.set_keepalive(None);
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(bytes), true).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2a_methods_of_both_versions_map_to_actions() {
        for (method, action) in [
            ("message/send", "a2a_send"),
            ("SendMessage", "a2a_send"),
            ("message/stream", "a2a_stream"),
            ("SendStreamingMessage", "a2a_stream"),
            ("tasks/resubscribe", "a2a_stream"),
            ("tasks/get", "a2a_get_task"),
            ("GetTask", "a2a_get_task"),
            ("ListTasks", "a2a_get_task"),
            ("tasks/cancel", "a2a_cancel"),
            ("CancelTask", "a2a_cancel"),
            ("tasks/pushNotificationConfig/set", "a2a_send"),
        ] {
            assert_eq!(a2a_action(method), Some(action), "{method}");
        }
        assert_eq!(a2a_action("tasks/teleport"), None);
        assert_eq!(a2a_action(""), None);
    }

    #[test]
    fn a_refused_batch_answers_every_request_in_it() {
        let ids = vec![json!(1), json!("two"), json!(3)];
        let Refusal::JsonRpc { status, body } = refuse(vec![json!("two")], ids, true, "req-1")
        else {
            panic!("JSON-RPC refusal expected");
        };
        assert_eq!(status, 200);
        let answers = body.as_array().unwrap();
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[1]["id"], "two");
        assert_eq!(answers[1]["error"]["message"], "access denied");
        assert!(answers[0]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("batch refused"));
        assert_eq!(answers[2]["error"]["data"]["code"], "FORBIDDEN");
        let Refusal::JsonRpc { body, .. } = refuse(vec![json!(9)], vec![json!(9)], false, "r")
        else {
            panic!("JSON-RPC refusal expected");
        };
        assert_eq!(body["id"], 9);
        assert_eq!(body["error"]["code"], JSONRPC_FORBIDDEN);
    }

    #[test]
    fn bodies_that_are_not_json_rpc_are_refused_as_invalid() {
        for body in [&b"not json"[..], b"42", b"[1]"] {
            let err = messages(&Bytes::copy_from_slice(body), "r").expect_err("invalid");
            assert!(
                matches!(err, Refusal::JsonRpc { status: 400, .. }),
                "{body:?}"
            );
        }
        let (msgs, batch) = messages(&Bytes::from_static(b"[{\"id\":1},{\"id\":2}]"), "r").unwrap();
        assert!(batch);
        assert_eq!(msgs.len(), 2);
    }
}
