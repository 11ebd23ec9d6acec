//! The studio API's handlers: admit (admin token, bounded body), then do the work off the
//! async threads with [`super::blocking`]. None of them changes a live set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::edited::{self, EditedFile};
use super::{admitted_with_live, audit_list, blocking, matrix, ok, refusal, StudioState};
use crate::authz::explain::{explain, from_audit, ExplainRequest};
use crate::authz::{runtests, PolicySet, BUILTIN, BUILTIN_TESTS};
use crate::error::ProxyError;

/// A body that only carries (optionally) the edited policies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Edited {
    /// The edited policy files; absent: the live set's.
    #[serde(default)]
    policies: Option<Vec<EditedFile>>,
}

/// `GET /admin/studio/api/live`: the deciding live set's files, its policies' ranges, and
/// what the page's pickers offer (actions with their resource types, tools, roles, tenants).
pub(super) async fn live(State(state): State<StudioState>, headers: HeaderMap) -> Response {
    if let Err(refused) = super::super::authorize_with(&state.authn, &headers) {
        return refused;
    }
    let set = match state.live() {
        Ok(set) => set,
        Err(refused) => return refused,
    };
    let audit = state.audit_file.is_some();
    blocking(move || Ok(live_json(&set, audit))).await
}

fn live_json(set: &PolicySet, audit: bool) -> Value {
    let files = set.files();
    let named = |list: &[(PathBuf, String)]| -> Vec<Value> {
        list.iter()
            .map(|(p, t)| json!({"name": edited::short(&p.display().to_string()), "text": t}))
            .collect()
    };
    let facts = crate::authz::analysis::facts_of(&[set]);
    let mut tenants: std::collections::BTreeSet<String> =
        facts.entity_ids("Tenant").map(String::from).collect();
    tenants.extend(facts.literals("tenant").map(String::from));
    tenants.extend(facts.tool_tenants.iter().cloned());
    let tools: Vec<Value> = set
        .catalog()
        .tools
        .iter()
        .map(|(name, t)| json!({"name": name, "risk": t.risk.as_str(), "tenant": t.tenant}))
        .collect();
    let mut ids: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for ty in ["Agent", "Route", "Thread"] {
        ids.insert(ty, facts.entity_ids(ty).collect());
    }
    json!({
        "set": {"name": set.name(), "mode": set.mode().as_str(), "hash": set.hash(),
                "policies": set.len()},
        "files": {
            "schemas": named(&files.schemas),
            "policies": named(&files.policies),
            "catalog": files.catalog.as_ref().map(|(p, t)| json!({
                "name": edited::short(&p.display().to_string()), "text": t})),
        },
        "policies": edited::ranges(set),
        "pickers": {
            "actions": facts.actions,
            "tool_actions": matrix::tool_actions(set),
            "tools": tools,
            "ids": ids,
            "roles": matrix::roles(set),
            "tenants": tenants,
            "principal_types": ["User", "ApiKey", "Service", "Anonymous"],
        },
        "audit": audit,
    })
}

