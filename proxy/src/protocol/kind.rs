//! [`RouteProtocol`]: which wire dialect a route speaks. A leaf type: every concern keys its
//! inspection on it, so it imports nothing of the crate.

use schemars::JsonSchema;
use serde::Deserialize;

/// Protocol of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteProtocol {
    /// Plain HTTP; SSE responses still stream event by event.
    #[default]
    Http,
    /// AG-UI: `RunAgentInput` in, AG-UI events out over SSE.
    Agui,
    /// MCP Streamable HTTP (JSON-RPC).
    Mcp,
    /// A2A (JSON-RPC over HTTP, SSE for streaming).
    A2a,
}

impl RouteProtocol {
    /// `http`, `agui`, `mcp`, `a2a` (metrics labels, Cedar context).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Agui => "agui",
            Self::Mcp => "mcp",
            Self::A2a => "a2a",
        }
    }

    /// Whether request bodies and responses of this route are read as a dialect (AG-UI, MCP,
    /// A2A): inspection is keyed on the route's protocol, never on the method or content type.
    pub fn is_inspected(self) -> bool {
        !matches!(self, Self::Http)
    }
}
