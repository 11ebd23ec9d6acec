//! Step-up challenges: when the enforcing set denies an authenticated JWT caller but would
//! permit the very same request with more OAuth scopes or after multi-factor authentication,
//! the refusal says what to get — RFC 6750 `insufficient_scope` (403) or RFC 9470
//! `insufficient_user_authentication` (401) — instead of a bare `FORBIDDEN`
//! (`docs/policies.md`, "Step-up challenges").
//!
//! Only the deny path pays for it, and boundedly: at most [`MAX_CANDIDATES`] candidate scopes,
//! so at most `3 + MAX_CANDIDATES` extra Cedar evaluations per refused request, whatever the
//! request or the token holds.

use std::collections::BTreeSet;

use super::request::ResourceKind;
use super::{AuthzRequest, PolicySet};
use crate::principal::{AuthMethod, Principal};

/// Most candidate scopes tried: with the MFA probe, the all-candidates probe and its MFA
/// variant, a refusal costs at most `3 + MAX_CANDIDATES` (19) extra evaluations.
pub const MAX_CANDIDATES: usize = 16;

/// What the caller must obtain for the request to be permitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// More OAuth scopes (a minimal set: none of them can be left out).
    Scope(Vec<String>),
    /// Multi-factor authentication; `scopes` are the scopes also missing (empty when MFA
    /// alone suffices). MFA is asked first when both are needed: the client re-authenticates
    /// anyway and can ask for the scopes in the same authorization request.
    Mfa(Vec<String>),
}

/// The challenge for a request `set` denied, when one exists. Only JWT callers are
/// challenged (API keys, certificates and trusted headers cannot step up through OAuth). A
/// `forbid` that applies whatever the scopes and MFA keeps every probe denied: no challenge.
pub fn challenge(set: &PolicySet, req: &AuthzRequest<'_>) -> Option<Challenge> {
    let p = req.principal.filter(|p| p.auth_method == AuthMethod::Jwt)?;
    let permits = |extra: &[String], mfa: bool| {
        let mut q: Principal = p.clone();
        q.scopes.extend(extra.iter().cloned());
        q.mfa = mfa;
        let q = q.normalize();
        set.decide(&AuthzRequest {
            principal: Some(&q),
            ..*req
        })
        .allowed
    };
    if !p.mfa && permits(&[], true) {
        return Some(Challenge::Mfa(Vec::new()));
    }
    let mut names: BTreeSet<&str> = set.scope_names().iter().map(String::as_str).collect();
    if req.resource.kind == ResourceKind::Tool {
        if let Some(tool) = set.catalog().tools.get(&req.resource.id) {
            names.extend(tool.required_credentials.iter().map(String::as_str));
        }
    }
    let candidates: Vec<String> = names
        .into_iter()
        .filter(|s| is_scope_token(s) && !p.scopes.iter().any(|h| h == s))
        .take(MAX_CANDIDATES)
        .map(str::to_string)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    if permits(&candidates, p.mfa) {
        return Some(Challenge::Scope(smallest(&candidates, |s| {
            permits(s, p.mfa)
        })));
    }
    if !p.mfa && permits(&candidates, true) {
        return Some(Challenge::Mfa(smallest(&candidates, |s| permits(s, true))));
    }
    None
}

/// A minimal subset of `candidates` that still `permits` (which it must for all of them):
/// each candidate in turn is dropped when the rest still permit. Exactly `candidates.len()`
/// calls of `permits`.
pub fn smallest(candidates: &[String], mut permits: impl FnMut(&[String]) -> bool) -> Vec<String> {
    let mut kept = candidates.to_vec();
    let mut i = 0;
    while i < kept.len() {
        let mut without = kept.clone();
        without.remove(i);
        if permits(&without) {
            kept = without;
        } else {
            i += 1;
        }
    }
    kept
}

/// Whether `s` is an RFC 6749 scope token (`%x21 / %x23-5B / %x5D-7E`, non-empty): a policy
/// literal with a space, quote or backslash can never be granted and is not offered.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::tests::{facts, seed_set, user};
    use crate::authz::{Resource, ResourceKind};

    fn challenge_for(p: &Principal, tool: &str) -> Option<Challenge> {
        let set = seed_set();
        let f = facts("POST");
        let resource = Resource::new(ResourceKind::Tool, tool);
        let req = AuthzRequest {
            principal: Some(p),
            action: "call_tool",
            resource: &resource,
            facts: &f,
            arguments: None,
        };
        assert!(!set.decide(&req).allowed, "{tool} must be denied first");
        challenge(&set, &req)
    }

    #[test]
    fn the_seed_policies_ask_for_mfa_and_the_tools_scope() {
        // run_shell: high risk (MFA) and `required_credentials: [tools:exec]`.
        let mut op = user(&["agent_operator"]);
        assert_eq!(
            challenge_for(&op, "run_shell"),
            Some(Challenge::Mfa(vec!["tools:exec".into()])),
            "both missing: MFA first, naming the scope too"
        );
        op.mfa = true;
        assert_eq!(
            challenge_for(&op, "run_shell"),
            Some(Challenge::Scope(vec!["tools:exec".into()]))
        );
        op.mfa = false;
        op.scopes = vec!["tools:exec".into()];
        assert_eq!(
            challenge_for(&op, "run_shell"),
            Some(Challenge::Mfa(Vec::new()))
        );
        // No permit for a `user` on a high-risk tool, whatever the scopes or MFA.
        assert_eq!(challenge_for(&user(&["user"]), "write_file"), None);
        // Uncatalogued tools are for admins only: scopes cannot help.
        assert_eq!(challenge_for(&op, "not_in_catalog"), None);
    }

    #[test]
    fn only_jwt_callers_are_challenged() {
        let mut key = user(&["agent_operator"]);
        key.auth_method = AuthMethod::ApiKey;
        assert_eq!(challenge_for(&key, "run_shell"), None);
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn smallest_drops_every_scope_the_permit_does_not_need() {
        let all = strings(&["a", "b", "c", "d"]);
        let mut calls = 0;
        let needs_b_and_d = |s: &[String]| {
            calls += 1;
            s.iter().any(|x| x == "b") && s.iter().any(|x| x == "d")
        };
        assert_eq!(smallest(&all, needs_b_and_d), ["b", "d"]);
        assert_eq!(calls, 4, "one evaluation per candidate");
        // Either of two scopes suffices: one is kept, never both.
        let either = |s: &[String]| s.iter().any(|x| x == "a" || x == "c");
        assert_eq!(smallest(&all, either), ["c"]);
        assert!(smallest(&all, |_| true).is_empty());
    }

    #[test]
    fn only_scope_tokens_are_offered() {
        assert!(is_scope_token("tools:write"));
        assert!(is_scope_token("https://api.example/read"));
        for bad in ["", "two words", "a\"b", "a\\b", "tab\t", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }
}
