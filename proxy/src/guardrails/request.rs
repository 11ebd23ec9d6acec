//! Request-side guardrails: JSON depth on any JSON body, the AG-UI `RunAgentInput` shape, and
//! detectors over user and tool messages, MCP `tools/call` arguments and A2A message parts.
//!
//! On `agui`, `mcp` and `a2a` routes a `POST` body is held whole (bounded by the route's
//! `max_body_bytes`, checked first), inspected, possibly rewritten (redaction), and handed on
//! to body-aware authorization, which therefore sees the redacted body. Other JSON bodies are
//! only depth-checked, incrementally, chunk by chunk, and never held.

use serde_json::Value;

use super::detect::{RuleSet, Side};
use super::scan::{scan_text, Fired};
use super::spec::Location;
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
    let mut changed = false;
    let refused = match protocol {
        RouteProtocol::Agui => {
            if rs.checks.validate_agui {
                if let Err(path) = validate_run_input(rs, json) {
                    return Err((Refusal::Invalid(path), found));
                }
            }
            agui_messages(rs, json, &mut changed, &mut found)
        }
        RouteProtocol::Mcp | RouteProtocol::A2a => {
            let mut refused = None;
            let mut each = |m: &mut Value| {
                let id = m.get("id").cloned().unwrap_or(Value::Null);
                let hit = if protocol == RouteProtocol::Mcp {
                    mcp_call(rs, m, &mut changed, &mut found)
                } else {
                    a2a_message(rs, m, &mut changed, &mut found)
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
    found.changed = changed;
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

/// Scans one string in place; returns whether it refuses.
fn scan_string(
    rs: &RuleSet,
    s: &mut String,
    location: Location,
    path: String,
    changed: &mut bool,
    found: &mut Inspected,
) -> bool {
    let scanned = scan_text(rs, s, Side::Input, location);
    if let Some(text) = scanned.text {
        *s = text;
        *changed = true;
    }
    if !scanned.fired.is_empty() {
        found.fired.push((path, scanned.fired));
    }
    scanned.refused.is_some()
}

/// User, developer, system and tool messages of a `RunAgentInput`.
fn agui_messages(
    rs: &RuleSet,
    json: &mut Value,
    changed: &mut bool,
    found: &mut Inspected,
) -> Option<Refusal> {
    let messages = json.get_mut("messages")?.as_array_mut()?;
    let mut refused = false;
    for (i, m) in messages.iter_mut().enumerate() {
        let location = match m.get("role").and_then(Value::as_str) {
            Some("user" | "developer" | "system") => Location::UserMessage,
            Some("tool") => Location::ToolMessage,
            _ => continue,
        };
        match m.get_mut("content") {
            Some(Value::String(s)) => {
                let path = format!("request.messages[{i}].content");
                refused |= scan_string(rs, s, location, path, changed, found);
            }
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter_mut().enumerate() {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        let path = format!("request.messages[{i}].content[{j}].text");
                        refused |= scan_string(rs, s, location, path, changed, found);
                    }
                }
            }
            _ => {}
        }
    }
    refused.then_some(Refusal::Violation { jsonrpc_id: None })
}

/// Every string leaf under `value`, scanned at `location`; `path` grows as it descends.
fn scan_leaves(
    rs: &RuleSet,
    value: &mut Value,
    location: Location,
    path: &str,
    changed: &mut bool,
    found: &mut Inspected,
) -> bool {
    match value {
        Value::String(s) => scan_string(rs, s, location, path.to_string(), changed, found),
        Value::Array(list) => {
            let mut refused = false;
            for (i, v) in list.iter_mut().enumerate() {
                refused |= scan_leaves(rs, v, location, &format!("{path}[{i}]"), changed, found);
            }
            refused
        }
        Value::Object(map) => {
            let mut refused = false;
            for (k, v) in map.iter_mut() {
                refused |= scan_leaves(rs, v, location, &format!("{path}.{k}"), changed, found);
            }
            refused
        }
        _ => false,
    }
}

/// MCP `tools/call`: the arguments.
fn mcp_call(rs: &RuleSet, m: &mut Value, changed: &mut bool, found: &mut Inspected) -> bool {
    if m.get("method").and_then(Value::as_str) != Some("tools/call") {
        return false;
    }
    let Some(args) = m.pointer_mut("/params/arguments") else {
        return false;
    };
    scan_leaves(
        rs,
        args,
        Location::ToolArguments,
        "request.params.arguments",
        changed,
        found,
    )
}

/// A2A: the text parts of `params.message`.
fn a2a_message(rs: &RuleSet, m: &mut Value, changed: &mut bool, found: &mut Inspected) -> bool {
    let Some(parts) = m
        .pointer_mut("/params/message/parts")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let mut refused = false;
    for (i, p) in parts.iter_mut().enumerate() {
        if let Some(Value::String(s)) = p.get_mut("text") {
            let path = format!("request.params.message.parts[{i}].text");
            refused |= scan_string(rs, s, Location::UserMessage, path, changed, found);
        }
    }
    refused
}
