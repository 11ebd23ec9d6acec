//! [`Message`]: a request body on an inspected route, parsed once.
//!
//! The pipeline holds the body of every request on an `agui`, `mcp` or `a2a` route (whatever
//! its method or declared content type), parses it here once with [`super::json::parse`], and
//! hands the one parsed value to each inspecting stage in turn (guardrails may redact it,
//! authorization may remove tools). What goes upstream is [`Message::encode`] of that value —
//! never the original bytes — so the upstream reads exactly what the stages decided on.

use bytes::Bytes;
use serde_json::Value;

use super::json;
use super::jsonrpc::Batch;
use super::RouteProtocol;
use crate::error::ProxyError;

/// A parsed request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// AG-UI `RunAgentInput` (a JSON object).
    Agui(Value),
    /// MCP or A2A JSON-RPC (one message or a batch).
    JsonRpc(Batch),
}

impl Message {
    /// Parses a whole body of a `protocol` route. `Ok(None)` for an empty body (a bodiless
    /// `GET`/`DELETE`); `Err` when the body is not one unambiguous document of the dialect.
    pub fn parse(protocol: RouteProtocol, body: &[u8]) -> Result<Option<Self>, ProxyError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let invalid = |why: String| ProxyError::InvalidRequest(why);
        let value =
            json::parse(body).map_err(|e| invalid(format!("body: not valid JSON ({e})")))?;
        Ok(Some(match protocol {
            RouteProtocol::Agui => {
                if !value.is_object() {
                    return Err(invalid("body: expected a RunAgentInput object".into()));
                }
                Self::Agui(value)
            }
            RouteProtocol::Mcp | RouteProtocol::A2a => {
                Self::JsonRpc(Batch::from_value(value).map_err(invalid)?)
            }
            RouteProtocol::Http => return Ok(None),
        }))
    }

    /// The bytes to forward: the parsed value, re-serialized.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Agui(v) => json::to_bytes(v),
            Self::JsonRpc(b) => json::to_bytes(&b.to_value()),
        }
    }

    /// The JSON-RPC batch, when the body is one.
    pub fn jsonrpc(&self) -> Option<&Batch> {
        match self {
            Self::JsonRpc(b) => Some(b),
            Self::Agui(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_once_or_are_refused() {
        assert_eq!(Message::parse(RouteProtocol::Mcp, b"  ").unwrap(), None);
        let m = Message::parse(RouteProtocol::Agui, br#"{"threadId":"t"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(&m.encode()[..], br#"{"threadId":"t"}"#);
        for (p, body) in [
            (RouteProtocol::Agui, &b"[1]"[..]),
            (RouteProtocol::Agui, b"not json"),
            (RouteProtocol::Mcp, b"42"),
            (
                RouteProtocol::Mcp,
                br#"{"method":"tools/call","method":"ping"}"#,
            ),
            (RouteProtocol::A2a, br#"[{"id":1},2]"#),
        ] {
            let err = Message::parse(p, body).expect_err("refused");
            assert_eq!(
                err.kind().code,
                "INVALID_REQUEST",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
