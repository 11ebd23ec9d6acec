//! `palisade-orchestrator`: runs the reference AG-UI runtime.
//!
//! ```text
//! palisade-orchestrator [-c FILE] [--listen ADDR]
//! ```
//!
//! `config/orchestrator.yaml` lists every setting with its default; `docs/orchestrator.md`
//! explains them. Logs are JSON lines on stdout (`RUST_LOG` filters, default `info`). SIGTERM or
//! SIGINT turns `/readyz` to 503, stops accepting connections and lets in-flight runs finish.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use palisade_orchestrator::{serve, OrchestratorConfig};
use tracing_subscriber::EnvFilter;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "palisade-orchestrator", version, about)]
struct Cli {
    /// YAML configuration file (see OrchestratorConfig); defaults apply without one.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, overriding the file's `listen` (e.g. 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let mut cfg = match &cli.config {
        Some(path) => OrchestratorConfig::load(path)?,
        None => OrchestratorConfig::default(),
    };
    if let Some(listen) = cli.listen {
        cfg.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    serve(listener, cfg, shutdown_signal()).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received, draining in-flight runs");
}
