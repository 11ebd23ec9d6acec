//! `palisade policy explain`: one decision, with the deciding policies (and their
//! annotations), the entities and the context it was made with.
//!
//! The request file names the principal the way authentication would produce it, so the
//! explanation goes through the same entity construction as the proxy:
//!
//! ```json
//! {
//!   "principal": {"type": "User", "id": "https://idp|alice", "roles": ["user"],
//!                 "tenant": "acme", "mfa": false, "scopes": []},
//!   "action": "call_tool",
//!   "resource": "Tool::\"search_docs\"",
//!   "request": {"method": "POST", "path": "/mcp", "ip": "127.0.0.1",
//!               "time": "2026-01-06T10:00:00Z", "route": "mcp", "protocol": "mcp"},
//!   "arguments": {"query": "pricing"}
//! }
//! ```
//!
//! `principal` may be omitted (anonymous); every `request` field has a default. The action
//! must apply to the resource's type in the schema (an error names the types it takes).
//! [`from_audit`] makes a request from an audit record instead.

mod audit;

use std::fmt::Write;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use audit::{from_audit, AuditSource};

use super::{AuthzRequest, Decision, PolicySet, RequestFacts, Resource};
use crate::authn::{AuthMethod, Principal, PrincipalKind};

/// An explain request file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The principal; absent for anonymous.
    #[serde(default)]
    pub principal: Option<PrincipalSpec>,
    /// Action id.
    pub action: String,
    /// Resource as Cedar text.
    pub resource: String,
    /// Request facts.
    #[serde(default)]
    pub request: FactsSpec,
    /// Tool call arguments.
    #[serde(default)]
    pub arguments: Option<Value>,
}

/// A principal as authentication would produce it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    /// `User`, `ApiKey`, `Service` or `Anonymous`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Entity id.
    pub id: String,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// MFA used.
    #[serde(default)]
    pub mfa: bool,
    /// `jwt`, `api_key`, `mtls`, `trusted_header` or `anonymous`; default from the type
    /// (`User`: jwt, `ApiKey`: api_key, `Service`: mtls).
    #[serde(default)]
    pub auth_method: Option<String>,
}

/// Request facts with defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FactsSpec {
    /// Default `POST`.
    pub method: String,
    /// Default `/`.
    pub path: String,
    /// Default `127.0.0.1`.
    pub ip: IpAddr,
    /// Default false.
    pub forwarded: bool,
    /// RFC 3339; default now.
    pub time: Option<String>,
    /// Default false.
    pub tls: bool,
    /// Default 0.
    pub request_bytes: u64,
    /// Default `explain`.
    pub route: String,
    /// Default `http`.
    pub protocol: String,
}

impl Default for FactsSpec {
    fn default() -> Self {
        Self {
            method: "POST".into(),
            path: "/".into(),
            ip: IpAddr::from([127, 0, 0, 1]),
            forwarded: false,
            time: None,
            tls: false,
            request_bytes: 0,
            route: "explain".into(),
            protocol: "http".into(),
        }
    }
}

impl PrincipalSpec {
    /// The [`Principal`] authentication would have produced.
    pub fn to_principal(&self) -> Result<Principal, String> {
        let (kind, method) = match self.kind.as_str() {
            "User" => (PrincipalKind::User, AuthMethod::Jwt),
            "ApiKey" => (PrincipalKind::ApiKey, AuthMethod::ApiKey),
            "Service" => (PrincipalKind::Service, AuthMethod::Mtls),
            "Anonymous" => (PrincipalKind::Anonymous, AuthMethod::Anonymous),
            other => {
                return Err(format!(
                    "principal.type `{other}`: expected User, ApiKey, Service or Anonymous"
                ))
            }
        };
        let method = match self.auth_method.as_deref() {
            None => method,
            Some("jwt") => AuthMethod::Jwt,
            Some("api_key") => AuthMethod::ApiKey,
            Some("mtls") => AuthMethod::Mtls,
            Some("trusted_header") => AuthMethod::TrustedHeader,
            Some("anonymous") => AuthMethod::Anonymous,
            Some("session") => AuthMethod::Session,
            Some(other) => {
                return Err(format!(
                    "principal.auth_method `{other}`: expected jwt, api_key, mtls, trusted_header, \
                     session or anonymous"
                ))
            }
        };
        let mut p = Principal::new(kind, self.id.clone(), method);
        p.email = self.email.clone();
        p.tenant = self.tenant.clone();
        p.roles = self.roles.clone();
        p.groups = self.groups.clone();
        p.scopes = self.scopes.clone();
        p.mfa = self.mfa;
        Ok(p.normalize())
    }
}

