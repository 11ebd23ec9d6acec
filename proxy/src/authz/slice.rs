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
//!
//! **Pruned for a catalogued tool.** A policy that can apply to every resource (its resource
//! scope is open or `is T`) often starts its condition with a test of the resource alone
//! (`when { resource.risk == "high" && … }`, `when { resource has tenant } unless { … }`): for a
//! catalogued tool that test has the same value on every request, because the tool's entity
//! is built from the catalog and the tool's pinned hints only. At load, each such policy gets
//! a *guard*: a permit with open principal and action scopes, the policy's resource scope, and
//! the leading resource-only part of its condition ([`guard_of`]). A merged set's guards are
//! evaluated once per (combination, tool, hints) and a policy whose guard is *false without an
//! error* is dropped from that tool's set. That is exact: Cedar evaluates a policy's scope
//! (which cannot error) and then its conditions left to right, stopping at the first false or
//! error, so such a policy is false, without an error, for every principal and context. A
//! guard that errors or holds keeps its policy, and so do tools outside the catalog (their
//! names are the caller's to choose, so they are not cached).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, EntityUid, Policy, PolicyId, PrincipalConstraint, ResourceConstraint,
};
use serde_json::{json, Value};

use crate::protocol::mcp::ToolAnnotations;

/// Most sets each cache of [`Slices`] keeps (merged combinations of buckets; those pruned for a
/// tool). A cache is emptied when full: a set is rebuilt on its next use, so this bounds memory,
/// never correctness.
const CACHED_SETS: usize = 4096;

/// Most policies each cache's sets hold together. Every cached set is a copy (Cedar copies each
/// policy's text with it), so with large open slices — hundreds of policies no scope separates —
/// the count of sets alone would not bound memory.
const CACHED_POLICIES: usize = 1 << 18;

/// A cache of policy sets bounded by sets and by policies held, emptied when either would be
/// passed.
#[derive(Debug)]
struct SetCache<K: std::hash::Hash + Eq, V> {
    sets: dashmap::DashMap<K, V, super::Hasher>,
    /// Policies held (approximately, under concurrent inserts).
    policies: AtomicUsize,
}

impl<K: std::hash::Hash + Eq, V> Default for SetCache<K, V> {
    fn default() -> Self {
        Self {
            sets: dashmap::DashMap::default(),
            policies: AtomicUsize::new(0),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> SetCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.sets.get(key).map(|hit| hit.value().clone())
    }

    /// Keeps `value`, which holds `size` policies.
    fn insert(&self, key: K, value: V, size: usize) {
        let held = self.policies.fetch_add(size, Ordering::Relaxed) + size;
        if self.sets.len() >= CACHED_SETS || held > CACHED_POLICIES {
            self.sets.clear();
            self.policies.store(size, Ordering::Relaxed);
        }
        self.sets.insert(key, value);
    }
}

/// Buckets of a policy set: action → resource key → principal key → policies, where a key is
/// a uid as Cedar text and `open` holds the policies not constrained to one.
#[derive(Debug, Default)]
pub struct Slices {
    actions: HashMap<String, Keyed<Keyed<Bucket>>, super::Hasher>,
    /// Unions of buckets, by the ordered indexes of the buckets merged.
    merged: SetCache<Vec<u32>, Merged>,
    /// Unions pruned for a catalogued tool, by buckets, tool uid and hints.
    pruned: SetCache<PrunedKey, Arc<cedar_policy::PolicySet>>,
    /// How many buckets were made (the next bucket's index).
    buckets: u32,
}

type PrunedKey = (Vec<u32>, String, Option<ToolAnnotations>);

/// A union of buckets and the guards of its policies that have one (`None`: none has).
#[derive(Debug, Clone)]
struct Merged {
    set: Arc<cedar_policy::PolicySet>,
    guards: Option<Arc<cedar_policy::PolicySet>>,
}

/// The policies of one bucket, with the bucket's index (its identity in a merged key), and
/// the guards of those that have one ([`guard_of`]), under the policies' ids.
#[derive(Debug, Default)]
struct Bucket {
    index: u32,
    policies: cedar_policy::PolicySet,
    guards: Vec<Policy>,
}

/// The catalogued tool a decision is about, for pruning: its pinned hints (which with its uid
/// and the set's catalog make its entity), and the request and entities to evaluate guards on.
pub struct ToolProbe<'a> {
    pub hints: Option<ToolAnnotations>,
    pub request: &'a cedar_policy::Request,
    pub entities: &'a cedar_policy::Entities,
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
            // Only policies of the open resource key are guarded: the others are looked up
            // for their one resource alone.
            let guard = resource.is_none().then(|| guard_of(policy)).flatten();
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
                bucket.guards.extend(guard.clone());
            }
        }
        slices
    }

    /// The policies that may apply to this request — the union of the buckets for its
    /// action × {open, `resource`} × {open, each of `principal_side`} (the principal's own uid
    /// and its parents'), pruned for `tool` when the request is about a catalogued one — or
    /// `None` when no bucket holds any (nothing can permit).
    pub fn candidates(
        &self,
        action: &str,
        resource: &str,
        principal_side: &[String],
        tool: Option<ToolProbe<'_>>,
    ) -> Option<Arc<cedar_policy::PolicySet>> {
        let (key, merged) = self.merged(action, resource, principal_side)?;
        let (Some(guards), Some(tool)) = (merged.guards, tool) else {
            return Some(merged.set);
        };
        let key = (key, resource.to_string(), tool.hints);
        if let Some(hit) = self.pruned.get(&key) {
            return Some(hit);
        }
        let set = prune(&merged.set, &guards, &tool);
        self.pruned.insert(key, set.clone(), set.policies().count());
        Some(set)
    }

    /// The union of the buckets for the request, with its key.
    fn merged(
        &self,
        action: &str,
        resource: &str,
        principal_side: &[String],
    ) -> Option<(Vec<u32>, Merged)> {
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
            return Some((key, hit));
        }
        let mut union = cedar_policy::PolicySet::new();
        let mut guards = cedar_policy::PolicySet::new();
        for bucket in &found {
            for policy in bucket.policies.policies() {
                // Each policy sits in one bucket per action: ids cannot collide.
                let _ = union.add(policy.clone());
            }
            for guard in &bucket.guards {
                let _ = guards.add(guard.clone());
            }
        }
        let merged = Merged {
            set: Arc::new(union),
            guards: (!guards.is_empty()).then(|| Arc::new(guards)),
        };
        let size = merged.set.policies().count()
            + merged.guards.as_ref().map_or(0, |g| g.policies().count());
        self.merged.insert(key.clone(), merged.clone(), size);
        Some((key, merged))
    }
}

