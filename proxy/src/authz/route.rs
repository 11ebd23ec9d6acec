//! [`RouteAuthz`]: how one route's requests map to a Cedar `(action, resource)`.

use http::Method;

use super::request::{Resource, ResourceKind};
use super::spec::{DeniedToolCall, RouteAuthzSpec};
use crate::protocol::mcp::ToolAnnotations;
use crate::protocol::RouteProtocol;

/// An action on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Cedar action id.
    pub action: String,
    /// The resource.
    pub resource: Resource,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: Vec<Method>,
    path_prefix: String,
    target: Target,
}

/// A route's compiled authorization mapping.
#[derive(Debug, Clone)]
pub struct RouteAuthz {
    rules: Vec<Rule>,
    default: Target,
    /// The agent behind the route (`Agent::"<agent>"`).
    pub agent: String,
    /// What AG-UI streams do with denied tool calls.
    pub denied_tool_call: DeniedToolCall,
    /// The route's protocol.
    pub protocol: RouteProtocol,
    /// The pinned annotations of the route's MCP tools (from its tool lock): Cedar attributes
    /// of `Tool::"<name>"` on this route. Empty without `tool_integrity`.
    pub tool_hints: std::sync::Arc<std::collections::HashMap<String, ToolAnnotations>>,
}

impl Default for RouteAuthz {
    /// `http_request` on `Route::""`: a placeholder for routes built outside the config.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: Target {
                action: "http_request".into(),
                resource: Resource::new(ResourceKind::Route, ""),
            },
            agent: String::new(),
            denied_tool_call: DeniedToolCall::Drop,
            protocol: RouteProtocol::Http,
            tool_hints: Default::default(),
        }
    }
}

impl RouteAuthz {
    /// Compiles a route's `authorization:`; errors come with their path below it
    /// (`rules[0].resource`).
    pub fn from_spec(
        route: &str,
        protocol: RouteProtocol,
        spec: &RouteAuthzSpec,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let agent = spec.agent.clone().unwrap_or_else(|| route.to_string());
        let mut rules = Vec::new();
        for (i, r) in spec.rules.iter().enumerate() {
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                match Method::from_bytes(m.as_bytes()) {
                    Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(method),
                    _ => errors.push((
                        format!("rules[{i}].methods[{j}]"),
                        format!("`{m}` is not an upper-case HTTP method"),
                    )),
                }
            }
            if !r.path_prefix.starts_with('/') {
                errors.push((
                    format!("rules[{i}].path_prefix"),
                    "must start with `/`".into(),
                ));
            }
            if r.action.is_empty() || r.action.contains(['"', ':']) {
                errors.push((
                    format!("rules[{i}].action"),
                    "an action id such as `run_agent` (without `Action::`)".into(),
                ));
            }
            match Resource::parse(&r.resource) {
                Ok(resource) => rules.push(Rule {
                    methods,
                    path_prefix: r.path_prefix.clone(),
                    target: Target {
                        action: r.action.clone(),
                        resource,
                    },
                }),
                Err(e) => errors.push((format!("rules[{i}].resource"), e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let default = match protocol {
            RouteProtocol::Agui => Target {
                action: "run_agent".into(),
                resource: Resource::new(ResourceKind::Agent, agent.clone()),
            },
            _ => Target {
                action: "http_request".into(),
                resource: Resource::new(ResourceKind::Route, route),
            },
        };
        Ok(Self {
            rules,
            default,
            agent,
            denied_tool_call: spec.denied_tool_call,
            protocol,
            tool_hints: Default::default(),
        })
    }

    /// The request-level target for `method` and `path`: the first matching rule, else the
    /// protocol's default.
    pub fn target(&self, method: &Method, path: &str) -> &Target {
        self.rules
            .iter()
            .find(|r| {
                (r.methods.is_empty() || r.methods.contains(method))
                    && prefix_matches(&r.path_prefix, path)
            })
            .map_or(&self.default, |r| &r.target)
    }

    /// Every `(action, resource type)` this route may ask about, so a policy set whose schema
    /// lacks one is refused at load instead of denying at run time.
    pub fn required_targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = self.rules.iter().map(|r| r.target.clone()).collect();
        out.push(self.default.clone());
        let tool = |action: &str| Target {
            action: action.into(),
            resource: Resource::new(ResourceKind::Tool, "*"),
        };
        let agent = |action: &str| Target {
            action: action.into(),
            resource: Resource::new(ResourceKind::Agent, self.agent.clone()),
        };
        match self.protocol {
            RouteProtocol::Agui => out.push(tool("use_tool")),
            RouteProtocol::Mcp => {
                out.push(tool("call_tool"));
                out.push(tool("list_tools"));
            }
            RouteProtocol::A2a => {
                for a in ["a2a_send", "a2a_stream", "a2a_get_task", "a2a_cancel"] {
                    out.push(agent(a));
                }
            }
            RouteProtocol::Http => {}
        }
        out
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}
