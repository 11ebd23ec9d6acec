//! [`AuditRecord`]: what one request leaves behind — a typed struct, not a log line.
//!
//! Built once per request in the pipeline's `logging` phase by [`AuditRecord::new`], from
//! what the stages left in the [`RequestCtx`]. Guardrail findings carry rule ids, locations and
//! actions only, never the matched content. The writer fills the chain fields (`seq`,
//! `prev_hash`, `hash`; see [`super::chain`]) when it writes the record.

use serde::Serialize;

use crate::error::ProxyError;
use crate::principal::Principal;
use std::net::IpAddr;

/// One request's audit record.
///
/// Fields are declared in byte order of their names (and so are the nested structs'), so
/// `serde_json::to_string` writes the canonical form the hash chain is defined over directly; a
/// unit test keeps it that way. The writer thread writes the same bytes with [`super::line`]
/// (faster; a field added here goes there too — debug builds check every sealed line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// The Cedar action of the request-level decision, e.g. `Action::"run_agent"`.
    pub action: Option<String>,
    /// The human approval this request waited for or decided (`docs/approvals.md`); absent
    /// when none was involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<AuditApproval>,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// The TCP peer's address.
    pub client_ip: Option<String>,
    /// The hash of the configuration the request ran under (as on `/readyz`): which version of
    /// routes, limits and guardrails decided, across config reloads.
    pub config_hash: String,
    /// The request-level authorization decision; `None` when authorization is off or did not run.
    pub decision: Option<AuditDecision>,
    /// From accept to the end of the response, in milliseconds.
    pub duration_ms: f64,
    /// The documented error code when the proxy refused or failed the request.
    pub error_code: Option<&'static str>,
    /// Guardrail findings: rule, location, action, count — never the matched content.
    pub guardrails: Vec<AuditFinding>,
    /// SHA-256 over `prev_hash` and this record's canonical JSON without `hash` (set by the
    /// writer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path (without the query string, which may carry secrets).
    pub path: String,
    /// The previous record's `hash` (set by the writer).
    pub prev_hash: String,
    /// Who called, once identification ran.
    pub principal: Option<AuditPrincipal>,
    /// The rate-limit stage's outcome: `passed`, `limited`, `backend_unavailable` or
    /// `not_reached` (refused earlier).
    pub rate_limit: &'static str,
    /// Low-cardinality outcome: `ok`, `cors_preflight` (a CORS preflight the proxy answered),
    /// `client_closed`, or the error's reason.
    pub reason: &'static str,
    /// `X-Request-Id` of the request.
    pub request_id: String,
    /// The Cedar resource of the request-level decision, e.g. `Agent::"agent"`.
    pub resource: Option<String>,
    /// The matched route's name.
    pub route: Option<String>,
    /// Position in the chain, from 1 (set by the writer).
    pub seq: u64,
    /// Status sent to the client (`0`: the client went away before a response).
    pub status: u16,
    /// Facts of a relayed SSE stream.
    pub stream: Option<StreamFacts>,
    /// When the request ended, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Tool calls decided for this request (AG-UI tools, MCP `tools/call`, stream tool calls):
    /// name, action and whether they were allowed.
    pub tool_calls: Vec<ToolCall>,
    /// MCP tools that were not as pinned in the route's tool lock (`docs/tool-integrity.md`):
    /// tool, kind (`changed`, `new`, `poisoned`, `collision`), action (`blocked`, `flagged`)
    /// and the rule that found poisoning. Left out when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_integrity: Vec<IntegrityFinding>,
    /// W3C trace id (32 hex digits); empty when the request was never read.
    pub trace_id: String,
    /// Status the upstream answered with, when it answered.
    pub upstream_status: Option<u16>,
}

/// The principal as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPrincipal {
    /// `jwt`, `api_key`, `mtls`, `trusted_header`, `session` or `anonymous`.
    pub auth_method: &'static str,
    /// Cedar entity, e.g. `User::"https://idp|alice"`.
    pub id: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Tenant id.
    pub tenant: Option<String>,
    /// `User`, `ApiKey`, `Service` or `Anonymous`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A human approval as audited: on the held request's record, on the approver's decision, and
