//! The edited policy set: the live set's schema and catalog with the policy files the page
//! sends. Built per request and dropped with the answer — never swapped in.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::authz::explain::Explanation;
use crate::authz::{Mode, PolicyError, PolicyFiles, PolicySet};

/// Most policy files one request may carry.
const MAX_FILES: usize = 64;

/// One edited `.cedar` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditedFile {
    /// A plain file name ending in `.cedar` (no directory).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The short name of `path` (what the page shows).
pub fn short(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Checks the names of the edited files (plain `*.cedar` names, unique, at most
/// [`MAX_FILES`]).
pub fn check_names(files: &[EditedFile]) -> Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!("at most {MAX_FILES} policy files"));
    }
    let mut seen = std::collections::HashSet::new();
    for f in files {
        let plain = !f.name.is_empty()
            && f.name.len() <= 128
            && f.name.ends_with(".cedar")
            && !f.name.contains(['/', '\\'])
            && !f.name.starts_with('.');
        if !plain {
            return Err(format!(
                "policies[].name `{}`: expected a plain file name ending in .cedar",
                f.name
            ));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(format!("policies[].name `{}` is used twice", f.name));
        }
    }
    Ok(())
}

/// Builds the edited set: `live`'s schema and catalog with `files` as its policies.
pub fn build(live: &PolicySet, files: &[EditedFile]) -> Result<PolicySet, Vec<PolicyError>> {
    let mut set_files: PolicyFiles = live.files().clone();
    set_files.policies = files
        .iter()
        .map(|f| (PathBuf::from(&f.name), f.text.clone()))
        .collect();
    PolicySet::from_files("edited", &set_files, Mode::Enforce)
}

/// The set to work with: the edited one when the page sent policies, else the live one.
pub fn chosen(
    live: &std::sync::Arc<PolicySet>,
    files: Option<&[EditedFile]>,
) -> Result<Result<std::sync::Arc<PolicySet>, Value>, String> {
    match files {
        None => Ok(Ok(live.clone())),
        Some(files) => {
            check_names(files)?;
            Ok(build(live, files)
                .map(std::sync::Arc::new)
                .map_err(|errors| invalid(&errors)))
        }
    }
}

/// The answer for a set that does not validate.
pub fn invalid(errors: &[PolicyError]) -> Value {
    json!({ "valid": false, "errors": errors_json(errors) })
}

/// Validation errors as the page reads them: short file name, line, column, message.
pub fn errors_json(errors: &[PolicyError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| {
            json!({
                "file": short(&e.file),
                "line": e.line,
                "column": e.column,
                "message": e.message,
            })
        })
        .collect()
}

/// Where each policy of `set` is written: id, short file name, first and last line.
pub fn ranges(set: &PolicySet) -> Vec<Value> {
    let mut out: Vec<Value> = set
        .policies()
        .policies()
        .map(|p| range(set, p.id().as_ref()))
        .collect();
    out.sort_by_key(|v| (v["file"].to_string(), v["line"].as_u64()));
    out
}

/// Where policy `id` of `set` is written.
pub fn range(set: &PolicySet, id: &str) -> Value {
    let source = set.source(id);
    json!({
        "id": id,
        "file": source.map(|s| short(&s.file)),
        "line": source.map(|s| s.line),
        "end_line": source.map(|s| s.end_line),
    })
}

/// One decision for the page: allowed, the deciding policies with their ranges and
/// annotations, evaluation errors.
pub fn decision_json(set: &PolicySet, e: &Explanation) -> Value {
    let policies: Vec<Value> = e
        .policies
        .iter()
        .map(|p| {
            let mut r = range(set, &p.id);
            r["annotations"] = json!(p.annotations);
            r
        })
        .collect();
    json!({
        "valid": true,
        "allowed": e.decision.allowed,
        "policies": policies,
        "errors": e.decision.errors,
        "policy_set_hash": set.hash(),
        "text": e.text,
    })
}