/// `POST /admin/studio/api/validate` `{"policies": [{name, text}]}`: `{valid, errors:
/// [{file, line, column, message}], policies: [{id, file, line, end_line}]}`.
pub(super) async fn validate(
    State(state): State<StudioState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Validate {
        policies: Vec<EditedFile>,
    }
    let (body, live): (Validate, _) = match admitted_with_live(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    blocking(move || {
        edited::check_names(&body.policies)?;
        Ok(match edited::build(&live, &body.policies) {
            Ok(set) => json!({
                "valid": true, "errors": [], "policies": edited::ranges(&set),
                "count": set.len(), "hash": set.hash(),
            }),
            Err(errors) => edited::invalid(&errors),
        })
    })
    .await
}

/// `POST /admin/studio/api/evaluate` `{"policies": […], "request": <explain request>}`: the
/// decision of the edited set and of the live set, with the deciding policies' ranges.
pub(super) async fn evaluate(
    State(state): State<StudioState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Evaluate {
        #[serde(default)]
        policies: Option<Vec<EditedFile>>,
        request: ExplainRequest,
    }
    let (body, live): (Evaluate, _) = match admitted_with_live(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    blocking(move || both(&live, body.policies.as_deref(), &body.request, json!({}))).await
}

/// Decides `request` with the live set and the edited one (when `files`); `extra` fields are
/// added to the answer.
fn both(
    live: &Arc<PolicySet>,
    files: Option<&[EditedFile]>,
    request: &ExplainRequest,
    mut extra: Value,
) -> Result<Value, String> {
    let live_answer = explain(live, request)?;
    let edited = match edited::chosen(live, files)? {
        Ok(set) => {
            let e = explain(&set, request)?;
            edited::decision_json(&set, &e)
        }
        Err(invalid) => invalid,
    };
    let changed = edited["valid"] == true && edited["allowed"] != live_answer.decision.allowed;
    extra["live"] = edited::decision_json(live, &live_answer);
    extra["edited"] = edited;
    extra["changed"] = json!(changed);
    extra["request"] = json!(request);
    extra["context"] = live_answer.context;
    Ok(extra)
}

/// `POST /admin/studio/api/test` `{"policies": […]}`: the live set's policy tests (what
/// `palisade policy test` runs for its directory) against the edited set.
pub(super) async fn test(
    State(state): State<StudioState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (body, live): (Edited, _) = match admitted_with_live(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let dir = state
        .authz
        .as_ref()
        .and_then(|a| a.dir(live.name()).map(Path::to_path_buf))
        .unwrap_or_default();
    blocking(move || {
        let set = match edited::chosen(&live, body.policies.as_deref())? {
            Ok(set) => set,
            Err(invalid) => return Ok(invalid),
        };
        Ok(run_tests(&set, &dir))
    })
    .await
}

fn run_tests(set: &PolicySet, dir: &Path) -> Value {
    let mut runs = Vec::new();
    if dir == Path::new(BUILTIN) {
        for (name, text) in BUILTIN_TESTS {
            let path = Path::new("tests").join(name);
            runs.push((path.clone(), runtests::run_text(set, &path, text)));
        }
    } else {
        for path in runtests::find_test_files(&dir.join("tests")) {
            let shown = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            runs.push((shown, runtests::run_file(set, &path)));
        }
    }
    let mut cases = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for (file, result) in runs {
        match result {
            Ok(outcomes) => {
                for o in outcomes {
                    if o.failure.is_some() {
                        failed += 1;
                    } else {
                        passed += 1;
                    }
                    cases.push(json!({"file": file.display().to_string(), "name": o.name,
                                      "failure": o.failure}));
                }
            }
            Err(e) => {
                failed += 1;
                cases.push(json!({"file": file.display().to_string(), "name": "(file)",
                                  "failure": e}));
            }
        }
    }
    json!({"valid": true, "passed": passed, "failed": failed, "cases": cases})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /admin/studio/api/audit?filter=all|denied|shadow&limit=N` (N ≤ 500, default 50):
/// recent decisions of the audit file, newest first.
pub(super) async fn audit(
    State(state): State<StudioState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = super::super::authorize_with(&state.authn, &headers) {
        return refused;
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return refusal(ProxyError::InvalidRequest(format!("query: {e}"))),
    };
    let filter = match audit_list::Filter::parse(query.filter.as_deref().unwrap_or("all")) {
        Ok(f) => f,
        Err(e) => return refusal(ProxyError::InvalidRequest(e)),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return refusal(ProxyError::InvalidRequest("limit: 1 to 500".into()));
    }
    let Some(file) = state.audit_file.clone() else {
        return ok(json!({"file": null, "records": [],
                         "note": "no audit file is configured (audit.file)"}));
    };
    blocking(move || {
        let records = audit_list::recent(&file, filter, limit)?;
        Ok(json!({"file": edited::short(&file.display().to_string()), "records": records}))
    })
    .await
}

/// `POST /admin/studio/api/explain-audit` `{"line": N, "request_id": "…", "tool_call": n?,
/// "policies": […]?}`: the record's request (as `palisade policy explain --from-audit`
/// rebuilds it) decided by the live and the edited set, and what the record says.
pub(super) async fn explain_audit(
    State(state): State<StudioState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExplainAudit {
        line: usize,
        request_id: String,
        #[serde(default)]
        tool_call: Option<usize>,
        #[serde(default)]
        policies: Option<Vec<EditedFile>>,
    }
    let (body, live): (ExplainAudit, _) = match admitted_with_live(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let Some(file) = state.audit_file.clone() else {
        return refusal(ProxyError::InvalidRequest(
            "no audit file is configured (audit.file)".into(),
        ));
    };
    blocking(move || {
        let record = audit_list::record_at(&file, body.line, &body.request_id)?;
        let (request, source) = from_audit(&record, body.tool_call)?;
        let mut live_answer = explain(&live, &request)?;
        live_answer.set_audit(Some(source.clone()));
        let extra = json!({"audit": source, "text": live_answer.text});
        both(&live, body.policies.as_deref(), &request, extra)
    })
    .await
}

/// `POST /admin/studio/api/who-can` `{"action": "call_tool", "policies": […]?}`: the roles ×
/// tools matrix of the edited set (or the live one).
pub(super) async fn who_can(
    State(state): State<StudioState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WhoCan {
        action: String,
        #[serde(default)]
        policies: Option<Vec<EditedFile>>,
    }
    let (body, live): (WhoCan, _) = match admitted_with_live(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    blocking(move || {
        let set = match edited::chosen(&live, body.policies.as_deref())? {
            Ok(set) => set,
            Err(invalid) => return Ok(invalid),
        };
        let mut m = matrix::matrix(&set, &body.action)?;
        m["valid"] = json!(true);
        Ok(m)
    })
    .await
}
