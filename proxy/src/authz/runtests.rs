//! Policy tests in the Cedar CLI `run-tests` format, run by `palisade policy test`.
//!
//! A test file is a JSON array of cases, the shape `cedar run-tests` reads:
//!
//! ```json
//! [{
//!   "name": "viewer cannot run agents",
//!   "request": {"principal": "User::\"v\"", "action": "Action::\"run_agent\"",
//!               "resource": "Agent::\"assistant\"", "context": {…}},
//!   "entities": [{"uid": {"type": "User", "id": "v"}, "attrs": {…}, "parents": […]}],
//!   "decision": "deny",
//!   "reason": [],
//!   "num_errors": 0
//! }]
//! ```
//!
//! `name`, `reason` and `num_errors` (or the older `has_error`) are optional; when present they
//! are checked too (`reason` as a set of policy ids). Requests, contexts and entities are
//! validated against the policy set's schema, and action entities come from the schema, so a
//! test cannot pass on a request the proxy could never make.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request};
use serde::Deserialize;
use serde_json::Value;

use super::PolicySet;

/// One test case.
#[derive(Debug, Clone, Deserialize)]
pub struct TestCase {
    /// Optional name.
    #[serde(default)]
    pub name: Option<String>,
    /// The request.
    pub request: TestRequest,
    /// Entities in Cedar's JSON entity format.
    #[serde(default)]
    pub entities: Value,
    /// `allow` or `deny`.
    pub decision: String,
    /// Expected deciding policy ids.
    #[serde(default)]
    pub reason: Option<Vec<String>>,
    /// Expected number of evaluation errors.
    #[serde(default)]
    pub num_errors: Option<usize>,
    /// Whether errors are expected (older files).
    #[serde(default)]
    pub has_error: Option<bool>,
}

/// The request of a test case.
#[derive(Debug, Clone, Deserialize)]
pub struct TestRequest {
    /// Principal uid text.
    pub principal: String,
    /// Action uid text.
    pub action: String,
    /// Resource uid text.
    pub resource: String,
    /// Context in Cedar's JSON format.
    #[serde(default = "empty_object")]
    pub context: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The file.
    pub file: PathBuf,
    /// Index in the file.
    pub index: usize,
    /// The case's name (or `#<index>`).
    pub name: String,
    /// `None` when it passed, else why not.
    pub failure: Option<String>,
}

/// Finds every `*.json` test file under `dir` (recursively), sorted.
pub fn find_test_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs every case of `file` against `set`. `Err` when the file itself cannot be read.
pub fn run_file(set: &PolicySet, file: &Path) -> Result<Vec<TestOutcome>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    run_text(set, file, &text)
}

/// [`run_file`] on a file's `text` (the seed tests are compiled in).
pub fn run_text(set: &PolicySet, file: &Path, text: &str) -> Result<Vec<TestOutcome>, String> {
    let cases: Vec<TestCase> = serde_json::from_str(text)
        .map_err(|e| format!("{}: not a run-tests file: {e}", file.display()))?;
    Ok(cases
        .iter()
        .enumerate()
        .map(|(index, case)| TestOutcome {
            file: file.to_path_buf(),
            index,
            name: case.name.clone().unwrap_or_else(|| format!("#{index}")),
            failure: run_case(set, case).err(),
        })
        .collect())
}

/// Runs one case; `Err` says why it failed.
pub fn run_case(set: &PolicySet, case: &TestCase) -> Result<(), String> {
    let schema = set.schema();
    let uid = |what: &str, text: &str| {
        EntityUid::from_str(text).map_err(|e| format!("request.{what}: `{text}`: {e}"))
    };
    let principal = uid("principal", &case.request.principal)?;
    let action = uid("action", &case.request.action)?;
    let resource = uid("resource", &case.request.resource)?;
    let context = Context::from_json_value(case.request.context.clone(), Some((schema, &action)))
        .map_err(|e| format!("request.context: {e}"))?;
    let request = Request::new(principal, action, resource, context, Some(schema))
        .map_err(|e| format!("request: {e}"))?;
    let entities_json = match &case.entities {
        Value::Null => Value::Array(Vec::new()),
        other => other.clone(),
    };
    let entities = Entities::from_json_value(entities_json, Some(schema))
        .map_err(|e| format!("entities: {e}"))?;
    let response = Authorizer::new().is_authorized(&request, set.policies(), &entities);
    let got = match response.decision() {
        cedar_policy::Decision::Allow => "allow",
        cedar_policy::Decision::Deny => "deny",
    };
    let reasons: BTreeSet<String> = response
        .diagnostics()
        .reason()
        .map(|r| r.to_string())
        .collect();
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    let mut problems = Vec::new();
    if !case.decision.eq_ignore_ascii_case(got) {
        problems.push(format!(
            "expected {}, got {got}",
            case.decision.to_ascii_lowercase()
        ));
    }
    if let Some(expected) = &case.reason {
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        if expected != reasons {
            problems.push(format!("expected reason {expected:?}, got {reasons:?}"));
        }
    }
    if let Some(n) = case.num_errors {
        if n != errors.len() {
            problems.push(format!(
                "expected {n} error(s), got {}: {errors:?}",
                errors.len()
            ));
        }
    }
    if let Some(has) = case.has_error {
        if has == errors.is_empty() {
            problems.push(format!("expected has_error = {has}, got errors {errors:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
