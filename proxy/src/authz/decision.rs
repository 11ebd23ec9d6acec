//! [`Decision`]: the outcome of one authorization check, as it travels in the request context
//! to metrics, logs and the audit record.

use std::sync::Arc;

use serde::Serialize;

/// Enforcement mode of the policy set that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A deny refuses the request.
    Enforce,
    /// Decided and recorded; never blocks.
    Shadow,
}

impl Mode {
    /// `enforce` / `shadow` (the `mode` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Shadow => "shadow",
        }
    }
}

/// One authorization decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Cedar's verdict: some permit applied and no forbid did.
    pub allowed: bool,
    /// Ids of the deciding policies: the satisfied permits of an allow, the satisfied forbids
    /// of a deny (empty for a deny because nothing permitted).
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (`"<id>: <message>"`); Cedar skips them.
    pub errors: Vec<String>,
    /// The deciding set's mode.
    pub mode: Mode,
    /// The deciding set's name.
    pub policy_set: Arc<str>,
    /// SHA-256 of the deciding set's files.
    pub policy_set_hash: Arc<str>,
    /// The Cedar principal, e.g. `User::"https://idp|alice"`.
    pub principal: String,
    /// The Cedar action, e.g. `Action::"run_agent"`.
    pub action: String,
    /// The Cedar resource, e.g. `Agent::"assistant"`.
    pub resource: String,
}

impl Decision {
    /// Whether this decision refuses the request (a deny from an enforcing set).
    pub fn blocks(&self) -> bool {
        !self.allowed && self.mode == Mode::Enforce
    }

    /// `allow` / `deny` (the `decision` metric label).
    pub fn verdict(&self) -> &'static str {
        if self.allowed {
            "allow"
        } else {
            "deny"
        }
    }
}
