//! The who-can matrix: for one tool action, each role (rows) × each catalogued tool
//! (columns): allowed, allowed only with MFA, or denied — over the same finite model of
//! principal shapes as `palisade policy who-can` ([`crate::authz::analysis::Domain`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::authz::analysis::{domain_of, facts_of, ShapeValues};
use crate::authz::{PolicySet, Resource, ResourceKind};

/// The actions that take a `Tool` resource in `set`'s schema.
pub fn tool_actions(set: &PolicySet) -> Vec<String> {
    facts_of(&[set])
        .actions
        .into_iter()
        .filter(|(_, types)| types.contains("Tool"))
        .map(|(action, _)| action)
        .collect()
}

/// The roles the policies name (entities `Role::"…"` and `principal.roles` literals).
pub fn roles(set: &PolicySet) -> Vec<String> {
    let facts = facts_of(&[set]);
    let mut roles: BTreeSet<String> = facts.entity_ids("Role").map(String::from).collect();
    roles.extend(facts.literals("roles").map(String::from));
    roles.into_iter().collect()
}

/// The most Cedar decisions one matrix takes (~10 µs each).
const MAX_DECISIONS: usize = 1_000_000;

/// The matrix for `action` (it must take `Tool` resources).
///
/// A cell is `allow` when some shape holding the role is permitted without MFA, `mfa` when
/// shapes holding it are permitted only with MFA, `deny` otherwise; `all` says whether every
/// shape with the role (with MFA, for `mfa`) is permitted — when not, the permit depends on
/// tenant, scopes, network, method or time as well. Rows: each role, then `(no role)`.
pub fn matrix(set: &PolicySet, action: &str) -> Result<Value, String> {
    if !tool_actions(set).iter().any(|a| a == action) {
        return Err(format!(
            "action `{action}`: the matrix is for actions on tools ({})",
            tool_actions(set).join(", ")
        ));
    }
    let domain = domain_of(&[set], action);
    let shapes = domain.shapes()?;
    let role_names = roles(set);
    // The domain's index of each row's role; a role the domain does not enumerate (no policy
    // for this action reads roles) decides like any other: the single value, index 0.
    let index_of = |role: Option<&str>| {
        domain
            .roles
            .iter()
            .position(|r| r.as_deref() == role)
            .unwrap_or(0)
    };
    let mut rows: Vec<(String, usize)> = role_names
        .iter()
        .map(|r| (r.clone(), index_of(Some(r))))
        .collect();
    rows.push(("(no role)".into(), index_of(None)));

    let tools: Vec<String> = set.catalog().tools.keys().cloned().collect();
    // One decision per shape and tool: bounded like one analysis (see `MAX_SHAPES`).
    let decisions = shapes.len().saturating_mul(tools.len().max(1));
    if decisions > MAX_DECISIONS {
        return Err(format!(
            "the matrix needs {decisions} decisions ({} principal shapes × {} tools): more than \
             the {MAX_DECISIONS} one request may take",
            shapes.len(),
            tools.len()
        ));
    }
    let mut cells = Vec::new();
    for (_, role) in &rows {
        let mut line = Vec::new();
        for tool in &tools {
            let resource = Resource::new(ResourceKind::Tool, tool.clone());
            line.push(cell(set, action, &resource, &domain, &shapes, *role));
        }
        cells.push(line);
    }
    Ok(json!({
        "action": action,
        "roles": rows.iter().map(|(r, _)| r).collect::<Vec<_>>(),
        "tools": tools,
        "cells": cells,
        "shapes_per_cell": shapes.iter().filter(|s| s[1] == 0).count(),
    }))
}

fn cell(
    set: &PolicySet,
    action: &str,
    resource: &Resource,
    domain: &crate::authz::analysis::Domain,
    shapes: &[ShapeValues],
    role: usize,
) -> Value {
    let mut policies = BTreeSet::new();
    // (permitted, evaluated) by MFA used.
    let mut by_mfa: BTreeMap<bool, (usize, usize)> = BTreeMap::new();
    for s in shapes.iter().filter(|s| s[1] == role) {
        let d = domain.decide(set, action, resource, s);
        let entry = by_mfa.entry(domain.mfa[s[3]]).or_default();
        entry.1 += 1;
        if d.allowed {
            entry.0 += 1;
            policies.extend(d.policies);
        }
    }
    let without = by_mfa.get(&false).copied().unwrap_or_default();
    let with = by_mfa.get(&true).copied().unwrap_or_default();
    let (outcome, all) = if without.0 > 0 {
        ("allow", without.0 == without.1 && with.0 == with.1)
    } else if with.0 > 0 {
        ("mfa", with.0 == with.1)
    } else {
        ("deny", true)
    };
    json!({ "outcome": outcome, "all": all, "policies": policies })
}