/// `set` without the policies whose guard is false, without an error, for `tool`.
fn prune(
    set: &Arc<cedar_policy::PolicySet>,
    guards: &cedar_policy::PolicySet,
    tool: &ToolProbe<'_>,
) -> Arc<cedar_policy::PolicySet> {
    let response =
        cedar_policy::Authorizer::new().is_authorized(tool.request, guards, tool.entities);
    let diagnostics = response.diagnostics();
    let mut kept: std::collections::HashSet<&PolicyId> = diagnostics.reason().collect();
    kept.extend(diagnostics.errors().map(|e| match e {
        cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id(),
    }));
    let dropped = |id: &PolicyId| guards.policy(id).is_some() && !kept.contains(id);
    if !set.policies().any(|p| dropped(p.id())) {
        return set.clone();
    }
    let mut pruned = cedar_policy::PolicySet::new();
    for policy in set.policies().filter(|p| !dropped(p.id())) {
        let _ = pruned.add(policy.clone());
    }
    Arc::new(pruned)
}

/// The guard of `policy`: a permit with open principal and action scopes, `policy`'s resource
/// scope, and the leading part of its condition that reads nothing but `resource` — the
/// conjuncts of its `when` clauses and whole `unless` clauses, in order, up to the first that
/// reads anything else. `None` when that leaves nothing to test (an open resource scope and
/// no such conjunct) or the policy has no JSON form.
///
/// Reading nothing but `resource` means: no `principal`, `action` or `context`, no template
/// slot and no entity literal (an `in` or an attribute of another entity would depend on the
/// request's entity store). Such an expression's value depends on the resource's entity alone
/// *because a tool's attributes hold no entity references* (strings, sets of strings, bools:
/// `entities::tool_entity`); an entity-valued attribute would let `resource.owner.mfa` read the
/// store, and this check would have to refuse attribute access on anything but `resource`.
pub(crate) fn guard_of(policy: &Policy) -> Option<Policy> {
    let json = policy.to_json().ok()?;
    let mut guards: Vec<Value> = Vec::new();
    'clauses: for clause in json.get("conditions")?.as_array()? {
        let body = clause.get("body")?;
        match clause.get("kind")?.as_str()? {
            "when" => {
                let mut conjuncts = Vec::new();
                conjuncts_of(body, &mut conjuncts);
                for conjunct in conjuncts {
                    if !reads_only_resource(conjunct) {
                        break 'clauses;
                    }
                    guards.push(json!({"kind": "when", "body": conjunct}));
                }
            }
            "unless" if reads_only_resource(body) => {
                guards.push(json!({"kind": "unless", "body": body}));
            }
            _ => break,
        }
    }
    let resource = json.get("resource")?;
    if guards.is_empty() && resource.get("op").and_then(Value::as_str) == Some("All") {
        return None;
    }
    let guard = json!({
        "effect": "permit",
        "principal": {"op": "All"},
        "action": {"op": "All"},
        "resource": resource,
        "conditions": guards,
    });
    Policy::from_json(Some(policy.id().clone()), guard).ok()
}

/// The conjuncts of `expr` in the order Cedar evaluates them (`&&` is left to right and stops
/// at the first false or error).
fn conjuncts_of<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let (Some(left), Some(right)) = (and.get("left"), and.get("right")) {
                conjuncts_of(left, out);
                conjuncts_of(right, out);
            } else {
                out.push(expr);
            }
        }
        None => out.push(expr),
    }
}

/// Whether the JSON expression `expr` reads nothing but the `resource` variable (see
/// [`guard_of`]).
fn reads_only_resource(expr: &Value) -> bool {
    match expr {
        Value::Object(map) => map.iter().all(|(key, value)| match key.as_str() {
            "Var" => value.as_str() == Some("resource"),
            "Slot" | "Unknown" | "__entity" | "entity" => false,
            _ => reads_only_resource(value),
        }),
        Value::Array(items) => items.iter().all(reads_only_resource),
        _ => true,
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

#[cfg(test)]
pub(super) mod tests;
