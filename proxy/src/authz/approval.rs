//! Which permits need a human approval: a policy annotated `@approval("required")` permits
//! only once an approver agreed (`docs/approvals.md`). The annotation is read and validated
//! when the set loads — any other value, or the annotation on a `forbid` (a forbid never waits
//! for anyone), refuses the whole set — and [`PolicySet::requires_approval`] answers for one
//! decision: an allow any of whose determining permits carries it. A `forbid` always wins: a
//! denied request is refused before anyone is asked.

use std::collections::HashSet;

use cedar_policy::{Effect, PolicyId};

use super::{Decision, PolicySet};

/// The annotation's key.
pub const ANNOTATION: &str = "approval";

/// The one accepted value of the annotation.
pub const REQUIRED: &str = "required";

/// The ids of the policies of `set` that require an approval, and the misplaced or misspelled
/// annotations (policy id, message), which refuse the set (the loader names file and line).
pub(super) fn approval_policies(
    set: &cedar_policy::PolicySet,
) -> (HashSet<String>, Vec<(PolicyId, String)>) {
    let mut ids = HashSet::new();
    let mut wrong = Vec::new();
    for policy in set.policies() {
        let Some(value) = policy.annotation(ANNOTATION) else {
            continue;
        };
        let mut fail = |message: String| {
            wrong.push((
                policy.id().clone(),
                format!("policy `{}`: {message}", policy.id()),
            ));
        };
        if value != REQUIRED {
            fail(format!(
                "@{ANNOTATION}(\"{value}\") is not understood: the only value is \"{REQUIRED}\""
            ));
        } else if policy.effect() == Effect::Forbid {
            fail(format!(
                "@{ANNOTATION} applies to permits only: a forbid refuses without asking anyone"
            ));
        } else {
            ids.insert(policy.id().to_string());
        }
    }
    (ids, wrong)
}

impl PolicySet {
    /// Whether `decision` (made by this set) permits only after an approval: it is an allow
    /// and one of its determining permits is annotated `@approval("required")`.
    pub fn requires_approval(&self, decision: &Decision) -> bool {
        decision.allowed
            && decision
                .policies
                .iter()
                .any(|id| self.approval_ids.contains(id))
    }

    /// The ids of the policies annotated `@approval("required")`, sorted.
    pub fn approval_policies(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.approval_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use crate::authz::tests::{facts, seed_set};
    use crate::authz::{AuthzRequest, Mode, PolicyFiles, PolicySet, Resource, ResourceKind};

    fn files(policies: &str) -> PolicyFiles {
        let mut files = PolicyFiles::builtin();
        files.policies = vec![("p.cedar".into(), policies.to_string())];
        files
    }

    #[test]
    fn a_misspelled_or_misplaced_annotation_refuses_the_set() {
        let bad = files(
            "@id(\"a\") @approval(\"yes\") permit (principal, action, resource);\n\
             @id(\"b\") @approval(\"required\") forbid (principal, action, resource);\n",
        );
        let errors = PolicySet::from_files("t", &bad, Mode::Enforce)
            .err()
            .unwrap();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.contains("`a`") && e.contains("\"yes\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("`b`") && e.contains("permits only")),
            "{text:?}"
        );
    }

    #[test]
    fn the_seed_policies_hold_high_risk_tool_calls_of_operators() {
        let set = seed_set();
        assert_eq!(set.approval_policies(), ["operator-high-risk-tools"]);
        let mut op = crate::authz::tests::user(&["agent_operator"]);
        op.mfa = true;
        op.scopes = vec!["tools:exec".into()];
        let f = facts("POST");
        let decide = |p: &crate::principal::Principal, tool: &str| {
            let resource = Resource::new(ResourceKind::Tool, tool);
            set.decide(&AuthzRequest {
                principal: Some(p),
                action: "call_tool",
                resource: &resource,
                facts: &f,
                arguments: None,
            })
        };
        let shell = decide(&op, "run_shell");
        assert!(shell.allowed && set.requires_approval(&shell), "{shell:?}");
        let search = decide(&op, "search_docs");
        assert!(search.allowed && !set.requires_approval(&search));
        // A forbid wins: without MFA the call is denied, never held.
        op.mfa = false;
        let denied = decide(&op, "run_shell");
        assert!(!denied.allowed && !set.requires_approval(&denied));
    }
}
