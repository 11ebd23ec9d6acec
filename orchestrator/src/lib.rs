//! The Palisade reference orchestrator: a slim AG-UI agent runtime for the proxy to sit in front of.
//!
//! - `POST /agent` takes an AG-UI [`RunAgentInput`](palisade_wire::agui::RunAgentInput) and
//!   answers with an SSE stream of AG-UI events, produced as the client reads: the model's text,
//!   tool calls and their results, plan steps, and `RUN_FINISHED` or `RUN_ERROR` last. The
//!   caller is known only through the proxy's signed `X-Palisade-Assertion` ([`identity`]); a
//!   call without one gets `401`.
//! - Models ([`model`]): the built-in deterministic [`OfflineModel`] (default) or any
//!   OpenAI-compatible endpoint. Tools ([`tools`]): built-ins, MCP servers over Streamable HTTP,
//!   and A2A delegation ([`a2a`]).
//! - Sessions ([`store`]: SQLite or PostgreSQL) back `GET /runs/{id}` and `GET /threads/{id}`;
//!   `Idempotency-Key` ([`idempotency`]) replays a finished run instead of running it twice.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` ([`metrics`]); the proxy's `traceparent` is
//!   continued ([`trace`]); shutdown stops accepting and lets in-flight runs finish.
//!
//! A client that disconnects cancels its run: the event stream is dropped and no task outlives it.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use palisade_orchestrator::{serve, OrchestratorConfig};
//!
//! let cfg = OrchestratorConfig::default();
//! let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
//! serve(listener, cfg, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod a2a;
pub mod approvals;
mod config;
mod http;
pub mod idempotency;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod otel;
mod run;
pub mod store;
pub mod tls;

pub use http::runs::{answer_repeat, repeat, routes as session_routes, REPLAYED_HEADER};
pub mod tools;
pub mod trace;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use jsonwebtoken::jwk::JwkSet;

pub use config::{
    ConfigError, FieldError, IdentityConfig, McpServerConfig, ModelConfig, ModelProvider,
    OrchestratorConfig, TlsConfig, ToolsConfig,
};
pub use http::ASSERTION_HEADER;
pub use model::{OfflineModel, GREETING};
pub use run::{run_events, ActiveRuns, RunRequest, Runtime};

/// An orchestrator being assembled: configuration plus what a host process hands in.
pub struct Orchestrator {
    cfg: OrchestratorConfig,
    jwks: Option<JwkSet>,
    runs: ActiveRuns,
    metrics: metrics::Metrics,
    draining: Arc<AtomicBool>,
}

impl Orchestrator {
    /// From configuration.
    pub fn new(cfg: OrchestratorConfig) -> Self {
        Self {
            cfg,
            jwks: None,
            runs: ActiveRuns::default(),
            metrics: metrics::Metrics::default(),
            draining: Arc::default(),
        }
    }

    /// Verifies assertions against `jwks` instead of fetching `identity.jwks_url` (the proxy
    /// hands its embedded orchestrator the signer's public keys this way).
    pub fn with_jwks(mut self, jwks: JwkSet) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// Counts runs in flight in `runs` (tests).
    pub fn with_runs(mut self, runs: ActiveRuns) -> Self {
        self.runs = runs;
        self
    }

    /// Opens the session store and idempotency backend and builds the routes.
    pub async fn router(&self) -> anyhow::Result<axum::Router> {
        Ok(self.build().await?.0)
    }

    /// The routes and the span exporter (to flush at shutdown).
    async fn build(&self) -> anyhow::Result<(axum::Router, otel::Telemetry)> {
        let cfg = &self.cfg;
        let trust = tls::trust(&cfg.tls, |k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("outbound TLS trust: {e}"))?;
        let telemetry = otel::Telemetry::start(&cfg.tracing, &trust).context("tracing")?;
        let store = store::open(&cfg.store, &trust)
            .await
            .context("opening the session store")?;
        // Sweeps at start and every `sweep_interval`; ends when the store is dropped.
        store::spawn_sweeper(&store, cfg.store.retention().clone());
        let idempotency =
            idempotency::open(&cfg.idempotency).context("opening the idempotency store")?;
        let tool_timeout = cfg.tools.timeout;
        let mut builtins = tools::builtin::all(&cfg.tools);
        if !cfg.a2a.agents.is_empty() {
            let client = a2a::A2aClient::new(&cfg.a2a, &trust).context("a2a")?;
            builtins.push(Arc::new(tools::delegate::DelegateToAgent::new(Arc::new(
                client,
            ))));
        }
        let mcp = cfg
            .mcp_servers
            .iter()
            .map(|s| Arc::new(tools::mcp::McpServer::new(s, tool_timeout, &trust)))
            .collect();
        let runtime = Arc::new(Runtime {
            model: model::build(&cfg.model, cfg.word_delay, &trust),
            catalog: Arc::new(
                tools::ToolCatalog::new(builtins, mcp, tool_timeout)
                    .with_roles(cfg.tools.roles.clone()),
            ),
            max_iterations: cfg.max_iterations.max(1),
            store: Some(store.clone()),
            metrics: self.metrics.clone(),
            runs: self.runs.clone(),
            telemetry: telemetry.clone(),
            approvals: Default::default(),
        });
        let routes = http::routes(http::AppState {
            runtime,
            verifier: identity::Verifier::new(&cfg.identity, self.jwks.clone(), &trust),
            store,
            idempotency,
            idempotency_ttl: cfg.idempotency.ttl,
            draining: self.draining.clone(),
        });
        Ok((routes, telemetry))
    }

    /// Serves on `listener` until `shutdown` completes: `/readyz` turns `503`, the listener
    /// stops accepting, and in-flight requests (runs are finite: `max_iterations`, timeouts)
    /// finish.
    ///
    /// `cfg.listen` is not used here: the caller binds the listener (tests bind port 0).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (router, telemetry) = self.build().await?;
        let local = listener.local_addr()?;
        tracing::info!(listen = %local, model = ?self.cfg.model.provider, "palisade-orchestrator listening");
        let draining = self.draining.clone();
        let runs = self.runs.clone();
        // Frames are small and written one by one: without TCP_NODELAY, Nagle's algorithm
        // holds each behind the peer's delayed ACK (~40 ms per run through the proxy).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.store(true, Ordering::SeqCst);
                tracing::info!(runs.active = runs.get(), "shutting down: draining runs");
            })
            .await?;
        // The batch exporter's flush blocks: off the async workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        tracing::info!(listen = %local, "palisade-orchestrator stopped");
        Ok(())
    }
}

/// Serves the orchestrator configured by `cfg` on `listener` until `shutdown` completes (see
/// [`Orchestrator::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: OrchestratorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Orchestrator::new(cfg).serve(listener, shutdown).await
}