/// on the announcement of a new pending approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditApproval {
    /// Who decided (entity uid), when someone did.
    pub approver: Option<String>,
    /// The approval's id.
    pub id: String,
    /// `requested`, `approved`, `denied`, `timeout`, `queue_full` or `unavailable`.
    pub outcome: &'static str,
    /// The approver's reason, when given.
    pub reason: Option<String>,
    /// The principal whose call was held (entity uid).
    pub requester: String,
}

/// An authorization decision as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditDecision {
    /// Cedar's verdict.
    pub allowed: bool,
    /// `enforce` or `shadow`.
    pub mode: &'static str,
    /// Ids of the deciding policies.
    pub policies: Vec<String>,
    /// The deciding set's name.
    pub policy_set: String,
    /// SHA-256 of the deciding set's files.
    pub policy_set_hash: String,
}

/// A guardrail finding as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditFinding {
    /// `block`, `flag`, `redact` or `stop`.
    pub action: &'static str,
    /// Matches at this location.
    pub count: u32,
    /// Where it fired.
    pub location: String,
    /// Rule id.
    pub rule: String,
}

/// Facts of a relayed stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamFacts {
    /// Whether the drain deadline ended the stream.
    pub ended_by_drain: bool,
    /// SSE events relayed.
    pub events: u64,
}

/// One tool decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    /// The Cedar action, e.g. `Action::"call_tool"` (empty for a call in a stream that no
    /// decision covered, e.g. with authorization off).
    pub action: String,
    /// Whether it was allowed (or only shadow-denied); a call no decision covered is allowed.
    pub allowed: bool,
    /// The call's id, for tool calls seen in an AG-UI stream (`toolCallId`).
    pub id: Option<String>,
    /// The tool, e.g. `Tool::"search"`.
    pub tool: String,
}

/// An MCP tool that was not as pinned (tool-definition integrity), as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityFinding {
    /// `blocked` or `flagged`.
    pub action: &'static str,
    /// `changed`, `new`, `poisoned` or `collision`.
    pub kind: &'static str,
    /// The rule that found poisoning (`injection.*`, `integrity.hidden_characters`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The tool's name (at most 128 characters).
    pub tool: String,
}

/// What the pipeline knows of a finished request, for its record.
pub struct RecordFacts<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// The W3C trace id.
    pub trace_id: &'a str,
    /// Who called, when identified.
    pub principal: Option<&'a Principal>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The hash of the configuration the request ran under.
    pub config_hash: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// The matched route's name.
    pub route: Option<&'a str>,
    /// Status written to the client (`0` when none).
    pub status: u16,
    /// The upstream's status, when it answered.
    pub upstream_status: Option<u16>,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// When the request arrived.
    pub started: std::time::Instant,
    /// The relayed stream, when the response was one.
    pub stream: Option<StreamFacts>,
    /// Why the request failed, when it did.
    pub error: Option<&'a ProxyError>,
    /// The outcome reason (as in `palisade_requests_total{reason}`).
    pub reason: &'static str,
}

