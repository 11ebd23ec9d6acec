//! Tools a run may call: built-ins, MCP servers' tools, and A2A delegation.
//!
//! [`ToolCatalog`] is built once at start; for each run [`ToolCatalog::toolbox`] lists what
//! the caller may use (MCP tools are listed through the proxy with the caller's credential, so
//! the proxy's `list_tools` policy already filtered them; `tools.roles` gates any tool by the
//! caller's roles from the assertion) into a [`Toolbox`]. A call that fails
//! (unknown tool, bad arguments, timeout, a refusal by the proxy) is an `Err` the run loop
//! hands back to the model as an error result — tools never end a run.

pub mod builtin;
pub mod delegate;
pub mod mcp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::identity::Caller;
use crate::metrics::Metrics;
use crate::model::ToolSpec;

/// What a tool knows about the call it serves.
#[derive(Debug, Clone, Default)]
pub struct ToolContext {
    /// The verified caller (principal, roles, forwarded credential).
    pub caller: Caller,
    /// The `traceparent` for outgoing requests (a child of the proxy's span).
    pub traceparent: Option<String>,
    /// The run.
    pub run_id: String,
    /// This call's `X-Request-Id` (set per tool call): the proxy's approval announcement names
    /// it ([`crate::approvals`]).
    pub request_id: Option<String>,
}

/// Why a tool call failed; the text goes back to the model.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// One callable tool.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Name, description and argument schema, as offered to the model.
    fn spec(&self) -> ToolSpec;

    /// Where the tool runs, for metrics: `builtin`, `mcp` or `a2a`.
    fn source(&self) -> &'static str;

    /// Runs the tool with JSON `args`; the result text goes back to the model.
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError>;
}

/// The tools configured at start.
pub struct ToolCatalog {
    builtins: Vec<Arc<dyn Tool>>,
    mcp: Vec<Arc<mcp::McpServer>>,
    timeout: Duration,
    roles: BTreeMap<String, Vec<String>>,
}

impl ToolCatalog {
    /// A catalog of `builtins` (always offered) and MCP servers (listed per run).
    pub fn new(
        builtins: Vec<Arc<dyn Tool>>,
        mcp: Vec<Arc<mcp::McpServer>>,
        timeout: Duration,
    ) -> Self {
        Self {
            builtins,
            mcp,
            timeout,
            roles: BTreeMap::new(),
        }
    }

    /// Gates tools by role: a tool named in `roles` is only for callers holding one of its
    /// roles (others neither see nor call it).
    pub fn with_roles(mut self, roles: BTreeMap<String, Vec<String>>) -> Self {
        self.roles = roles;
        self
    }

    /// The tools `ctx.caller` may use in one run. An MCP server that cannot be listed is left
    /// out (logged), not fatal: the run goes on with the other tools.
    pub async fn toolbox(&self, ctx: &ToolContext) -> Toolbox {
        let mut tools: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        for tool in &self.builtins {
            tools.insert(tool.spec().name, tool.clone());
        }
        let listed = futures::future::join_all(self.mcp.iter().map(|server| async move {
            let listed = tokio::time::timeout(self.timeout, server.list(ctx)).await;
            (server, listed)
        }))
        .await;
        for (server, listed) in listed {
            match listed {
                Ok(Ok(server_tools)) => {
                    for t in server_tools {
                        // Built-ins win a name clash: a server cannot shadow them.
                        tools.entry(t.spec().name).or_insert(Arc::new(t));
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(mcp.server = %server.name(), error = %e, "cannot list MCP tools")
                }
                Err(_) => {
                    tracing::warn!(mcp.server = %server.name(), "listing MCP tools timed out")
                }
            }
        }
        let (allowed, withheld): (BTreeMap<_, _>, BTreeMap<_, _>) =
            tools.into_iter().partition(|(name, _)| {
                self.roles
                    .get(name)
                    .is_none_or(|need| need.iter().any(|r| ctx.caller.has_role(r)))
            });
        Toolbox {
            tools: allowed,
            withheld: withheld.into_keys().collect(),
            timeout: self.timeout,
        }
    }
}

/// The tools of one run.
pub struct Toolbox {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// Tools the caller's roles do not allow (`tools.roles`).
    withheld: std::collections::BTreeSet<String>,
    timeout: Duration,
}

impl Toolbox {
    /// A toolbox of exactly `tools` (tests).
    pub fn of(tools: Vec<Arc<dyn Tool>>, timeout: Duration) -> Self {
        Self {
            tools: tools.into_iter().map(|t| (t.spec().name, t)).collect(),
            withheld: Default::default(),
            timeout,
        }
    }

    /// The specs offered to the model, sorted by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Calls `name` with the JSON text `arguments`, bounded by the tool timeout.
    pub async fn call(
        &self,
        name: &str,
        arguments: &str,
        ctx: &ToolContext,
        metrics: &Metrics,
    ) -> Result<String, ToolError> {
        let Some(tool) = self.tools.get(name) else {
            metrics.tool_call("unknown", "error", Duration::ZERO);
            if self.withheld.contains(name) {
                return Err(ToolError(format!(
                    "`{name}` is not available to this caller"
                )));
            }
            return Err(ToolError(format!("unknown tool `{name}`")));
        };
        let args: Value = if arguments.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(arguments)
                .map_err(|e| ToolError(format!("arguments are not JSON: {e}")))?
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, tool.call(args, ctx)).await {
            Ok(result) => result,
            Err(_) => Err(ToolError(format!(
                "`{name}` timed out after {} ms",
                self.timeout.as_millis()
            ))),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics.tool_call(tool.source(), outcome, started.elapsed());
        result
    }
}
