//! `palisade admin log-level [FILTER]` and `palisade admin config`: the admin API of a running
//! proxy (`docs/operations.md#runtime-log-level-and-effective-config`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Runtime operations on a running proxy, through its admin listener.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print the log filter in force; with FILTER (`EnvFilter` syntax, e.g. `debug` or
    /// `info,palisade_proxy::authn=trace`), replace it until the next restart.
    LogLevel {
        /// The new filter. Default: print the current one.
        filter: Option<String>,
        #[command(flatten)]
        admin: AdminClientArgs,
    },
    /// Print the effective config (file, environment overrides and defaults) as JSON, with
    /// credentials redacted.
    Config {
        #[command(flatten)]
        admin: AdminClientArgs,
    },
}

/// How to reach and authenticate to the admin listener.
#[derive(Debug, Args)]
pub struct AdminClientArgs {
    /// The proxy's admin address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub(super) admin: String,
    /// The admin token itself (instead of `--token-file`).
    #[arg(long, env = "PALISADE_ADMIN_TOKEN", hide_env_values = true)]
    pub(super) token: Option<String>,
    /// The file holding the admin token (`authentication.revocation.admin_token_file` of the
    /// proxy; a leading `{tmp}` is the OS temp dir). Default: the one `palisade dev` uses.
    #[arg(long, default_value = "{tmp}/palisade-dev/admin-token")]
    pub(super) token_file: String,
}

impl AdminClientArgs {
    /// The admin token: `--token`, else the file `--token-file` names.
    pub(super) fn admin_token(&self) -> anyhow::Result<String> {
        match &self.token {
            Some(token) => Ok(token.clone()),
            None => crate::authn::admin_token::read(&self.token_file),
        }
    }

    /// Sends the request `build` makes for `path` on the admin listener with the admin token,
    /// and prints the answer (its JSON pretty-printed) on stdout; errors go to stderr as
    /// `palisade <command>: …`.
    pub(super) fn call(
        &self,
        command: &str,
        path: &str,
        build: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> ExitCode {
        let token = match self.admin_token() {
            Ok(token) => token,
            Err(e) => {
                eprintln!("palisade {command}: {e:#} (pass --token or --token-file)");
                return ExitCode::FAILURE;
            }
        };
        let url = format!("http://{}{path}", self.admin);
        let answer = super::keys::block_on(async {
            let client = crate::outbound::Trust::default()
                .client_builder()
                .no_proxy()
                .build()?;
            let resp = build(&client, &url).bearer_auth(token).send().await?;
            let status = resp.status();
            Ok((status, resp.text().await?))
        });
        match answer {
            Ok((status, body)) if status.is_success() => {
                let pretty = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or(body);
                println!("{pretty}");
                ExitCode::SUCCESS
            }
            Ok((status, body)) => {
                eprintln!("palisade {command}: {url}: {status}: {}", body.trim());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("palisade {command}: {url}: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs an admin command; prints the answer's JSON on stdout.
pub fn run(cmd: AdminCommand) -> ExitCode {
    let (args, filter, path) = match cmd {
        AdminCommand::LogLevel { filter, admin } => (admin, filter, "/admin/logging"),
        AdminCommand::Config { admin } => (admin, None, "/admin/config"),
    };
    args.call("admin", path, |client, url| match filter {
        Some(filter) => client.put(url).body(filter),
        None => client.get(url),
    })
}
