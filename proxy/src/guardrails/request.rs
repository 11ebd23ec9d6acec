//! Request-side guardrails: JSON depth on any JSON body, the AG-UI `RunAgentInput` shape, and
//! detectors over everything in a dialect body that may reach a model.
//!
//! On `agui`, `mcp` and `a2a` routes the body is held whole for any method (bounded by the
//! route's `max_body_bytes`, checked first), parsed once by the dialect, inspected here,
//! possibly rewritten (redaction), and handed on to body-aware authorization, which therefore
//! sees the redacted body. Inspection is keyed on the route's protocol, never on the method or
//! the declared content type. Bodies of other routes are only depth-checked, incrementally,
//! chunk by chunk, and never held.
//!
//! What is scanned (`docs/guardrails.md`, "What is inspected"):
//!
//! - AG-UI: every message whatever its role (the client writes the whole history, `system`
//!   and `assistant` turns included) — its content (text or parts), name and every other field
//!   but ids, assistant tool-call arguments as `tool_arguments`; every tool definition (name,
//!   description, parameter schema); `context`, `forwardedProps`, `state` and any other field
//!   but `threadId` / `runId`, walked whole;
//! - MCP: `tools/call` arguments (keys and values) as `tool_arguments`; `prompts/get` and
//!   `completion/complete` arguments; the `result` / `error` of responses the client sends to
//!   the server's own requests (sampling, elicitation). `resources/read` is not: its URI is an
//!   address the server resolves, and what it reads comes back as a result, which is scanned;
//! - A2A: the message (every part, text, data and file metadata, and its metadata) and the
//!   request's `metadata`, in JSON-RPC `params` or as the HTTP+JSON binding's body.

use serde_json::Value;

use super::detect::{RuleSet, Side};
use super::scan::Fired;
use super::spec::Location;
use super::walk::{self, Walk};
use crate::error::ProxyError;
use crate::protocol::RouteProtocol;

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 400 `INVALID_REQUEST` naming the field path.
    Invalid(String),
    /// 400 `GUARDRAIL_VIOLATION` (a JSON-RPC error with the request's `id` on MCP and A2A).
    Violation {
        /// The JSON-RPC id when the route speaks JSON-RPC.
        jsonrpc_id: Option<Value>,
    },
}

impl Refusal {
    /// The error it maps to.
    pub fn error(&self) -> ProxyError {
        match self {
            Self::Invalid(path) => ProxyError::InvalidRequest(path.clone()),
            Self::Violation { .. } => ProxyError::GuardrailViolation,
        }
    }
}

/// Incremental JSON nesting depth (strings and escapes aware), fed chunk by chunk.
#[derive(Debug, Default, Clone)]
pub struct DepthScanner {
    depth: usize,
    max: usize,
    in_string: bool,
    escaped: bool,
}

impl DepthScanner {
    /// Feeds bytes; returns the deepest nesting seen so far.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        for &b in bytes {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    self.max = self.max.max(self.depth);
                }
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        self.max
    }
}

/// What inspecting a whole body produced.
#[derive(Debug, Default)]
pub struct Inspected {
    /// Whether something was redacted in place.
    pub changed: bool,
    /// Findings: `(location, fired)`.
    pub fired: Vec<(String, Vec<Fired>)>,
}

/// Nesting depth of a parsed value.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(list) => 1 + list.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Inspects a whole, parsed request body of a dialect route in place (redactions edit it).
pub fn inspect(
    rs: &RuleSet,
    protocol: RouteProtocol,
    json: &mut Value,
) -> Result<Inspected, (Refusal, Inspected)> {
    let mut found = Inspected::default();
    if depth(json) > rs.checks.max_json_depth {
        return Err((
            Refusal::Invalid(format!(
                "body: JSON nested deeper than {} levels",
                rs.checks.max_json_depth
            )),
            found,
        ));
    }
    let refused = match protocol {
        RouteProtocol::Agui => {
            if rs.checks.validate_agui {
                if let Err(path) = validate_run_input(rs, json) {
                    return Err((Refusal::Invalid(path), found));
                }
            }
            agui_input(rs, json, &mut found)
        }
        RouteProtocol::Mcp | RouteProtocol::A2a => {
            let mut refused = None;
            let mut each = |m: &mut Value| {
                let id = m.get("id").cloned().unwrap_or(Value::Null);
                let hit = if protocol == RouteProtocol::Mcp {
                    mcp_message(rs, m, &mut found)
                } else {
                    a2a_message(rs, m, &mut found)
                };
                if hit && refused.is_none() {
                    refused = Some(id);
                }
            };
            match json {
                Value::Array(list) => list.iter_mut().for_each(&mut each),
                m => each(m),
            }
            refused.map(|id| Refusal::Violation {
                jsonrpc_id: Some(id),
            })
        }
        RouteProtocol::Http => None,
    };
    if let Some(r) = refused {
        return Err((r, found));
    }
    Ok(found)
}

