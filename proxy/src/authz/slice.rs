//! Pre-slicing a policy set by scope, so a decision evaluates only the policies that can apply.
//!
//! Every policy goes into the buckets its scope allows, keyed by (action, resource, principal):
//! - action: `==` one action, `in [...]` the listed actions and every action below them, or
//!   all actions when unconstrained;
//! - resource: `== X` / `in X` give the key `X` (Palisade's resources have no parents, so
//!   `resource in X` holds only for `X` itself); any other constraint gives the open key;
//! - principal: `== X` / `in X` give the key `X` (a principal's only ancestors are its
//!   `Role` and `Tenant` parents, which have no parents of their own); otherwise open.
//!
//! A decision looks up the buckets for the request's action × {open, resource} ×
//! {open, principal, each parent} and combines their answers with Cedar's own rule: any
//! satisfied `forbid` denies, else any satisfied `permit` allows, else deny. That is exactly
//! the decision of the whole set, because a policy left out of every looked-up bucket has a
//! scope that cannot match the request.

use std::collections::HashMap;

use cedar_policy::{ActionConstraint, EntityUid, Policy, PrincipalConstraint, ResourceConstraint};

/// Buckets of a policy set.
#[derive(Debug, Default)]
pub struct Slices {
    buckets: HashMap<SliceKey, cedar_policy::PolicySet>,
}

/// (action id, resource uid or open, principal-side uid or open), uids as Cedar text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SliceKey {
    action: String,
    resource: Option<String>,
    principal: Option<String>,
}

impl Slices {
    /// Sorts `policies` into buckets. `actions` maps every action id to its ancestor ids.
    pub fn build(
        policies: &cedar_policy::PolicySet,
        actions: &HashMap<String, Vec<String>>,
    ) -> Self {
        let mut buckets: HashMap<SliceKey, cedar_policy::PolicySet> = HashMap::new();
        for policy in policies.policies() {
            let resource = match policy.resource_constraint() {
                ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => Some(uid.to_string()),
                _ => None,
            };
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::Eq(uid) | PrincipalConstraint::In(uid) => {
                    Some(uid.to_string())
                }
                _ => None,
            };
            for action in applicable_actions(policy, actions) {
                let key = SliceKey {
                    action,
                    resource: resource.clone(),
                    principal: principal.clone(),
                };
                // Ids are unique in the source set, so adding cannot collide.
                let _ = buckets.entry(key).or_default().add(policy.clone());
            }
        }
        Self { buckets }
    }

    /// The buckets that may hold policies applying to this request.
    pub fn candidates<'a>(
        &'a self,
        action: &str,
        resource: &str,
        principal_side: &[String],
    ) -> impl Iterator<Item = &'a cedar_policy::PolicySet> + 'a {
        let resources = [None, Some(resource.to_string())];
        let principals: Vec<Option<String>> = std::iter::once(None)
            .chain(principal_side.iter().cloned().map(Some))
            .collect();
        let action = action.to_string();
        let mut found = Vec::new();
        for r in &resources {
            for p in &principals {
                let key = SliceKey {
                    action: action.clone(),
                    resource: r.clone(),
                    principal: p.clone(),
                };
                if let Some(set) = self.buckets.get(&key) {
                    found.push(set);
                }
            }
        }
        found.into_iter()
    }
}

fn applicable_actions(policy: &Policy, actions: &HashMap<String, Vec<String>>) -> Vec<String> {
    match policy.action_constraint() {
        ActionConstraint::Any => actions.keys().cloned().collect(),
        ActionConstraint::Eq(uid) => vec![action_id(&uid)],
        ActionConstraint::In(groups) => {
            let groups: Vec<String> = groups.iter().map(action_id).collect();
            actions
                .iter()
                .filter(|(id, ancestors)| {
                    groups.contains(id) || ancestors.iter().any(|a| groups.contains(a))
                })
                .map(|(id, _)| id.clone())
                .collect()
        }
    }
}

fn action_id(uid: &EntityUid) -> String {
    uid.id().unescaped().to_string()
}
