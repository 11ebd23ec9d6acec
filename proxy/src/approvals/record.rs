//! [`Approval`]: one held call waiting for (or decided by) an approver, as every store keeps it
//! and the admin API lists it; and [`call_key`], the digest that finds the approval of a call
//! again (a client retrying the same call after a restart).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for an approver.
    Pending,
    /// An approver agreed: the call may go (once).
    Approved,
    /// An approver refused.
    Denied,
    /// Nobody decided in time (default deny).
    Timeout,
}

impl Status {
    /// `pending` / `approved` / `denied` / `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Timeout => "timeout",
        }
    }
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Its id (random, UUID v4).
    pub id: String,
    /// [`call_key`] of the held call.
    pub key: String,
    /// The requesting principal's entity uid, e.g. `User::"https://idp|alice"`.
    pub principal: String,
    /// A short digest of `principal` (the per-principal cap's key).
    pub principal_tag: String,
    /// The Cedar action of the call (`call_tool`, `a2a_send`, `a2a_stream`).
    pub action: String,
    /// The Cedar resource, e.g. `Tool::"run_shell"`.
    pub resource: String,
    /// SHA-256 (hex) of the call's canonical arguments: what was approved, without showing it.
    pub arguments_digest: String,
    /// `X-Request-Id` of the request that opened it.
    pub request_id: String,
    /// The route it came through.
    pub route: String,
    /// When it was opened (Unix milliseconds).
    pub created_at: u64,
    /// Pending: when it times out. Decided: until when the outcome can still be collected.
    pub expires_at: u64,
    /// Where it stands.
    pub status: Status,
    /// Who decided (entity uid), once decided by someone.
    pub approver: Option<String>,
    /// The approver's reason, when given.
    pub reason: Option<String>,
    /// When it was decided or timed out (Unix milliseconds).
    pub decided_at: Option<u64>,
    /// Whether a request collected the outcome (a grant admits one call).
    pub consumed: bool,
}

impl Approval {
    /// Whether it still waits for a decision at `now`.
    pub fn is_pending(&self, now: u64) -> bool {
        self.status == Status::Pending && now < self.expires_at
    }

    /// The resource's id (`run_shell` of `Tool::"run_shell"`), for display.
    pub fn resource_name(&self) -> String {
        crate::authz::Resource::parse(&self.resource)
            .map(|r| r.id)
            .unwrap_or_else(|_| self.resource.clone())
    }
}

/// SHA-256 (hex) of `value` in canonical form (object keys sorted, no whitespace).
pub fn digest(value: &Value) -> String {
    let mut text = String::new();
    canonical(value, &mut text);
    hex(&Sha256::digest(text.as_bytes()))
}

/// The key of a call: a digest of who asks for what, on which route, with which arguments. The
/// same call retried finds the same approval; the same call on another route (another MCP
/// server behind another route: `Tool::"name"` does not say which) needs its own.
pub fn call_key(
    principal: &str,
    action: &str,
    resource: &str,
    route: &str,
    arguments_digest: &str,
) -> String {
    digest(&serde_json::json!([
        principal,
        action,
        resource,
        route,
        arguments_digest
    ]))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_ignores_key_order_and_whitespace() {
        let a = json!({"b": 1, "a": {"y": [1, {"q": 2, "p": 1}], "x": "s"}});
        let b: Value =
            serde_json::from_str(r#"{ "a": {"x":"s","y":[1,{"p":1,"q":2}]}, "b":1 }"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"b": 2})));
        assert_ne!(
            call_key("User::\"a\"", "call_tool", "Tool::\"x\"", "mcp", "d"),
            call_key("User::\"b\"", "call_tool", "Tool::\"x\"", "mcp", "d")
        );
        // The same call on another route (another server's tool of the same name) is another
        // approval: a grant on one route is never collected on the other.
        assert_ne!(
            call_key("User::\"a\"", "call_tool", "Tool::\"x\"", "staging", "d"),
            call_key("User::\"a\"", "call_tool", "Tool::\"x\"", "prod", "d")
        );
    }
}
