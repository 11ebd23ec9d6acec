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
//! {open, principal, each parent} and evaluates their union with Cedar's own rule: any
//! satisfied `forbid` denies, else any satisfied `permit` allows, else deny. That is exactly
//! the decision of the whole set, because a policy left out of every looked-up bucket has a
//! scope that cannot match the request.
//!
//! The union is one Cedar policy set per combination of buckets ([`Slices::candidates`]),
//! merged on first use and cached: one `is_authorized` call per decision instead of one per
//! bucket (each call builds an evaluator and a response of its own; with a tool call's five
//! or six buckets that was about a tenth of the decision's instructions).

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{ActionConstraint, EntityUid, Policy, PrincipalConstraint, ResourceConstraint};

/// Most merged bucket combinations kept; the cache is emptied when full (a combination is
/// rebuilt from its buckets on its next use, so this bounds memory, never correctness).
const MERGED_CACHE: usize = 4096;

/// Buckets of a policy set: action → resource key → principal key → policies, where a key is
/// a uid as Cedar text and `open` holds the policies not constrained to one.
#[derive(Debug, Default)]
pub struct Slices {
    actions: HashMap<String, Keyed<Keyed<Bucket>>, super::Hasher>,
    /// Unions of buckets, by the ordered indexes of the buckets merged.
    merged: dashmap::DashMap<Vec<u32>, Arc<cedar_policy::PolicySet>, super::Hasher>,
    /// How many buckets were made (the next bucket's index).
    buckets: u32,
}

/// The policies of one bucket, with the bucket's index (its identity in a merged key).
#[derive(Debug, Default)]
struct Bucket {
    index: u32,
    policies: cedar_policy::PolicySet,
}

/// Entries for one literal key each, plus the open entry.
#[derive(Debug)]
struct Keyed<T> {
    open: Option<T>,
    by_key: HashMap<String, T, super::Hasher>,
}

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Self {
            open: None,
            by_key: HashMap::default(),
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
                let next = slices.buckets;
                let bucket = slices
                    .actions
                    .entry(action)
                    .or_default()
                    .entry(resource.clone())
                    .entry(principal.clone());
                if bucket.policies.is_empty() {
                    bucket.index = next;
                    slices.buckets += 1;
                }
                // Ids are unique in the source set, so adding cannot collide.
                let _ = bucket.policies.add(policy.clone());
            }
        }
        slices
    }

    /// The policies that may apply to this request — the union of the buckets for its
    /// action × {open, `resource`} × {open, each of `principal_side`} (the principal's own uid
    /// and its parents') — or `None` when no bucket holds any (nothing can permit).
    pub fn candidates(
        &self,
        action: &str,
        resource: &str,
        principal_side: &[String],
    ) -> Option<Arc<cedar_policy::PolicySet>> {
        let by_resource = self.actions.get(action)?;
        let mut found: Vec<&Bucket> = Vec::with_capacity(8);
        for by_principal in by_resource.lookup(resource) {
            found.extend(by_principal.open.iter());
            found.extend(
                principal_side
                    .iter()
                    .filter_map(|p| by_principal.by_key.get(p)),
            );
        }
        // A principal can list the same parent twice; a bucket counts once.
        found.sort_unstable_by_key(|b| b.index);
        found.dedup_by_key(|b| b.index);
        let key: Vec<u32> = found.iter().map(|b| b.index).collect();
        if key.is_empty() {
            return None;
        }
        if let Some(hit) = self.merged.get(&key) {
            return Some(hit.value().clone());
        }
        let mut union = cedar_policy::PolicySet::new();
        for bucket in &found {
            for policy in bucket.policies.policies() {
                // Each policy sits in one bucket per action: ids cannot collide.
                let _ = union.add(policy.clone());
            }
        }
        let union = Arc::new(union);
        if self.merged.len() >= MERGED_CACHE {
            self.merged.clear();
        }
        self.merged.insert(key, union.clone());
        Some(union)
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
