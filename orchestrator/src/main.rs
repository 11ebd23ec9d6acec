//! `palisade-orchestrator`: runs the reference AG-UI runtime.
//!
//! ```text
//! palisade-orchestrator [-c FILE] [--listen ADDR]
//! palisade-orchestrator validate FILE      # every error with its field path; exit 1 if any
//! palisade-orchestrator config schema      # the JSON Schema of the config file
//! ```
//!
//! `config/orchestrator.yaml` lists every setting with its default; `docs/orchestrator.md`
//! explains them. Logs are JSON lines on stdout (`RUST_LOG` filters, default `info`). SIGTERM or
//! SIGINT turns `/readyz` to 503, stops accepting connections and lets in-flight runs finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands; without one the orchestrator serves.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Checks a config file: prints every error as `FILE: field.path: message`, exits 1 if any.
    Validate {
        /// The YAML file.
        file: PathBuf,
    },
    /// Config file tooling.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `config` subcommands.
#[derive(Debug, clap::Subcommand)]
enum ConfigAction {
    /// Prints the JSON Schema of the config file (committed as
    /// config/schema/orchestrator.schema.json).
    Schema,
}

/// `validate FILE`.
fn validate(path: &Path) -> ExitCode {
    match OrchestratorConfig::load(path) {
        Ok(_) => {
            println!("{}: valid", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            let errors = err.field_errors();
            for e in &errors {
                eprintln!("{}: {}: {}", path.display(), e.path, e.message);
            }
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    // Every client the orchestrator builds brings its own rustls configuration (`tls::Trust`);
    // ring as the process default covers one a dependency might build without it.
    palisade_wire::outbound::install_default_provider();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Validate { file }) => return Ok(validate(file)),
        Some(Command::Config {
            action: ConfigAction::Schema,
        }) => {
            print!("{}", OrchestratorConfig::schema_json());
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
