//! The Palisade reference orchestrator: a slim AG-UI agent runtime for the proxy to sit in front of.
//!
//! - `POST /agent` takes an AG-UI [`RunAgentInput`](palisade_wire::agui::RunAgentInput) and
//!   answers with an SSE stream of AG-UI events (`RUN_STARTED`, `TEXT_MESSAGE_START`,
//!   `TEXT_MESSAGE_CONTENT`…, `TEXT_MESSAGE_END`, `RUN_FINISHED`), produced one by one as the
//!   client reads. The answer comes from the built-in [`OfflineModel`], which echoes the last
//!   user message word by word. A malformed body gets `400` and
//!   `{"error":{"code":"INVALID_REQUEST","message":…}}`.
//! - `GET /healthz` answers `200 ok`.
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
mod config;
mod http;
pub mod idempotency;
mod model;
mod run;
pub mod store;

pub use http::runs::{answer_repeat, routes as session_routes, REPLAYED_HEADER};

use std::future::Future;

pub use config::{ConfigError, OrchestratorConfig};
pub use model::{OfflineModel, GREETING};
pub use run::{run_events, ActiveRuns};

/// The orchestrator's routes, ready to serve.
pub fn router(cfg: OrchestratorConfig) -> axum::Router {
    router_with_runs(cfg, ActiveRuns::default())
}

/// Like [`router`], counting the runs in flight in `runs` (for tests and metrics).
pub fn router_with_runs(cfg: OrchestratorConfig, runs: ActiveRuns) -> axum::Router {
    http::routes(&cfg, runs)
}

/// Serves the orchestrator on `listener` until `shutdown` completes, then stops accepting and
/// waits for in-flight requests (including streams, which are finite) to finish.
///
/// `cfg.listen` is not used here: the caller binds the listener (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: OrchestratorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "palisade-orchestrator listening");
    axum::serve(listener, router(cfg))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!(listen = %local, "palisade-orchestrator stopped");
    Ok(())
}
