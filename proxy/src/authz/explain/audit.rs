//! `policy explain --from-audit FILE:LINE`: an explain request rebuilt from an audit record
//! (`docs/operations.md`, "Audit trail").
//!
//! A record carries the principal's type, id, roles, tenant and authentication method, the
//! action and resource of the request-level decision (and of each tool call), the method,
//! path, route, the TCP peer's address, when the request ended and how long it took. It does
//! not carry MFA, scopes, groups, e-mail, whether the request came through an unlisted proxy,
//! TLS, the declared body size or a tool call's arguments: those are taken as absent, and
//! listed in [`AuditSource::not_recovered`].

use std::fmt::Write;
use std::str::FromStr;

use cedar_policy::EntityUid;
use serde::Serialize;
use serde_json::Value;

use super::{ExplainRequest, FactsSpec, PrincipalSpec};
use crate::authz::analysis::protocol_of;
use crate::authz::Decision;

/// What the audit record said, next to the explanation.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSource {
    /// The record's `request_id`.
    pub request_id: String,
    /// The record's `seq`.
    pub seq: u64,
    /// The decision the record holds: allowed.
    pub allowed: Option<bool>,
    /// The deciding policies the record holds (request-level decisions only).
    pub policies: Vec<String>,
    /// The policy set hash the record holds (request-level decisions only).
    pub policy_set_hash: Option<String>,
    /// Request fields the record does not carry, with the value assumed.
    pub not_recovered: Vec<String>,
}

/// Rebuilds the request of one audit record (a JSON line): its request-level decision, or
/// with `tool_call`, the decision on its tool call number `tool_call` (from 0).
pub fn from_audit(
    line: &str,
    tool_call: Option<usize>,
) -> Result<(ExplainRequest, AuditSource), String> {
    let rec: Value =
        serde_json::from_str(line).map_err(|e| format!("not an audit record: {e}"))?;
    if !rec.is_object() || rec.get("request_id").is_none() {
        return Err("not an audit record (no request_id)".into());
    }
    let text = |key: &str| rec.get(key).and_then(Value::as_str).map(str::to_string);
    let (action, resource, allowed, policies, hash) = match tool_call {
        None => {
            let (Some(action), Some(resource)) = (text("action"), text("resource")) else {
                return Err("the record has no authorization decision (authorization off, or \
                            the request was refused before it)"
                    .into());
            };
            let decision = rec.get("decision");
            let policies = decision
                .and_then(|d| d.get("policies"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (
                action,
                resource,
                decision.and_then(|d| d.get("allowed")).and_then(Value::as_bool),
                policies,
                decision
                    .and_then(|d| d.get("policy_set_hash"))
                    .and_then(Value::as_str)
                    .map(String::from),
            )
        }
        Some(n) => {
            let calls = rec.get("tool_calls").and_then(Value::as_array);
            let call = calls.and_then(|c| c.get(n)).ok_or_else(|| {
                format!(
                    "the record has {} tool call(s); --tool-call counts from 0",
                    calls.map_or(0, Vec::len)
                )
            })?;
            let field = |k: &str| call.get(k).and_then(Value::as_str).unwrap_or_default();
            if field("action").is_empty() {
                return Err(format!(
                    "tool call {n} was not decided (no action: authorization did not cover it)"
                ));
            }
            (
                field("action").to_string(),
                field("tool").to_string(),
                call.get("allowed").and_then(Value::as_bool),
                Vec::new(),
                None,
            )
        }
    };
    let action_uid = EntityUid::from_str(&action)
        .map_err(|e| format!("action `{action}` is not an entity: {e}"))?;
    let action = action_uid.id().unescaped().to_string();

    let mut not_recovered = vec![
        "principal.mfa (assumed false)".to_string(),
        "principal.scopes, groups, email (assumed none)".to_string(),
        "request.forwarded (assumed false)".to_string(),
        "request.tls (assumed false)".to_string(),
        "request.request_bytes (taken from bytes_in, the body bytes received)".to_string(),
        "request.ip: the TCP peer (behind edge.trusted_proxies the decision saw the client \
         they named)"
            .to_string(),
        "request.time: the record's end minus its duration".to_string(),
    ];
    if tool_call.is_some() {
        not_recovered.push("arguments (not recorded; assumed none)".into());
    }

    let mut facts = FactsSpec::default();
    facts.method = text("method").unwrap_or(facts.method);
    facts.path = text("path").unwrap_or(facts.path);
    facts.route = text("route").unwrap_or(facts.route);
    facts.protocol = protocol_of(&action).to_string();
    facts.request_bytes = rec.get("bytes_in").and_then(Value::as_u64).unwrap_or(0);
    if let Some(ip) = text("client_ip") {
        facts.ip = ip
            .parse()
            .map_err(|_| format!("client_ip `{ip}` is not an address"))?;
    }
    if let Some(end) = text("timestamp") {
        let end = time::OffsetDateTime::parse(&end, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("timestamp `{end}`: {e}"))?;
        let took = rec.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0);
        let start = end - time::Duration::seconds_f64((took / 1000.0).clamp(0.0, 86_400.0));
        facts.time = start
            .format(&time::format_description::well_known::Rfc3339)
            .ok();
    }

    let principal = match rec.get("principal").filter(|p| !p.is_null()) {
        None => {
            not_recovered.push("principal (none recorded: anonymous)".into());
            None
        }
        Some(p) => {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
            let uid = EntityUid::from_str(id)
                .map_err(|e| format!("principal.id `{id}` is not an entity: {e}"))?;
            let kind = uid.type_name().to_string();
            if kind == "Anonymous" {
                None
            } else {
                let strings = |k: &str| -> Vec<String> {
                    p.get(k)
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                Some(PrincipalSpec {
                    kind,
                    id: uid.id().unescaped().to_string(),
                    email: None,
                    tenant: p.get("tenant").and_then(Value::as_str).map(String::from),
                    roles: strings("roles"),
                    groups: Vec::new(),
                    scopes: Vec::new(),
                    mfa: false,
                    auth_method: p.get("auth_method").and_then(Value::as_str).map(String::from),
                })
            }
        }
    };

    let request = ExplainRequest {
        principal,
        action,
        resource,
        request: facts,
        arguments: None,
    };
    let source = AuditSource {
        request_id: text("request_id").unwrap_or_default(),
        seq: rec.get("seq").and_then(Value::as_u64).unwrap_or(0),
        allowed,
        policies,
        policy_set_hash: hash,
        not_recovered,
    };
    Ok((request, source))
}

impl AuditSource {
    /// The report's audit section: the recorded decision against the one just made, and what
    /// the record does not carry.
    pub fn text(&self, now: &Decision) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "audit record: seq {}, request {}", self.seq, self.request_id);
        if let Some(allowed) = self.allowed {
            let verdict = if allowed { "ALLOW" } else { "DENY" };
            let by = if self.policies.is_empty() {
                String::new()
            } else {
                format!(" by {}", self.policies.join(", "))
            };
            let agrees = if allowed == now.allowed {
                "same as now"
            } else {
                "DIFFERS from now"
            };
            let _ = writeln!(t, "  recorded decision: {verdict}{by} ({agrees})");
        }
        if let Some(hash) = &self.policy_set_hash {
            let same = if hash.as_str() == &*now.policy_set_hash {
                "the same set"
            } else {
                "a different set than these policies"
            };
            let _ = writeln!(t, "  recorded policy set: sha256 {hash} ({same})");
        }
        let _ = writeln!(t, "  not in the record:");
        for n in &self.not_recovered {
            let _ = writeln!(t, "    - {n}");
        }
        t
    }
}
