//! MCP tools over Streamable HTTP: `initialize`, `tools/list`, `tools/call`.
//!
//! Each run has its own session per server (the session belongs to the caller): `initialize`
//! (keeping the `Mcp-Session-Id` the server hands out, if any), `notifications/initialized`,
//! then `tools/list`; the run's calls reuse that session, and it is closed with `DELETE` when the
//! run ends. A caller's tool list is cached for `tools_cache` (keyed by a hash of the
//! credential, since the proxy filters the list per principal); on a cache hit the session is
//! only opened if the run calls a tool. Answers may be JSON or an SSE stream (progress
//! notifications are skipped until the response with the request's id arrives).
//!
//! Identity: the servers are normally routes on the Palisade proxy, so every request carries
//! the caller's own credential (the `Authorization` the proxy forwarded to the orchestrator on
//! an agent route with `forward_credentials: true`) and the proxy decides `list_tools` and
//! `call_tool` for that same principal. Without a forwarded credential the request goes
//! without one and the proxy treats it as its route's anonymous caller.
//!
//! Why this is not `rmcp` (the official Rust SDK), evaluated 2026-12-07 against rmcp 3.11.0
//! (issue 20). Coverage is not the obstacle: this client speaks Streamable HTTP only (protocol
//! 2025-06-18; there is no HTTP+SSE-era transport here to keep), and rmcp's streamable HTTP
//! client covers that and more (2024-11-05 to 2026-07-28, session re-initialisation on 404,
//! `auth_header` and `custom_headers` per transport). What stops it today:
//! - Dependencies: the workspace is on reqwest 0.13 now, so rmcp's `reqwest-tls-no-provider`
//!   client would share it and could be handed a client from [`crate::tls::Trust`] (ring, the
//!   private CAs of MCP servers); its default `reqwest` feature would bring aws-lc-rs, which the
//!   project avoids. Still new: rmcp, sse-stream, unicode-general-category and a second sha2
//!   (0.11).
//! - Its reqwest client hands refusals back without the proxy's error body: a 401 or 403 with
//!   `WWW-Authenticate` (the proxy's 401s carry one) becomes an auth error holding only that
//!   header, a 429 keeps only its status and `Retry-After`, other non-JSON-RPC bodies become
//!   text. [`McpError::Status`] would lose the `error.code` the model reads (`TOKEN_EXPIRED` vs
//!   `UNAUTHENTICATED`, `RATE_LIMITED`). Keeping it means implementing rmcp's
//!   `StreamableHttpClient` over our own client: about the HTTP code this file already has.
//!
//! So the remaining obstacle is the last one: adopting rmcp means a custom
//! `StreamableHttpClient` so that refusal bodies survive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palisade_wire::sse::{SseItem, SseParser};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{Tool, ToolContext, ToolError};
use crate::config::McpServerConfig;
use crate::model::ToolSpec;

/// The protocol version the orchestrator asks for.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// One configured MCP server.
#[derive(Debug)]
pub struct McpServer {
    name: String,
    url: String,
    http: reqwest::Client,
    cache_ttl: Duration,
    /// Tool lists by SHA-256 of the caller's credential.
    cache: dashmap::DashMap<[u8; 32], (Instant, Arc<Vec<ToolSpec>>)>,
}

/// Most cached tool lists per server; beyond it the cache starts over.
const CACHE_MAX: usize = 10_000;

/// Why an MCP request failed (the text goes back to the model as a tool error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The server (or the proxy in front) could not be reached.
    #[error("MCP server `{server}` unreachable: {detail}")]
    Unreachable {
        /// Configured name.
        server: String,
        /// Why.
        detail: String,
    },
    /// An HTTP error status, with the proxy's error code when its JSON body carried one.
    #[error("MCP server `{server}` refused: {status} {}", code.as_deref().unwrap_or(""))]
    Status {
        /// Configured name.
        server: String,
        /// HTTP status.
        status: u16,
        /// `error.code` of a proxy error body.
        code: Option<String>,
    },
    /// A JSON-RPC error answer (`-32030` is the proxy's policy refusal).
    #[error("{message} (JSON-RPC error {code})")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer was not MCP.
    #[error("malformed MCP answer: {0}")]
    Protocol(String),
}

