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
    let rec: Value = serde_json::from_str(line).map_err(|e| format!("not an audit record: {e}"))?;
    if !rec.is_object() || rec.get("request_id").is_none() {
        return Err("not an audit record (no request_id)".into());
    }
    let text = |key: &str| rec.get(key).and_then(Value::as_str).map(str::to_string);
    let (action, resource, allowed, policies, hash) = match tool_call {
        None => {
            let (Some(action), Some(resource)) = (text("action"), text("resource")) else {
                return Err(
                    "the record has no authorization decision (authorization off, or \
                            the request was refused before it)"
                        .into(),
                );
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
                decision
                    .and_then(|d| d.get("allowed"))
                    .and_then(Value::as_bool),
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
        let took = rec
            .get("duration_ms")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
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
                    auth_method: p
                        .get("auth_method")
                        .and_then(Value::as_str)
                        .map(String::from),
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
        let _ = writeln!(
            t,
            "audit record: seq {}, request {}",
            self.seq, self.request_id
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditDecision, ToolCall};
    use crate::audit::{AuditRecord, RecordFacts};
    use crate::authz::explain::explain;
    use crate::authz::tests::seed_set;
    use crate::authz::{AuthzRequest, RequestFacts, Resource};
    use crate::principal::{AuthMethod, Principal, PrincipalKind};

    /// A record as the proxy writes it for a viewer denied `run_agent`, with a denied tool
    /// call: built by the audit module from the decision the seed set makes.
    fn record_line() -> String {
        let set = seed_set();
        let mut p = Principal::new(PrincipalKind::User, "https://idp.test|vic", AuthMethod::Jwt);
        p.roles = vec!["viewer".into()];
        p.tenant = Some("acme".into());
        let resource = Resource::parse("Agent::\"assistant\"").unwrap();
        let facts = RequestFacts {
            method: "POST".into(),
            path: "/agent".into(),
            ip: "10.0.0.7".parse().unwrap(),
            forwarded: false,
            time: time::OffsetDateTime::now_utc(),
            tls: false,
            request_bytes: 120,
            route: "agent".into(),
            protocol: "agui",
        };
        let d = set.decide(&AuthzRequest {
            principal: Some(&p),
            action: "run_agent",
            resource: &resource,
            facts: &facts,
            arguments: None,
        });
        assert!(!d.allowed);
        let mut record = AuditRecord::new(RecordFacts {
            request_id: "req-1",
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            principal: Some(&p),
            client_ip: Some(facts.ip),
            config_hash: "cfg",
            method: "POST",
            path: "/agent",
            route: Some("agent"),
            status: 403,
            upstream_status: None,
            bytes_in: 120,
            bytes_out: 0,
            started: std::time::Instant::now(),
            stream: None,
            error: None,
            reason: "forbidden",
        });
        record.set_decision(
            &d.action,
            &d.resource,
            AuditDecision {
                allowed: d.allowed,
                mode: d.mode.as_str(),
                policies: d.policies.clone(),
                policy_set: d.policy_set.to_string(),
                policy_set_hash: d.policy_set_hash.to_string(),
            },
        );
        record.add_tool_decision(ToolCall {
            action: "Action::\"use_tool\"".into(),
            allowed: false,
            id: None,
            tool: "Tool::\"run_shell\"".into(),
        });
        serde_json::to_string(&record).unwrap()
    }

    #[test]
    fn a_recorded_request_is_explained_again_with_the_same_decision() {
        let set = seed_set();
        let (request, source) = from_audit(&record_line(), None).unwrap();
        assert_eq!(request.action, "run_agent");
        assert_eq!(request.resource, "Agent::\"assistant\"");
        let p = request.principal.as_ref().unwrap();
        assert_eq!(
            (p.kind.as_str(), p.id.as_str()),
            ("User", "https://idp.test|vic")
        );
        assert_eq!(p.roles, ["viewer"]);
        assert_eq!(p.auth_method.as_deref(), Some("jwt"));
        assert_eq!(request.request.ip.to_string(), "10.0.0.7");
        assert_eq!(request.request.protocol, "agui");
        let mut e = explain(&set, &request).unwrap();
        assert!(!e.decision.allowed);
        e.set_audit(Some(source));
        assert!(
            e.text.contains("recorded decision: DENY (same as now)"),
            "{}",
            e.text
        );
        assert!(e.text.contains("(the same set)"), "{}", e.text);
        assert!(
            e.text.contains("principal.mfa (assumed false)"),
            "{}",
            e.text
        );
        let json = e.json();
        assert_eq!(json["audit"]["request_id"], "req-1");
        assert_eq!(json["decision"]["allowed"], false);
        assert!(json["context"]["ip"].is_object() || json["context"]["ip"].is_string());
        assert!(json["entities"].as_array().is_some_and(|a| !a.is_empty()));
    }

    #[test]
    fn a_recorded_tool_call_is_explained_with_its_deciding_forbid() {
        let set = seed_set();
        let (request, source) = from_audit(&record_line(), Some(0)).unwrap();
        assert_eq!(request.action, "use_tool");
        assert_eq!(request.resource, "Tool::\"run_shell\"");
        assert_eq!(source.allowed, Some(false));
        let e = explain(&set, &request).unwrap();
        assert!(!e.decision.allowed);
        assert!(
            e.decision
                .policies
                .contains(&"high-risk-needs-mfa".to_string()),
            "{:?}",
            e.decision.policies
        );
        assert!(from_audit(&record_line(), Some(1))
            .unwrap_err()
            .contains("1 tool call"));
    }

    #[test]
    fn lines_that_are_not_decided_records_are_errors() {
        for (line, expect) in [
            ("not json", "not an audit record"),
            ("{\"seq\": 1}", "no request_id"),
            (
                "{\"request_id\": \"r\", \"action\": null}",
                "no authorization decision",
            ),
            (
                "{\"request_id\": \"r\", \"action\": \"nope\", \"resource\": \"Agent::\\\"a\\\"\"}",
                "is not an entity",
            ),
        ] {
            let err = from_audit(line, None).unwrap_err();
            assert!(err.contains(expect), "{line}: {err}");
        }
    }
}
