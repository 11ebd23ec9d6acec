//! Response-side guardrails over parsed items: AG-UI streams event by event ([`agui`]), other
//! SSE streams (MCP, A2A, plain) event by event, and whole JSON answers on dialect routes.
//!
//! The relay parsed each event once; these filters edit the parsed values, and what the client
//! receives is encoded from them. A `stop` ends the client's stream: the filter leaves the
//! closing items (on AG-UI: `CUSTOM` `GUARDRAIL_VIOLATION`, a short assistant message,
//! `RUN_ERROR` `GUARDRAIL_VIOLATION`) and fails with `GuardrailViolation`.

pub mod agui;

use serde_json::Value;

use super::detect::{RuleSet, Side};
use super::scan::{scan_text, Fired};
use super::spec::Location;
use super::walk::Walk;
use crate::protocol::event::{Data, Item};
use crate::protocol::RouteProtocol;
use crate::stage::ResponseHead;
use crate::telemetry::Metrics;

/// What the output filter does for one response.
pub enum ResponseGuard {
    /// AG-UI SSE: per message / tool call, with carry-over.
    Agui(Box<agui::AguiGuard>),
    /// Other SSE: each event's JSON string fields (or its text).
    Sse {
        /// Where its text counts as.
        location: Location,
        /// Whether a stop answers in JSON-RPC (MCP, A2A).
        jsonrpc: bool,
    },
}

/// Where a route's response text counts as.
pub fn location(protocol: RouteProtocol) -> Location {
    match protocol {
        RouteProtocol::Mcp => Location::ToolResult,
        _ => Location::AssistantText,
    }
}

/// Picks the stream filter of a response (`None` when the body is not a stream).
pub fn pick(
    rs: &RuleSet,
    protocol: RouteProtocol,
    head: &ResponseHead,
    request_id: &str,
) -> Option<ResponseGuard> {
    if !head.is_sse || !rs.has_side(Side::Output) {
        return None;
    }
    Some(match protocol {
        RouteProtocol::Agui => ResponseGuard::Agui(Box::new(agui::AguiGuard::new(rs, request_id))),
        p => ResponseGuard::Sse {
            location: location(p),
            jsonrpc: matches!(p, RouteProtocol::Mcp | RouteProtocol::A2a),
        },
    })
}

/// Where response-side findings go: the metrics and the request's findings.
pub struct Recorder<'a> {
    /// `palisade_guardrail_findings_total`.
    pub metrics: &'a Metrics,
    /// The request's findings (for the audit record).
    pub findings: &'a mut super::Findings,
}

impl Recorder<'_> {
    pub(crate) fn fired(&mut self, rs: &RuleSet, location: &str, fired: &[Fired]) {
        super::record(self.metrics, self.findings, rs, location, fired);
    }

    pub(crate) fn overflow(&mut self, location: &str) {
        self.metrics
            .guardrail_findings
            .with_label_values(&[super::scan::HOLD_LIMIT_RULE, "redact"])
            .inc();
        self.findings.record(super::Finding {
            rule: super::scan::HOLD_LIMIT_RULE.into(),
            location: location.into(),
            action: super::FindingAction::Redact,
            count: 1,
        });
    }
}

/// Scans every string and key of a JSON value in place (output side), records what fired
/// under `label`, and returns the refusing rule.
fn scan_value(
    rs: &RuleSet,
    rec: &mut Recorder<'_>,
    value: &mut Value,
    location: Location,
    label: &str,
) -> Option<usize> {
    let mut walk = Walk::new(rs, Side::Output, location);
    walk.value(value);
    rec.fired(rs, label, &walk.found.fired);
    walk.found.refused
}

/// The JSON-RPC error that replaces a stopped MCP/A2A answer.
fn jsonrpc_stop(id: &Value, rule: &str) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": crate::protocol::jsonrpc::GUARDRAIL,
            "message": "blocked by guardrail",
            "data": {"code": "GUARDRAIL_VIOLATION", "rule": rule}
        }
    })
}

/// Scans the items of one chunk of a non-AG-UI stream. `Err` (the refusing rule) leaves the
/// stop event last in `items`.
pub fn sse_items(
    rs: &RuleSet,
    rec: &mut Recorder<'_>,
    items: &mut Vec<Item>,
    location: Location,
    jsonrpc: bool,
) -> Result<(), usize> {
    for at in 0..items.len() {
        let Item::Event(event) = &mut items[at] else {
            continue;
        };
        let refused = match &mut event.data {
            Data::None => None,
            Data::Json(json) => scan_value(rs, rec, json, location, "response.sse"),
            Data::Text(text) => {
                let scanned = scan_text(rs, text, Side::Output, location);
                rec.fired(rs, "response.sse", &scanned.fired);
                if let Some(t) = scanned.text {
                    *text = t;
                }
                scanned.refused
            }
        };
        if let Some(rule) = refused {
            let id = event
                .value()
                .and_then(|v| v.get("id"))
                .cloned()
                .unwrap_or(Value::Null);
            event.data = Data::Json(if jsonrpc {
                jsonrpc_stop(&id, &rs.rules[rule].id)
            } else {
                serde_json::json!({"error": {"code": "GUARDRAIL_VIOLATION", "rule": rs.rules[rule].id}})
            });
            items.truncate(at + 1);
            return Err(rule);
        }
    }
    Ok(())
}

/// Scans a whole JSON answer in place; a refusal replaces it with the JSON-RPC stop answer.
pub fn json_answer(rs: &RuleSet, rec: &mut Recorder<'_>, json: &mut Value, location: Location) {
    if let Some(rule) = scan_value(rs, rec, json, location, "response.json") {
        let id = json.get("id").cloned().unwrap_or(Value::Null);
        *json = jsonrpc_stop(&id, &rs.rules[rule].id);
    }
}
