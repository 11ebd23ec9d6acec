//! `diff`: every request of the domain whose decision differs between two policy sets,
//! grouped as more or less permissive.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::table::{compact, labels, render, shown_dimensions};
use super::{facts_of, Domain, ShapeValues, DIMENSIONS};
use crate::authz::{Decision, PolicySet, Resource};

/// Which way a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Denied before, allowed now.
    MorePermissive,
    /// Allowed before, denied now.
    LessPermissive,
}

/// Requests (compacted) whose decision changed the same way, for the same policies.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Which way.
    pub direction: Direction,
    /// The action id.
    pub action: String,
    /// The resource, as Cedar text.
    pub resource: String,
    /// Dimension name → value (`*` for every value).
    pub shape: BTreeMap<&'static str, String>,
    /// The policies that decided in the old set (permits of an allow, forbids of a deny;
    /// none for a deny by default).
    pub old_policies: Vec<String>,
    /// The policies that decide in the new set.
    pub new_policies: Vec<String>,
}

/// The difference between two policy sets over their common domain.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyDiff {
    /// Requests evaluated (with each set).
    pub evaluated: usize,
    /// Requests newly allowed (compacted).
    pub more_permissive: Vec<Change>,
    /// Requests newly denied (compacted).
    pub less_permissive: Vec<Change>,
    /// The domain of each action.
    #[serde(skip)]
    pub domains: BTreeMap<String, Domain>,
}

type Key = (Direction, Vec<String>, Vec<String>);

/// Decides every request of the domain of `old` and `new` with both and returns those whose
/// decision changed; an error when a model is too large to decide (see [`Domain::shapes`]).
pub fn diff(old: &PolicySet, new: &PolicySet) -> Result<PolicyDiff, String> {
    let facts = facts_of(&[old, new]);
    let all = Domain::from_facts(&facts);
    // Each action over the dimensions the policies that can apply to it read.
    let domains: BTreeMap<String, (Domain, Vec<ShapeValues>)> = all
        .targets
        .iter()
        .map(|(action, _)| {
            let domain = Domain::from_facts(&facts.for_action(action));
            let shapes = domain
                .shapes()
                .map_err(|e| format!("action `{action}`: {e}"))?;
            Ok((action.clone(), (domain, shapes)))
        })
        .collect::<Result<_, String>>()?;
    let targets: Vec<(&str, &Resource, &Domain, &[ShapeValues])> = all
        .targets
        .iter()
        .flat_map(|(a, rs)| {
            let (domain, shapes) = &domains[a];
            rs.iter()
                .map(move |r| (a.as_str(), r, domain, shapes.as_slice()))
        })
        .collect();
    // One target per task: independent, and the decisions are CPU-bound.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = targets.len().div_ceil(threads).max(1);
    let per_target: Vec<Vec<(ShapeValues, Key)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(action, resource, domain, shapes)| {
                            changes(domain, shapes, old, new, action, resource)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut more = Vec::new();
    let mut less = Vec::new();
    for ((action, resource, domain, _), changed) in targets.iter().zip(per_target) {
        for (row, (direction, old_policies, new_policies)) in compact(domain, changed) {
            let change = Change {
                direction,
                action: action.to_string(),
                resource: resource.uid_text(),
                shape: labels(domain, &row),
                old_policies,
                new_policies,
            };
            match direction {
                Direction::MorePermissive => more.push(change),
                Direction::LessPermissive => less.push(change),
            }
        }
    }
    Ok(PolicyDiff {
        evaluated: targets.iter().map(|t| t.3.len()).sum(),
        more_permissive: more,
        less_permissive: less,
        domains: domains.into_iter().map(|(a, (d, _))| (a, d)).collect(),
    })
}

fn changes(
    domain: &Domain,
    shapes: &[ShapeValues],
    old: &PolicySet,
    new: &PolicySet,
    action: &str,
    resource: &Resource,
) -> Vec<(ShapeValues, Key)> {
    let mut out = Vec::new();
    for s in shapes {
        let before: Decision = domain.decide(old, action, resource, s);
        let after: Decision = domain.decide(new, action, resource, s);
        if before.allowed == after.allowed {
            continue;
        }
        let direction = if after.allowed {
            Direction::MorePermissive
        } else {
            Direction::LessPermissive
        };
        out.push((*s, (direction, before.policies, after.policies)));
    }
    out
}

impl PolicyDiff {
    /// Whether some request became allowed.
    pub fn more_permissive(&self) -> bool {
        !self.more_permissive.is_empty()
    }

    /// The difference as a report.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let mut dims: Vec<usize> = self.domains.values().flat_map(shown_dimensions).collect();
        dims.sort_unstable();
        dims.dedup();
        for (title, changes) in [
            (
                "MORE PERMISSIVE (denied before, allowed now)",
                &self.more_permissive,
            ),
            (
                "LESS PERMISSIVE (allowed before, denied now)",
                &self.less_permissive,
            ),
        ] {
            let _ = writeln!(t, "{title}: {}", changes.len());
            if changes.is_empty() {
                continue;
            }
            let mut headers = vec!["action", "resource"];
            headers.extend(dims.iter().map(|d| DIMENSIONS[*d]));
            headers.extend(["old", "new"]);
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    let mut cells = vec![c.action.clone(), c.resource.clone()];
                    cells.extend(dims.iter().map(|d| c.shape[DIMENSIONS[*d]].clone()));
                    cells.push(side(
                        c.direction == Direction::LessPermissive,
                        &c.old_policies,
                    ));
                    cells.push(side(
                        c.direction == Direction::MorePermissive,
                        &c.new_policies,
                    ));
                    cells
                })
                .collect();
            t.push_str(&render(&headers, &rows));
        }
        let _ = writeln!(
            t,
            "{} requests compared ({} changed rows)",
            self.evaluated,
            self.more_permissive.len() + self.less_permissive.len()
        );
        t
    }
}

/// `allow by p1, p2` / `deny by f1` / `deny (no permit)`.
fn side(allowed: bool, policies: &[String]) -> String {
    match (allowed, policies.is_empty()) {
        (true, _) => format!("allow by {}", policies.join(", ")),
        (false, true) => "deny (no permit)".into(),
        (false, false) => format!("deny by {}", policies.join(", ")),
    }
}