impl AuditRecord {
    /// The record of a request; stages then fill their parts (their `audit` hooks).
    pub fn new(f: RecordFacts<'_>) -> Self {
        Self {
            seq: 0,
            prev_hash: String::new(),
            hash: None,
            timestamp: crate::text::now_rfc3339(),
            request_id: f.request_id.to_string(),
            trace_id: f.trace_id.to_string(),
            principal: f.principal.map(|p| AuditPrincipal {
                id: format!("{}::{:?}", p.kind.entity_type(), p.id),
                kind: p.kind.entity_type(),
                roles: p.roles.clone(),
                tenant: p.tenant.clone(),
                auth_method: p.auth_method.as_str(),
            }),
            client_ip: f.client_ip.map(crate::text::ip_text),
            config_hash: f.config_hash.to_string(),
            method: f.method.to_string(),
            path: f.path.to_string(),
            route: f.route.map(str::to_string),
            action: None,
            approval: None,
            resource: None,
            decision: None,
            rate_limit: rate_limit_outcome(f.error, f.route.is_some() && f.principal.is_some()),
            guardrails: Vec::new(),
            status: f.status,
            upstream_status: f.upstream_status,
            bytes_in: f.bytes_in,
            bytes_out: f.bytes_out,
            duration_ms: (f.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            stream: f.stream,
            tool_calls: Vec::new(),
            tool_integrity: Vec::new(),
            error_code: f.error.map(|e| e.kind().code),
            reason: f.reason,
        }
    }

    /// The request-level decision (authorization's part): the Cedar action and resource, the
    /// decision, and whether it refused the request.
    pub fn set_decision(&mut self, action: &str, resource: &str, decision: AuditDecision) {
        // Refused by the request-level policy: the limit stage never ran.
        if self.error_code == Some("FORBIDDEN") && !decision.allowed {
            self.rate_limit = "not_reached";
        }
        self.action = Some(action.to_string());
        self.resource = Some(resource.to_string());
        self.decision = Some(decision);
    }

    /// A tool decision of the request (authorization's part), without a call id yet.
    pub fn add_tool_decision(&mut self, call: ToolCall) {
        if !self.tool_calls.contains(&call) {
            self.tool_calls.push(call);
        }
    }

    /// The tool calls seen in the relayed stream (id, name): a call seen takes its tool's
    /// decision; decisions without a seen call (request tools, MCP `tools/call`) stay listed
    /// without an id.
    pub fn note_tool_calls(&mut self, seen: &[(String, String)]) {
        if seen.is_empty() {
            return;
        }
        let decisions = std::mem::take(&mut self.tool_calls);
        let mut covered = vec![false; decisions.len()];
        for (id, name) in seen {
            let tool = format!("Tool::{name:?}");
            let decided = decisions.iter().position(|d| d.tool == tool);
            if let Some(i) = decided {
                covered[i] = true;
            }
            let d = decided.map(|i| &decisions[i]);
            self.tool_calls.push(ToolCall {
                action: d.map_or_else(String::new, |d| d.action.clone()),
                allowed: d.is_none_or(|d| d.allowed),
                id: Some(id.clone()),
                tool,
            });
        }
        for (d, _) in decisions.into_iter().zip(covered).filter(|(_, c)| !c) {
            if !self.tool_calls.contains(&d) {
                self.tool_calls.push(d);
            }
        }
    }
}

/// Where the request stood with the rate-limit stage (`reached`: routed and identified).
fn rate_limit_outcome(error: Option<&ProxyError>, reached: bool) -> &'static str {
    match error {
        Some(ProxyError::RateLimited { .. }) => "limited",
        Some(ProxyError::RateLimitBackendDown) => "backend_unavailable",
        // Refused before the limit stage ran (routing, identity, audit).
        Some(
            ProxyError::NotFound
            | ProxyError::MethodNotAllowed { .. }
            | ProxyError::Unauthenticated
            | ProxyError::TokenExpired
            | ProxyError::TokenRevoked
            | ProxyError::AuditUnavailable,
        ) => "not_reached",
        _ if !reached => "not_reached",
        _ => "passed",
    }
}

impl AuditRecord {
    /// Fills the chain fields from `head`, advances it, and returns the line to write: the
    /// canonical JSON of the sealed record (see [`super::chain`]).
    pub fn seal(&mut self, head: &mut super::chain::ChainHead) -> String {
        let mut line = Vec::with_capacity(1024);
        self.seal_into(head, &mut line);
        // serde_json's output and ASCII: UTF-8.
        String::from_utf8(line).unwrap_or_default()
    }

    /// [`AuditRecord::seal`], appending the line (without a newline) to `out` instead: the
    /// writer seals a batch into one buffer, serializing each record once, with no line of its
    /// own.
    pub fn seal_into(&mut self, head: &mut super::chain::ChainHead, out: &mut Vec<u8>) {
        self.seq = head.seq + 1;
        self.prev_hash = std::mem::take(&mut head.hash);
        self.hash = None;
        let start = out.len();
        // Declaration order is canonical order: no re-sorting needed.
        let method_at = super::line::write(self, out);
        let hash = super::chain::hash_hex(&self.prev_hash, &out[start..]);
        // `hash` goes between `guardrails` and `method` in that order: spliced in rather than
        // serializing the record twice.
        let mut field = [b'"'; 74];
        field[..9].copy_from_slice(b",\"hash\":\"");
        field[9..73].copy_from_slice(&hash);
        out.splice(method_at..method_at, field);
        let text: String = hash.iter().copied().map(char::from).collect();
        head.seq = self.seq;
        head.hash = text.clone();
        self.hash = Some(text);
        debug_assert_eq!(
            out[start..],
            serde_json::to_vec(&*self).unwrap_or_default(),
            "the spliced line is the record's serialization"
        );
    }
}