/// Checks `threadId`/`runId`, roles and message sizes; `Err` names the field path.
fn validate_run_input(rs: &RuleSet, json: &Value) -> Result<(), String> {
    let Some(obj) = json.as_object() else {
        return Err("body: expected a RunAgentInput object".into());
    };
    for field in ["threadId", "runId"] {
        match obj.get(field) {
            Some(Value::String(s)) if valid_id(s) => {}
            Some(_) => {
                return Err(format!(
                    "{field}: expected 1 to 128 characters of A-Z a-z 0-9 _ -"
                ))
            }
            None => return Err(format!("{field}: required")),
        }
    }
    let Some(messages) = obj.get("messages") else {
        return Ok(());
    };
    let Some(messages) = messages.as_array() else {
        return Err("messages: expected an array".into());
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(
            role,
            Some("user" | "assistant" | "system" | "developer" | "tool" | "activity" | "reasoning")
        ) {
            return Err(format!("messages[{i}].role: unknown role"));
        }
        let size = match m.get("content") {
            Some(Value::String(s)) => s.len(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(str::len)
                .sum(),
            _ => 0,
        };
        if size > rs.checks.max_message_bytes {
            return Err(format!(
                "messages[{i}].content: longer than {} bytes",
                rs.checks.max_message_bytes
            ));
        }
    }
    Ok(())
}

fn valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Records what a walk fired under `label`; returns whether it refuses.
fn settle(walk: Walk<'_>, label: impl FnOnce() -> String, found: &mut Inspected) -> bool {
    found.changed |= walk.changed;
    if !walk.found.fired.is_empty() {
        found.fired.push((label(), walk.found.fired));
    }
    walk.found.refused.is_some()
}

/// Walks `value` whole at `location` and records it under `label`.
fn scan_value(
    rs: &RuleSet,
    value: &mut Value,
    location: Location,
    label: impl FnOnce() -> String,
    found: &mut Inspected,
) -> bool {
    let mut walk = Walk::new(rs, Side::Input, location);
    walk.value(value);
    settle(walk, label, found)
}

/// A `RunAgentInput`: messages and tools one by one, `context`, `forwardedProps` and `state`
/// whole, and any other field (keys too) but the run's ids.
fn agui_input(rs: &RuleSet, json: &mut Value, found: &mut Inspected) -> Option<Refusal> {
    let obj = json.as_object_mut()?;
    let mut refused = false;
    for (key, value) in obj.iter_mut() {
        refused |= match (key.as_str(), value) {
            ("messages", Value::Array(messages)) => messages
                .iter_mut()
                .enumerate()
                .fold(false, |r, (i, m)| r | agui_message(rs, i, m, found)),
            ("tools", Value::Array(tools)) => {
                tools.iter_mut().enumerate().fold(false, |r, (i, t)| {
                    let label = || format!("request.tools[{i}]");
                    r | scan_value(rs, t, Location::UserMessage, label, found)
                })
            }
            (field @ ("messages" | "tools" | "context" | "forwardedProps" | "state"), value) => {
                let label = || format!("request.{field}");
                scan_value(rs, value, Location::UserMessage, label, found)
            }
            _ => false,
        };
    }
    let mut rest = Walk::new(rs, Side::Input, Location::UserMessage);
    rest.object(obj, AGUI_FIELDS);
    refused |= settle(rest, || "request".into(), found);
    refused.then_some(Refusal::Violation { jsonrpc_id: None })
}

/// Fields of a `RunAgentInput` scanned on their own, or (the ids) not at all.
const AGUI_FIELDS: &[&str] = &[
    "threadId",
    "runId",
    "messages",
    "tools",
    "context",
    "forwardedProps",
    "state",
];

/// One message of a `RunAgentInput`, whatever its role: content (text or parts), assistant
/// tool calls, and every other field (name, error, …; keys too) but its ids.
fn agui_message(rs: &RuleSet, i: usize, m: &mut Value, found: &mut Inspected) -> bool {
    let location = match m.get("role").and_then(Value::as_str) {
        Some("tool") => Location::ToolMessage,
        _ => Location::UserMessage,
    };
    let scan = walk::agui_message(rs, Side::Input, location, m);
    let content = settle(
        scan.content,
        || format!("request.messages[{i}].content"),
        found,
    );
    let calls = settle(
        scan.tool_calls,
        || format!("request.messages[{i}].toolCalls"),
        found,
    );
    let rest = settle(scan.rest, || format!("request.messages[{i}]"), found);
    content | calls | rest
}

/// One MCP message: what its method hands to a model.
fn mcp_message(rs: &RuleSet, m: &mut Value, found: &mut Inspected) -> bool {
    use Location::{ToolArguments, UserMessage};
    let targets: &[(&str, &str, Location)] = match crate::protocol::jsonrpc::method(m) {
        "tools/call" => &[(
            "/params/arguments",
            "request.params.arguments",
            ToolArguments,
        )],
        "prompts/get" => &[("/params/arguments", "request.params.arguments", UserMessage)],
        "completion/complete" => &[
            ("/params/argument", "request.params.argument", UserMessage),
            ("/params/context", "request.params.context", UserMessage),
        ],
        // A response to one of the server's own requests (sampling, elicitation).
        "" => &[
            ("/result", "request.result", UserMessage),
            ("/error", "request.error", UserMessage),
        ],
        _ => &[],
    };
    let mut refused = false;
    for (pointer, label, location) in targets {
        if let Some(v) = m.pointer_mut(pointer) {
            refused |= scan_value(rs, v, *location, || label.to_string(), found);
        }
    }
    refused
}

/// Fields of an A2A message scanned on their own (`parts`), or (ids, the role) not at all.
const A2A_FIELDS: &[&str] = &[
    "parts",
    "kind",
    "messageId",
    "taskId",
    "contextId",
    "role",
    "referenceTaskIds",
    "extensions",
];

/// One A2A request: the message and the metadata of JSON-RPC `params`, or of the body itself
/// in the HTTP+JSON binding (which has no `method`).
fn a2a_message(rs: &RuleSet, m: &mut Value, found: &mut Inspected) -> bool {
    let (params, prefix) = if m.get("method").is_some() {
        match m.get_mut("params") {
            Some(p) => (p, "request.params"),
            None => return false,
        }
    } else {
        (m, "request")
    };
    let Some(params) = params.as_object_mut() else {
        return false;
    };
    let mut refused = false;
    if let Some(metadata) = params.get_mut("metadata") {
        let label = || format!("{prefix}.metadata");
        refused |= scan_value(rs, metadata, Location::UserMessage, label, found);
    }
    let Some(message) = params.get_mut("message").and_then(Value::as_object_mut) else {
        return refused;
    };
    match message.get_mut("parts") {
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter_mut().enumerate() {
                let mut walk = Walk::new(rs, Side::Input, Location::UserMessage);
                a2a_part(&mut walk, part);
                refused |= settle(walk, || format!("{prefix}.message.parts[{i}]"), found);
            }
        }
        Some(other) => {
            let label = || format!("{prefix}.message.parts");
            refused |= scan_value(rs, other, Location::UserMessage, label, found);
        }
        None => {}
    }
    let mut rest = Walk::new(rs, Side::Input, Location::UserMessage);
    rest.object(message, A2A_FIELDS);
    refused | settle(rest, || format!("{prefix}.message"), found)
}

/// An A2A part: text, data (walked whole) and file parts (all but the inline `bytes`, a
/// binary payload rather than text).
fn a2a_part(walk: &mut Walk<'_>, part: &mut Value) {
    let Some(map) = part.as_object_mut() else {
        return walk.value(part);
    };
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            ("kind", _) => {}
            ("file", Value::Object(file)) => walk.object(file, &["bytes"]),
            (_, value) => walk.value(value),
        }
    }
}
