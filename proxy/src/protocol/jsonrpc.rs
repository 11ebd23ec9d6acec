//! JSON-RPC 2.0, as MCP and A2A speak it: a body is one message or a batch, and a refusal is a
//! JSON-RPC error carrying the request's `id` (for a batch, one answer per request in it).

use serde_json::{json, Value};

use super::json::same_id;
use crate::error::ProxyError;

/// Error code of an authorization denial: in the server-defined range, and outside the codes
/// MCP and A2A (-32001…-32009) give meanings of their own.
pub const FORBIDDEN: i64 = -32030;
/// Error code of a guardrail refusal.
pub const GUARDRAIL: i64 = -32031;
/// Error code of a `tools/call` refused by tool-definition integrity (`TOOL_NOT_APPROVED`).
pub const TOOL_NOT_APPROVED: i64 = -32032;
/// Error code of a malformed or inconsistent request.
pub const INVALID_REQUEST: i64 = -32600;
/// Error code of any other refusal the proxy makes (limits, upstream failures).
pub const SERVER_ERROR: i64 = -32000;

/// The JSON-RPC messages of one request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Each message (an object), in order.
    pub messages: Vec<Value>,
    /// Whether the body was an array.
    pub batch: bool,
}

impl Batch {
    /// Reads a parsed body as JSON-RPC: an object, or a non-empty array of objects, each with
    /// `"jsonrpc": "2.0"` and, for requests, a string `method`.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let (messages, batch) = match value {
            Value::Array(list) if !list.is_empty() => (list, true),
            Value::Array(_) => return Err("an empty batch".into()),
            v @ Value::Object(_) => (vec![v], false),
            _ => return Err("the body is not JSON-RPC".into()),
        };
        for m in &messages {
            let Some(obj) = m.as_object() else {
                return Err("a batch entry is not an object".into());
            };
            if obj.get("jsonrpc").is_some_and(|v| v != "2.0") {
                return Err("`jsonrpc` must be \"2.0\"".into());
            }
            if obj.get("method").is_some_and(|v| !v.is_string()) {
                return Err("`method` must be a string".into());
            }
        }
        Ok(Self { messages, batch })
    }

    /// The whole body again.
    pub fn to_value(&self) -> Value {
        if self.batch {
            Value::Array(self.messages.clone())
        } else {
            self.messages.first().cloned().unwrap_or(Value::Null)
        }
    }

    /// The ids of the requests (messages with an `id`), in order.
    pub fn ids(&self) -> Vec<Value> {
        self.messages
            .iter()
            .filter_map(|m| m.get("id"))
            .cloned()
            .collect()
    }
}

/// The method of a message (`""` for a response or notification without one).
pub fn method(m: &Value) -> &str {
    m.get("method").and_then(Value::as_str).unwrap_or_default()
}

/// The id of a message (`null` when absent).
pub fn id(m: &Value) -> Value {
    m.get("id").cloned().unwrap_or(Value::Null)
}

/// JSON-RPC code, message and HTTP status of a refusal.
fn shape(err: &ProxyError) -> (i64, String, u16) {
    match err {
        ProxyError::Forbidden => (FORBIDDEN, "access denied".into(), 200),
        // A step-up challenge is an HTTP-level answer (403 / 401 with `WWW-Authenticate`, as the
        // MCP authorization spec asks), its body still the JSON-RPC error of a denial.
        ProxyError::InsufficientScope { .. } | ProxyError::StepUpRequired { .. } => {
            (FORBIDDEN, err.to_string(), err.kind().status)
        }
        // A held call refused by its approver or its deadline is a denial, answered like one.
        ProxyError::ApprovalDenied { .. } | ProxyError::ApprovalTimeout => {
            (FORBIDDEN, err.to_string(), 200)
        }
        ProxyError::GuardrailViolation => (GUARDRAIL, "blocked by guardrail".into(), 400),
        // Like a denial: an answer in-protocol, the HTTP exchange itself went fine.
        ProxyError::ToolNotApproved { .. } => (TOOL_NOT_APPROVED, err.to_string(), 200),
        ProxyError::InvalidRequest(why) => (INVALID_REQUEST, why.clone(), 400),
        other => (SERVER_ERROR, other.to_string(), other.kind().status),
    }
}

/// One JSON-RPC error answer.
pub fn error_answer(id: &Value, err: &ProxyError, request_id: &str) -> Value {
    let (code, message, _) = shape(err);
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": code,
            "message": message,
            "data": {"code": err.kind().code, "request_id": request_id}
        }
    })
}

/// The refusal of a whole request body: the HTTP status and the JSON-RPC answer. In a batch,
/// the `culprits` get `err` and every other request a note that the batch was refused with it.
pub fn refusal(
    ids: &[Value],
    culprits: &[Value],
    batch: bool,
    err: &ProxyError,
    request_id: &str,
) -> (u16, Value) {
    let (_, _, status) = shape(err);
    if !batch {
        let id = culprits.first().or(ids.first()).unwrap_or(&Value::Null);
        return (status, error_answer(id, err, request_id));
    }
    let answers = ids
        .iter()
        .map(|id| {
            let mut answer = error_answer(id, err, request_id);
            if !culprits.iter().any(|c| same_id(c, id)) {
                answer["error"]["message"] =
                    Value::from("batch refused: another request in it was refused");
            }
            answer
        })
        .collect();
    (status, Value::Array(answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_answers_every_request_in_it() {
        let ids = vec![json!(1), json!("two"), json!(3)];
        let (status, body) = refusal(&ids, &[json!("two")], true, &ProxyError::Forbidden, "r");
        assert_eq!(status, 200);
        let answers = body.as_array().unwrap();
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[1]["id"], "two");
        assert_eq!(answers[1]["error"]["message"], "access denied");
        assert!(answers[0]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("batch refused"));
        assert_eq!(answers[2]["error"]["data"]["code"], "FORBIDDEN");
        let (_, one) = refusal(&[json!(9)], &[json!(9)], false, &ProxyError::Forbidden, "r");
        assert_eq!(one["id"], 9);
        assert_eq!(one["error"]["code"], FORBIDDEN);
        let (status, g) = refusal(
            &[],
            &[json!(2)],
            false,
            &ProxyError::GuardrailViolation,
            "r",
        );
        assert_eq!(
            (status, g["error"]["code"].as_i64()),
            (400, Some(GUARDRAIL))
        );
    }

    #[test]
    fn bodies_that_are_not_json_rpc_are_refused() {
        for body in [
            json!(42),
            json!([1]),
            json!([]),
            json!({"jsonrpc": "1.0"}),
            json!({"method": 7}),
        ] {
            assert!(Batch::from_value(body.clone()).is_err(), "{body}");
        }
        let b = Batch::from_value(json!([{"id": 1}, {"id": 2}, {"method": "n"}])).unwrap();
        assert!(b.batch);
        assert_eq!(b.ids(), vec![json!(1), json!(2)]);
    }
}
