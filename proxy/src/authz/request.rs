//! What one authorization decision is about — who asks ([`AuthzRequest::principal`]), the
//! action, the resource and the request's facts — before any of it becomes Cedar values
//! ([`super::entities`] builds those; [`super::context`] the context record).

use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::EntityUid;
use serde_json::Value;

use crate::authn::Principal;
use crate::protocol::mcp::ToolAnnotations;

/// Kinds of resource the proxy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `Route::"<route name>"`.
    Route,
    /// `Agent::"<agent name>"`.
    Agent,
    /// `Tool::"<tool name>"`.
    Tool,
    /// `Thread::"<thread id>"`.
    Thread,
}

impl ResourceKind {
    /// The Cedar entity type name.
    pub fn entity_type(self) -> &'static str {
        match self {
            Self::Route => "Route",
            Self::Agent => "Agent",
            Self::Tool => "Tool",
            Self::Thread => "Thread",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "Route" => Self::Route,
            "Agent" => Self::Agent,
            "Tool" => Self::Tool,
            "Thread" => Self::Thread,
            _ => return None,
        })
    }
}

/// A resource: kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Entity type.
    pub kind: ResourceKind,
    /// Entity id.
    pub id: String,
    /// A tool's pinned MCP annotations (its route's tool lock): `read_only`, `destructive`,
    /// `idempotent` and `open_world` attributes on top of the catalog's. `None` otherwise.
    pub hints: Option<ToolAnnotations>,
}

impl Resource {
    /// A resource of `kind` named `id`.
    pub fn new(kind: ResourceKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
            hints: None,
        }
    }

    /// Parses Cedar text such as `Agent::"assistant"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uid =
            EntityUid::from_str(text).map_err(|e| format!("`{text}` is not an entity: {e}"))?;
        let kind = ResourceKind::parse(&uid.type_name().to_string()).ok_or_else(|| {
            format!(
                "`{}` is not a resource type the proxy builds (Route, Agent, Tool, Thread)",
                uid.type_name()
            )
        })?;
        Ok(Self::new(kind, uid.id().unescaped()))
    }

    /// The Cedar uid as text: `Tool::"search"`.
    pub fn uid_text(&self) -> String {
        format!(
            "{}::{}",
            self.kind.entity_type(),
            Value::String(self.id.clone())
        )
    }
}

/// Facts about the HTTP request that make up the Cedar context.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// HTTP method, upper case.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Client address (TCP peer, or the client behind trusted proxies); `0.0.0.0` when unknown.
    pub ip: IpAddr,
    /// A proxy not in `edge.trusted_proxies` relayed the request: `ip` is that proxy's.
    pub forwarded: bool,
    /// When the request arrived.
    pub time: time::OffsetDateTime,
    /// TLS on the client connection.
    pub tls: bool,
    /// Declared body size, 0 when unknown.
    pub request_bytes: u64,
    /// The matched route's name.
    pub route: String,
    /// The matched route's protocol (`http`, `agui`, `mcp`, `a2a`).
    pub protocol: &'static str,
}

/// Everything one decision is about.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// Who is asking; `None` is `Anonymous::"<ip>"`.
    pub principal: Option<&'a Principal>,
    /// Cedar action id (`run_agent`, `call_tool`, …).
    pub action: &'a str,
    /// What it is about.
    pub resource: &'a Resource,
    /// The request's facts.
    pub facts: &'a RequestFacts,
    /// A tool call's arguments (a JSON object), for tool actions.
    pub arguments: Option<&'a Value>,
}