/// A session with a server, for one run.
#[derive(Debug, Default)]
struct Session {
    /// `initialize` has been answered.
    ready: bool,
    id: Option<String>,
    protocol: Option<String>,
    closer: Option<Closer>,
}

/// What ending a session takes: `DELETE` with its id, as the caller.
#[derive(Debug)]
struct Closer {
    http: reqwest::Client,
    url: String,
    credential: Option<String>,
}

impl Drop for Session {
    /// The run is over (its tools are dropped): tell the server, best effort, so stateful
    /// servers do not keep one session per run until they expire it.
    fn drop(&mut self) {
        let (Some(id), Some(closer)) = (self.id.take(), self.closer.take()) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let mut req = closer.http.delete(&closer.url).header("mcp-session-id", id);
            if let Some(cred) = &closer.credential {
                req = req.header("authorization", cred);
            }
            if let Err(e) = req.send().await {
                tracing::debug!(error = %e.without_url(), "closing an MCP session failed");
            }
        });
    }
}

/// One of a server's tools, bound to the run's session.
pub struct McpTool {
    server: Arc<McpServer>,
    session: Arc<Mutex<Session>>,
    spec: ToolSpec,
}

impl McpServer {
    /// A server from config.
    pub fn new(cfg: &McpServerConfig, timeout: Duration, trust: &crate::tls::Trust) -> Self {
        Self {
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            http: trust
                .client_builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            cache_ttl: cfg.tools_cache,
            cache: dashmap::DashMap::new(),
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tools the caller may see, bound to a session for the run (cached lists reuse the
    /// answer of an earlier run of the same caller).
    pub async fn list(self: &Arc<Self>, ctx: &ToolContext) -> Result<Vec<McpTool>, McpError> {
        let session = Arc::new(Mutex::new(Session {
            ready: false,
            closer: Some(Closer {
                http: self.http.clone(),
                url: self.url.clone(),
                credential: ctx.caller.credential.clone(),
            }),
            id: None,
            protocol: None,
        }));
        let key: [u8; 32] =
            Sha256::digest(ctx.caller.credential.as_deref().unwrap_or_default()).into();
        let cached = self
            .cache
            .get(&key)
            .filter(|hit| hit.0.elapsed() < self.cache_ttl)
            .map(|hit| hit.1.clone());
        let specs = match cached {
            Some(specs) => specs,
            None => {
                let mut s = session.lock().await;
                self.initialize(&mut s, ctx).await?;
                let result = self.request(&mut s, ctx, "tools/list", json!({})).await?;
                let specs = Arc::new(specs_of(&result));
                if !self.cache_ttl.is_zero() {
                    if self.cache.len() >= CACHE_MAX {
                        self.cache.clear();
                    }
                    self.cache.insert(key, (Instant::now(), specs.clone()));
                }
                specs
            }
        };
        Ok(specs
            .iter()
            .map(|spec| McpTool {
                server: self.clone(),
                session: session.clone(),
                spec: spec.clone(),
            })
            .collect())
    }

    async fn initialize(&self, s: &mut Session, ctx: &ToolContext) -> Result<(), McpError> {
        s.ready = false;
        s.id = None;
        s.protocol = None;
        let result = self
            .request(
                s,
                ctx,
                "initialize",
                json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": {"name": "palisade-orchestrator",
                                      "version": env!("CARGO_PKG_VERSION")}}),
            )
            .await?;
        s.protocol = result["protocolVersion"].as_str().map(str::to_owned);
        s.ready = true;
        self.post(
            s,
            ctx,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        Ok(())
    }

    /// Sends one JSON-RPC request and returns its `result`.
    async fn request(
        &self,
        s: &mut Session,
        ctx: &ToolContext,
        method: &str,
        params: Value,
    ) -> Result<Value, McpError> {
        let id = uuid::Uuid::new_v4().to_string();
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.post(s, ctx, &msg).await?;
        let answer = read_answer(resp, &id).await?;
        if let Some(err) = answer.get("error") {
            // The proxy's own code (`error.data.code`, e.g. `APPROVAL_DENIED`) goes with the
            // message: the model and the run's approval events read it.
            let mut message = err["message"].as_str().unwrap_or("refused").to_owned();
            if let Some(code) = err["data"]["code"].as_str() {
                message = format!("{message} [{code}]");
            }
            return Err(McpError::Rpc {
                code: err["code"].as_i64().unwrap_or_default(),
                message,
            });
        }
        Ok(answer["result"].clone())
    }

    /// POSTs one message with the session, protocol, identity and trace headers.
    async fn post(
        &self,
        s: &mut Session,
        ctx: &ToolContext,
        msg: &Value,
    ) -> Result<reqwest::Response, McpError> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(msg);
        if let Some(id) = &s.id {
            req = req.header("mcp-session-id", id);
        }
        if let Some(v) = &s.protocol {
            req = req.header("mcp-protocol-version", v);
        }
        if let Some(cred) = &ctx.caller.credential {
            req = req.header("authorization", cred);
        }
        if let Some(tp) = &ctx.traceparent {
            req = req.header("traceparent", tp);
        }
        if let Some(rid) = &ctx.request_id {
            req = req.header("x-request-id", rid);
        }
        let resp = req.send().await.map_err(|e| McpError::Unreachable {
            server: self.name.clone(),
            detail: e.without_url().to_string(),
        })?;
        if let Some(id) = resp.headers().get("mcp-session-id") {
            s.id = id.to_str().ok().map(str::to_owned);
        }
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            return Err(McpError::Status {
                server: self.name.clone(),
                status: status.as_u16(),
                code,
            });
        }
        Ok(resp)
    }
}

