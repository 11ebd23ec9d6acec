//! [`Finding`]: one guardrail rule that fired, as it travels to metrics and the audit record.

use serde::Serialize;

/// What a guardrail did about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingAction {
    /// The request was refused (400 `GUARDRAIL_VIOLATION`).
    Block,
    /// Recorded only.
    Flag,
    /// The matched text was replaced before it was forwarded or relayed.
    Redact,
    /// The stream was ended with `RUN_ERROR` `GUARDRAIL_VIOLATION`.
    Stop,
}

impl FindingAction {
    /// `block` / `flag` / `redact` / `stop` (the `action` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Flag => "flag",
            Self::Redact => "redact",
            Self::Stop => "stop",
        }
    }
}

/// One rule that fired. Never holds the matched content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule id, e.g. `injection.ignore_previous` or `pii.email`.
    pub rule: String,
    /// Where it fired, e.g. `request.messages[2].content` or `response.TOOL_CALL_ARGS`.
    pub location: String,
    /// What was done.
    pub action: FindingAction,
    /// How many matches of the rule at this location.
    pub count: u32,
}

/// The findings of one request, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    /// Records a finding, merging it with an earlier one of the same rule, location and action.
    pub fn record(&mut self, finding: Finding) {
        match self.0.iter_mut().find(|f| {
            f.rule == finding.rule && f.location == finding.location && f.action == finding.action
        }) {
            Some(same) => same.count = same.count.saturating_add(finding.count),
            None => self.0.push(finding),
        }
    }

    /// The findings so far.
    pub fn as_slice(&self) -> &[Finding] {
        &self.0
    }

    /// Whether nothing fired.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
