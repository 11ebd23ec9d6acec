//! `who-can`: which principal shapes may do `action` on `resource`, with the permits that
//! decide, and which of them need MFA.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::table::{compact, labels, render, shown_dimensions};
use super::{domain_of, Domain, DIMENSIONS};
use crate::authz::{PolicySet, Resource};

/// The answer to "who can do `action` on `resource`?".
#[derive(Debug, Clone, Serialize)]
pub struct WhoCan {
    /// The action id.
    pub action: String,
    /// The resource, as Cedar text.
    pub resource: String,
    /// Shapes evaluated.
    pub evaluated: usize,
    /// Shapes permitted.
    pub permitted: usize,
    /// The permitted shapes, compacted (`*`: every value of that dimension).
    pub rows: Vec<WhoCanRow>,
    /// The domain the shapes were drawn from.
    pub domain: Domain,
}

/// Permitted shapes with the same deciding policies.
#[derive(Debug, Clone, Serialize)]
pub struct WhoCanRow {
    /// Dimension name → value (`*` for every value).
    pub shape: BTreeMap<&'static str, String>,
    /// Permitted with MFA, denied without it.
    pub needs_mfa: bool,
    /// The permits that decide.
    pub policies: Vec<String>,
}

/// Evaluates every shape of the set's [`Domain`] for `action` on `resource`.
pub fn who_can(set: &PolicySet, action: &str, resource: &Resource) -> Result<WhoCan, String> {
    set.check_target(action, resource)?;
    let domain = domain_of(&[set], action);
    let shapes = domain.shapes()?;
    let allowed: BTreeMap<_, _> = shapes
        .iter()
        .map(|s| (*s, domain.decide(set, action, resource, s)))
        .collect();
    let mut permitted = Vec::new();
    for (s, d) in &allowed {
        if !d.allowed {
            continue;
        }
        let needs_mfa = domain.mfa[s[3]] && {
            let mut without = *s;
            without[3] = domain.mfa.iter().position(|m| !m).unwrap_or(s[3]);
            allowed.get(&without).is_some_and(|d| !d.allowed)
        };
        permitted.push((*s, (needs_mfa, d.policies.clone())));
    }
    let count = permitted.len();
    let rows = compact(&domain, permitted)
        .into_iter()
        .map(|(row, (needs_mfa, policies))| WhoCanRow {
            shape: labels(&domain, &row),
            needs_mfa,
            policies,
        })
        .collect();
    Ok(WhoCan {
        action: action.to_string(),
        resource: resource.uid_text(),
        evaluated: shapes.len(),
        permitted: count,
        rows,
        domain,
    })
}

impl WhoCan {
    /// The answer as a report: a table of the permitted shapes.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "who can {} on {}: {} of {} principal shapes",
            self.action, self.resource, self.permitted, self.evaluated
        );
        let dims = shown_dimensions(&self.domain);
        let fixed: Vec<String> = (0..DIMENSIONS.len())
            .filter(|d| !dims.contains(d))
            .map(|d| format!("{}={}", DIMENSIONS[d], self.domain.label(d, 0)))
            .collect();
        if !fixed.is_empty() {
            let _ = writeln!(
                t,
                "not read by any policy that applies to {}: {}",
                self.action,
                fixed.join(", ")
            );
        }
        if self.rows.is_empty() {
            let _ = writeln!(t, "nobody: no permit applies to any shape");
            return t;
        }
        let mut headers: Vec<&str> = dims.iter().map(|d| DIMENSIONS[*d]).collect();
        headers.push("policies");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let mut cells: Vec<String> = dims
                    .iter()
                    .map(|d| {
                        let v = r.shape[DIMENSIONS[*d]].clone();
                        if *d == 3 && r.needs_mfa {
                            "REQUIRED".to_string()
                        } else {
                            v
                        }
                    })
                    .collect();
                cells.push(r.policies.join(", "));
                cells
            })
            .collect();
        t.push_str(&render(&headers, &rows));
        if self.rows.iter().any(|r| r.needs_mfa) {
            let _ = writeln!(t, "mfa REQUIRED: permitted with MFA, denied without it");
        }
        t
    }
}
