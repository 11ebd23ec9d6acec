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

/// Buckets of a policy set: action → resource key → principal key → policies, where a key is
/// a uid as Cedar text and `open` holds the policies not constrained to one.
#[derive(Debug, Default)]
pub struct Slices {
    actions: HashMap<String, Keyed<Keyed<cedar_policy::PolicySet>>>,
}

/// Entries for one literal key each, plus the open entry.
#[derive(Debug)]
struct Keyed<T> {
    open: Option<T>,
    by_key: HashMap<String, T>,
}

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Self {
            open: None,
            by_key: HashMap::new(),
        }
    }
}

impl<T: Default> Keyed<T> {
    fn entry(&mut self, key: Option<String>) -> &mut T {
        match key {
            None => self.open.get_or_insert_with(T::default),
            Some(k) => self.by_key.entry(k).or_default(),
        }
    }
}

impl<T> Keyed<T> {
    /// The open entry and the one for `key`, when present.
    fn lookup<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.open.iter().chain(self.by_key.get(key))
    }
}

impl Slices {
    /// Sorts `policies` into buckets. `actions` maps every action id to its ancestor ids.
    pub fn build(
        policies: &cedar_policy::PolicySet,
        actions: &HashMap<String, Vec<String>>,
    ) -> Self {
        let mut slices = Self::default();
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
                let bucket = slices
                    .actions
                    .entry(action)
                    .or_default()
                    .entry(resource.clone())
                    .entry(principal.clone());
                // Ids are unique in the source set, so adding cannot collide.
                let _ = bucket.add(policy.clone());
            }
        }
        slices
    }

    /// The buckets that may hold policies applying to this request: `principal_side` is the
    /// principal's own uid and its parents'.
    pub fn candidates<'a>(
        &'a self,
        action: &str,
        resource: &'a str,
        principal_side: &'a [String],
    ) -> impl Iterator<Item = &'a cedar_policy::PolicySet> + 'a {
        self.actions
            .get(action)
            .into_iter()
            .flat_map(move |by_resource| by_resource.lookup(resource))
            .flat_map(move |by_principal| {
                by_principal.open.iter().chain(
                    principal_side
                        .iter()
                        .filter_map(|p| by_principal.by_key.get(p)),
                )
            })
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
