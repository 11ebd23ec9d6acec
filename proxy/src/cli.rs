//! The `palisade` command line (the commands are listed in the README's "Commands" section).

mod admin;
mod approvals;
mod audit;
mod deploy;
mod keys;
mod policy;
mod serve;
mod tools;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Palisade: a policy sidecar proxy for AI agent runtimes.
#[derive(Debug, Parser)]
#[command(name = "palisade", version = crate::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the embedded-default stack: proxy, admin listener and the bundled orchestrator.
    Dev(serve::DevArgs),
    /// Run in production mode from a config file.
    Run {
        /// The config file (YAML).
        #[arg(short, long, env = "PALISADE_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file; prints every error as `FILE:LINE:COLUMN: field.path: message`, exits 0
    /// only when valid.
    ///
    /// Structural errors (unknown fields, wrong types, missing fields) are all reported at once,
    /// then the semantic ones (unknown upstream, bad address, policies that do not load, …).
    Validate {
        /// The config file (YAML).
        #[arg(
            short,
            long,
            value_name = "FILE",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        config: Option<PathBuf>,
        /// The config file (YAML), as an alternative to `-c`.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Validate the file as written, without the environment: `PALISADE_*` overrides and
        /// `OTEL_EXPORTER_OTLP_*` variables are ignored, and secrets that are absent (an unset
        /// `secret_env` / `*_env` variable, a key or certificate file that does not exist) are
        /// reported as notes instead of errors. For CI on config pull requests, which has no
        /// secrets.
        #[arg(long)]
        no_env: bool,
    },
    /// Config tooling.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Cedar policies: validate strictly, run `run-tests` files, explain one decision, who-can,
    /// diff two sets, export the seed set.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// MCP tool locks: pin what a server's tools are now, diff, approve changes
    /// (docs/tool-integrity.md).
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// API keys: create, list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// JWT revocation on a running proxy.
    #[command(subcommand)]
    Tokens(keys::TokensCommand),
    /// A running proxy's log filter and effective config (admin API).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Human approvals of held calls on a running proxy: list, show, approve, deny.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// The audit trail: verify hash chains, tail decisions.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Probe a running proxy's readiness (exit 0 when ready): for container HEALTHCHECKs and
    /// Kubernetes exec probes, so the image needs no curl.
    Healthcheck(deploy::HealthcheckArgs),
    /// The assertion signing key that replicas share: generate one, print its JWKS.
    #[command(subcommand)]
    AssertionKey(deploy::AssertionKeyCommand),
    /// Print a shell completion script, e.g. `palisade completions bash >
    /// /etc/bash_completion.d/palisade`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (`palisade.1` and one per subcommand) into a directory.
    Man {
        /// The directory (created if missing), e.g. `/usr/local/share/man/man1`.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of the config file.
    Schema,
    /// Print the field reference of the config file as Markdown (docs/config-reference.md).
    Reference,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    // Every client Palisade builds brings its own rustls configuration (`outbound::Trust`);
    // ring as the process default covers one a dependency might build without it.
    palisade_wire::outbound::install_default_provider();
    run(Cli::parse())
}

/// Runs the command given as `args` (the first is the program name), as the binary would; for
/// tests that drive the CLI against a proxy started in-process. Exits on a usage error.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run(Cli::parse_from(args))
}

fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Dev(args) => serve::dev(args),
        Command::Run { config } => serve::run(&config),
        Command::Validate {
            config,
            file,
            no_env,
        } => match config.or(file) {
            Some(path) => validate::run(&path, no_env),
            None => ExitCode::FAILURE,
        },
        Command::Policy(cmd) => policy::run(cmd),
        Command::Tools(cmd) => tools::run(cmd),
        Command::Keys(cmd) => keys::keys(cmd),
        Command::Tokens(cmd) => keys::tokens(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Approvals(cmd) => approvals::run(cmd),
        Command::Healthcheck(args) => deploy::healthcheck(args),
        Command::AssertionKey(cmd) => deploy::assertion_key(cmd),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "palisade",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let written = std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Schema) => {
            print!("{}", crate::config::schema_json());
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Reference) => {
            print!("{}", crate::config::reference::markdown());
            ExitCode::SUCCESS
        }
    }
}
