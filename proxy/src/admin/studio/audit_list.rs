//! Recent decisions from the active audit file (`docs/operations.md#record-format`), newest
//! first, and one record by line for the explainer.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{json, Value};

/// Which records the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every record with an authorization decision.
    All,
    /// Refused by the enforcing set.
    Denied,
    /// Decided by a shadow set (no enforcing one) and denied there: what enforcing would refuse.
    Shadow,
}

impl Filter {
    /// `all`, `denied` or `shadow`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "all" => Ok(Self::All),
            "denied" => Ok(Self::Denied),
            "shadow" => Ok(Self::Shadow),
            other => Err(format!("filter `{other}`: expected all, denied or shadow")),
        }
    }

    fn keeps(self, rec: &Value) -> bool {
        let Some(decision) = rec.get("decision").filter(|d| d.is_object()) else {
            return false;
        };
        let allowed = decision["allowed"].as_bool().unwrap_or(true);
        let mode = decision["mode"].as_str().unwrap_or("enforce");
        match self {
            Self::All => true,
            Self::Denied => !allowed && mode == "enforce",
            Self::Shadow => !allowed && mode == "shadow",
        }
    }
}

/// The last `limit` records of `file` that `filter` keeps, newest first, each with its line
/// number (from 1) for [`record_at`].
pub fn recent(file: &Path, filter: Filter, limit: usize) -> Result<Vec<Value>, String> {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        // No request audited yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading the audit file: {e}")),
    };
    let mut kept = VecDeque::with_capacity(limit);
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let Ok(line) = line else { break };
        let Ok(rec) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if rec.get("request_id").is_none() || !filter.keeps(&rec) {
            continue;
        }
        if kept.len() == limit {
            kept.pop_front();
        }
        kept.push_back(summary(i + 1, &rec));
    }
    Ok(kept.into_iter().rev().collect())
}

fn summary(line: usize, rec: &Value) -> Value {
    let decision = &rec["decision"];
    let principal = &rec["principal"];
    json!({
        "line": line,
        "request_id": rec["request_id"],
        "timestamp": rec["timestamp"],
        "method": rec["method"],
        "path": rec["path"],
        "status": rec["status"],
        "error_code": rec["error_code"],
        "principal": principal.get("id").cloned().unwrap_or(Value::Null),
        "roles": principal.get("roles").cloned().unwrap_or(json!([])),
        "action": rec["action"],
        "resource": rec["resource"],
        "allowed": decision["allowed"],
        "mode": decision["mode"],
        "policies": decision["policies"],
        "tool_calls": rec.get("tool_calls").and_then(Value::as_array).map_or(0, Vec::len),
    })
}

/// Line `line` (from 1) of `file`, which must be the record `request_id` (the file may have
/// rotated since the page listed it).
pub fn record_at(file: &Path, line: usize, request_id: &str) -> Result<String, String> {
    if line == 0 {
        return Err("line counts from 1".into());
    }
    let f = std::fs::File::open(file).map_err(|e| format!("reading the audit file: {e}"))?;
    let text = BufReader::new(f)
        .lines()
        .nth(line - 1)
        .and_then(Result::ok)
        .ok_or_else(|| format!("the audit file has fewer than {line} lines"))?;
    let rec: Value = serde_json::from_str(&text).map_err(|_| "not an audit record".to_string())?;
    if rec["request_id"].as_str() != Some(request_id) {
        return Err(format!(
            "line {line} is not record {request_id} any more (the file rotated?): reload the list"
        ));
    }
    Ok(text)
}
