//! MCP (Streamable HTTP): what policy needs from a JSON-RPC message — `tools/call` is
//! `call_tool` on the named tool with its arguments, `tools/list` answers are filtered — and
//! the `Mcp-Method` / `Mcp-Name` headers, which must agree with the body they describe.

use serde_json::Value;

use super::jsonrpc::{self, Batch};

/// What one MCP request asks, as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call<'a> {
    /// `tools/call`: the tool's name and its arguments.
    Tool {
        /// `params.name`.
        name: &'a str,
        /// `params.arguments`.
        arguments: Option<&'a Value>,
    },
    /// `tools/list`: its answer is filtered per principal.
    ListTools,
    /// Anything else (initialize, resources, prompts, notifications, responses).
    Other,
}

/// Classifies one message; `Err` for a `tools/call` without a string `params.name`.
pub fn classify(m: &Value) -> Result<Call<'_>, String> {
    match jsonrpc::method(m) {
        "tools/call" => {
            let name = m
                .pointer("/params/name")
                .and_then(Value::as_str)
                .ok_or("tools/call without params.name")?;
            Ok(Call::Tool {
                name,
                arguments: m.pointer("/params/arguments"),
            })
        }
        "tools/list" => Ok(Call::ListTools),
        _ => Ok(Call::Other),
    }
}

/// Checks the `Mcp-Method` / `Mcp-Name` headers against a single-message body: each may appear
/// at most once and must name what the body does.
pub fn check_headers(headers: &http::HeaderMap, body: &Batch) -> Result<(), String> {
    let one = |name: &str| -> Result<Option<&str>, String> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(format!("the {name} header is sent twice"));
        }
        first
            .map(|v| {
                v.to_str()
                    .map_err(|_| format!("the {name} header is not text"))
            })
            .transpose()
    };
    let (h_method, h_name) = (one("mcp-method")?, one("mcp-name")?);
    if body.batch || (h_method.is_none() && h_name.is_none()) {
        return Ok(());
    }
    let Some(m) = body.messages.first() else {
        return Ok(());
    };
    if h_method.is_some_and(|h| h != jsonrpc::method(m)) {
        return Err("the Mcp-Method header does not match the body".into());
    }
    if let Some(h) = h_name {
        if m.pointer("/params/name").and_then(Value::as_str) != Some(h) {
            return Err("the Mcp-Name header does not match the body".into());
        }
    }
    Ok(())
}

/// The `result.tools` of an answer to one of `list_ids`, when it is one.
pub fn listed_tools<'a>(answer: &'a mut Value, list_ids: &[Value]) -> Option<&'a mut Vec<Value>> {
    let id = answer.get("id")?;
    if !list_ids.iter().any(|l| super::json::same_id(l, id)) {
        return None;
    }
    answer.pointer_mut("/result/tools")?.as_array_mut()
}

/// The behaviour hints of an MCP tool (`annotations` of a `tools/list` entry). A server can
/// claim anything here: policy reads only the hints of a reviewed, pinned definition
/// (`docs/tool-integrity.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ToolAnnotations {
    /// `readOnlyHint`: the tool does not modify its environment.
    pub read_only: Option<bool>,
    /// `destructiveHint`: the tool may perform destructive updates.
    pub destructive: Option<bool>,
    /// `idempotentHint`: calling it again with the same arguments has no further effect.
    pub idempotent: Option<bool>,
    /// `openWorldHint`: the tool reaches an open world of external entities.
    pub open_world: Option<bool>,
}

impl ToolAnnotations {
    /// The hints of a tool definition (a `tools/list` entry); a hint that is not a boolean is
    /// left out.
    pub fn of(tool: &Value) -> Self {
        let hint = |key: &str| {
            tool.get("annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_bool)
        };
        Self {
            read_only: hint("readOnlyHint"),
            destructive: hint("destructiveHint"),
            idempotent: hint("idempotentHint"),
            open_world: hint("openWorldHint"),
        }
    }

    /// The hints as (Cedar attribute name, value), only those present.
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, bool)> {
        [
            ("read_only", self.read_only),
            ("destructive", self.destructive),
            ("idempotent", self.idempotent),
            ("open_world", self.open_world),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_must_agree_and_appear_once() {
        let body = Batch::from_value(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}),
        )
        .unwrap();
        let mut h = http::HeaderMap::new();
        assert!(check_headers(&h, &body).is_ok());
        h.insert("mcp-name", "a".parse().unwrap());
        assert!(check_headers(&h, &body).is_ok());
        h.append("mcp-name", "b".parse().unwrap());
        assert!(check_headers(&h, &body).unwrap_err().contains("twice"));
        h.remove("mcp-name");
        h.insert("mcp-method", "tools/list".parse().unwrap());
        assert!(check_headers(&h, &body).is_err());
    }

    #[test]
    fn list_answers_match_ids_by_value() {
        let mut a = json!({"id": 1.0, "result": {"tools": [{"name": "x"}]}});
        assert_eq!(listed_tools(&mut a, &[json!(1)]).map(|t| t.len()), Some(1));
        assert!(listed_tools(&mut a, &[json!("1")]).is_none());
    }
}
