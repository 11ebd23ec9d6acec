//! `delegate_to_agent`: hands a task to a configured remote A2A agent (see `a2a.rs`).
//!
//! The agent is named, not addressed: only agents listed in `a2a.agents` can be reached, so
//! a model cannot be talked into posting to arbitrary URLs. The caller's forwarded credential
//! and the trace context go with every attempt (agents are normally routes on the proxy, whose
//! `a2a_send` policy then decides). The result — completed text or a failure status such as
//! `ERROR_TIMEOUT` / `ERROR_MAX_RETRIES` — goes back to the model as JSON; a failed delegation
//! is a tool error, so the model can recover.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::{Tool, ToolContext, ToolError};
use crate::a2a::{A2aClient, A2aOutcome};
use crate::model::ToolSpec;

/// The delegation tool.
pub struct DelegateToAgent {
    client: Arc<A2aClient>,
}

impl DelegateToAgent {
    /// The tool over `client`'s configured agents.
    pub fn new(client: Arc<A2aClient>) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Tool for DelegateToAgent {
    fn spec(&self) -> ToolSpec {
        let names: Vec<&String> = self.client.agents().keys().collect();
        ToolSpec {
            name: "delegate_to_agent".into(),
            description: "Send a task to a remote agent (A2A) and return its answer.".into(),
            parameters: json!({"type": "object", "required": ["agent", "task"], "properties": {
                "agent": {"type": "string", "enum": names},
                "task": {"type": "string"}}}),
        }
    }

    fn source(&self) -> &'static str {
        "a2a"
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let agent = args["agent"].as_str().unwrap_or_default();
        let task = args["task"]
            .as_str()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ToolError("`task` (a string) is required".into()))?;
        let url = self.client.agent(agent).ok_or_else(|| {
            let known: Vec<&String> = self.client.agents().keys().collect();
            ToolError(format!("unknown agent `{agent}`; configured: {known:?}"))
        })?;
        let mut headers = HeaderMap::new();
        if let Some(cred) = ctx
            .caller
            .credential
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert("authorization", cred);
        }
        if let Some(tp) = ctx
            .traceparent
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert("traceparent", tp);
        }
        let outcome = self.client.send_with_headers(url, task, &headers).await;
        let result = outcome.to_tool_result().to_string();
        match outcome {
            A2aOutcome::Completed { .. } => Ok(result),
            A2aOutcome::Failed { .. } => Err(ToolError(result)),
        }
    }
}