/// The tool specs of a `tools/list` result.
fn specs_of(result: &Value) -> Vec<ToolSpec> {
    result["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(ToolSpec {
                name: t["name"].as_str()?.to_owned(),
                description: t["description"].as_str().unwrap_or_default().to_owned(),
                parameters: t
                    .get("inputSchema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect()
}

/// The JSON-RPC response with id `id`, from a JSON body or an SSE stream.
async fn read_answer(mut resp: reqwest::Response, id: &str) -> Result<Value, McpError> {
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_sse {
        return resp
            .json::<Value>()
            .await
            .map_err(|e| McpError::Protocol(format!("not JSON: {e}")));
    }
    let mut parser = SseParser::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| McpError::Protocol(e.to_string()))?
    {
        let items: Vec<_> = parser.feed(&chunk).collect();
        for item in items {
            let Ok(SseItem::Event(ev)) = item else {
                continue;
            };
            let Some(msg) = ev.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else {
                continue;
            };
            if msg["id"].as_str() == Some(id) {
                return Ok(msg);
            }
        }
    }
    Err(McpError::Protocol(
        "the stream ended without an answer".into(),
    ))
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn source(&self) -> &'static str {
        "mcp"
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let params = json!({"name": self.spec.name, "arguments": args});
        let mut s = self.session.lock().await;
        if !s.ready {
            // The tool list came from the cache: open the run's session now.
            self.server
                .initialize(&mut s, ctx)
                .await
                .map_err(|e| ToolError(e.to_string()))?;
        }
        let mut result = self
            .server
            .request(&mut s, ctx, "tools/call", params.clone())
            .await;
        if matches!(&result, Err(McpError::Status { status: 404, .. })) && s.id.is_some() {
            // The server forgot the session: open a new one and try once more.
            self.server
                .initialize(&mut s, ctx)
                .await
                .map_err(|e| ToolError(e.to_string()))?;
            result = self.server.request(&mut s, ctx, "tools/call", params).await;
        }
        let result = result.map_err(|e| ToolError(e.to_string()))?;
        let text: Vec<String> = result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|part| match part["text"].as_str() {
                Some(t) => t.to_owned(),
                None => part.to_string(),
            })
            .collect();
        let text = text.join("\n");
        if result["isError"].as_bool() == Some(true) {
            return Err(ToolError(text));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests;