/// An explained decision.
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// The deciding policies, where they are written and their annotations.
    pub policies: Vec<DecidingPolicy>,
    /// The context record, every key of the schema.
    pub context: Value,
    /// The entities, sorted by uid.
    pub entities: Value,
    /// The audit record the request came from, when it did.
    pub audit: Option<AuditSource>,
    /// Human-readable report.
    pub text: String,
}

/// A policy that decided.
#[derive(Debug, Clone, Serialize)]
pub struct DecidingPolicy {
    /// Its id.
    pub id: String,
    /// File it is written in.
    pub file: Option<String>,
    /// Line of the file.
    pub line: Option<usize>,
    /// Annotations other than `@id`.
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Explanation {
    /// Attaches the audit record the request was made from, and adds what it says (its
    /// decision, what it does not carry) to the report.
    pub fn set_audit(&mut self, audit: Option<AuditSource>) {
        if let Some(a) = &audit {
            self.text.push_str(&a.text(&self.decision));
        }
        self.audit = audit;
    }

    /// The explanation as JSON: `decision`, `policies`, `context`, `entities`, `audit`.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "decision": self.decision,
            "policies": self.policies,
            "context": self.context,
            "entities": self.entities,
            "audit": self.audit,
        })
    }
}

/// Decides `request` with `set` and explains it.
pub fn explain(set: &PolicySet, request: &ExplainRequest) -> Result<Explanation, String> {
    let principal = request
        .principal
        .as_ref()
        .map(PrincipalSpec::to_principal)
        .transpose()?;
    let resource = Resource::parse(&request.resource)?;
    // An action on a resource type the schema does not allow would only ever be denied by
    // default: say so instead (the proxy's own routes are checked the same way at load).
    set.check_target(&request.action, &resource)?;
    let f = &request.request;
    let time = match &f.time {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("request.time `{t}`: {e}"))?,
        None => time::OffsetDateTime::now_utc(),
    };
    let protocol = match f.protocol.as_str() {
        "http" => "http",
        "agui" => "agui",
        "mcp" => "mcp",
        "a2a" => "a2a",
        other => {
            return Err(format!(
                "request.protocol `{other}`: expected http, agui, mcp or a2a"
            ))
        }
    };
    let facts = RequestFacts {
        method: f.method.clone(),
        path: f.path.clone(),
        ip: f.ip,
        forwarded: f.forwarded,
        time,
        tls: f.tls,
        request_bytes: f.request_bytes,
        route: f.route.clone(),
        protocol,
    };
    let req = AuthzRequest {
        principal: principal.as_ref(),
        action: &request.action,
        resource: &resource,
        facts: &facts,
        arguments: request.arguments.as_ref(),
    };
    let built = set.build_complete(&req)?;
    let decision = set.evaluate(&built);
    let mut entities = built
        .entities()
        .to_json_value()
        .map_err(|e| e.to_string())?;
    if let Value::Array(list) = &mut entities {
        list.sort_by_key(|e| e["uid"].to_string());
        for e in list.iter_mut() {
            if let Some(Value::Array(parents)) = e.get_mut("parents") {
                parents.sort_by_key(|p| p.to_string());
            }
        }
    }
    let context = super::context::context_json(&req);
    let policies: Vec<DecidingPolicy> = decision
        .policies
        .iter()
        .map(|id| {
            let source = set.source(id);
            DecidingPolicy {
                id: id.clone(),
                file: source.map(|s| {
                    std::path::Path::new(&s.file)
                        .file_name()
                        .map_or_else(|| s.file.clone(), |n| n.to_string_lossy().into_owned())
                }),
                line: source.map(|s| s.line),
                annotations: set
                    .policies()
                    .policy(&cedar_policy::PolicyId::new(id))
                    .map(|p| {
                        p.annotations()
                            .filter(|(k, _)| *k != "id")
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();

    let mut t = String::new();
    let verdict = if decision.allowed { "ALLOW" } else { "DENY" };
    let _ = writeln!(t, "decision:   {verdict}");
    let _ = writeln!(
        t,
        "policy set: {} ({}, sha256 {})",
        decision.policy_set,
        decision.mode.as_str(),
        decision.policy_set_hash
    );
    let _ = writeln!(t, "principal:  {}", decision.principal);
    let _ = writeln!(t, "action:     {}", decision.action);
    let _ = writeln!(t, "resource:   {}", decision.resource);
    if decision.policies.is_empty() {
        let _ = writeln!(
            t,
            "deciding policies: none ({})",
            if decision.allowed {
                "?"
            } else {
                "no permit applies: denied by default"
            }
        );
    } else {
        let _ = writeln!(
            t,
            "deciding policies ({}):",
            if decision.allowed {
                "permits"
            } else {
                "forbids"
            }
        );
        for p in &policies {
            let at = match (&p.file, p.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                _ => String::new(),
            };
            let _ = writeln!(t, "  - {}  ({at})", p.id);
            for (k, v) in &p.annotations {
                let _ = writeln!(t, "      @{k}: {v}");
            }
        }
    }
    if decision.errors.is_empty() {
        let _ = writeln!(t, "errors:     none");
    } else {
        let _ = writeln!(t, "errors:");
        for e in &decision.errors {
            let _ = writeln!(t, "  - {e}");
        }
    }
    let _ = writeln!(t, "context:");
    let _ = writeln!(
        t,
        "{}",
        indent(&serde_json::to_string_pretty(&context).unwrap_or_default())
    );
    let _ = writeln!(t, "entities:");
    let _ = writeln!(
        t,
        "{}",
        indent(&serde_json::to_string_pretty(&entities).unwrap_or_default())
    );
    Ok(Explanation {
        decision,
        policies,
        context,
        entities,
        audit: None,
        text: t,
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_policies_annotations_entities_and_context() {
        let set = super::super::tests::seed_set();
        let request: ExplainRequest = serde_json::from_value(serde_json::json!({
            "principal": {"type": "User", "id": "https://idp.test|olga", "roles": ["agent_operator"],
                          "tenant": "acme", "email": "olga@acme.test", "scopes": ["tools:exec"]},
            "action": "call_tool",
            "resource": "Tool::\"run_shell\"",
            "request": {"method": "POST", "path": "/mcp", "ip": "10.0.0.7",
                        "time": "2026-01-06T10:00:00Z", "route": "mcp", "protocol": "mcp"},
            "arguments": {"command": "uptime", "timeout": 5}
        }))
        .unwrap();
        let e = explain(&set, &request).unwrap();
        assert!(!e.decision.allowed);
        assert_eq!(e.decision.policies, ["high-risk-needs-mfa"]);
        let text = e.text.replace(set.hash(), "<hash>");
        insta::assert_snapshot!("explain_run_shell_without_mfa", text);
        assert_eq!(e.policies[0].id, "high-risk-needs-mfa");
        assert_eq!(e.policies[0].file.as_deref(), Some("abac.cedar"));
    }

    #[test]
    fn an_action_on_a_resource_type_the_schema_does_not_allow_is_an_error() {
        let set = super::super::tests::seed_set();
        let request: ExplainRequest = serde_json::from_value(serde_json::json!({
            "principal": {"type": "User", "id": "https://idp.test|vic", "roles": ["viewer"]},
            "action": "run_agent",
            "resource": "Route::\"agent\""
        }))
        .unwrap();
        let err = explain(&set, &request).err().unwrap();
        assert_eq!(
            err,
            "action `run_agent` does not apply to `Route` resources (it takes: Agent)"
        );
        let unknown: ExplainRequest = serde_json::from_value(serde_json::json!({
            "action": "fly", "resource": "Route::\"agent\""
        }))
        .unwrap();
        assert_eq!(
            explain(&set, &unknown).err().unwrap(),
            "the schema has no action `fly`"
        );
    }
}
