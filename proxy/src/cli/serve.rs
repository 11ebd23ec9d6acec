//! `palisade dev` and `palisade run`: start, print how to call, wait for shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError, EMBEDDED_DEV_CONFIG};
use crate::reload::ConfigSource;
use crate::server::{self, StartOptions};
use crate::telemetry::logging;

/// Flags of `palisade dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Public listener address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin listener address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Address of the bundled orchestrator.
    #[arg(long, default_value = "127.0.0.1:8081")]
    orchestrator: SocketAddr,
    /// Roles of the printed `PALISADE_TOKEN` (repeatable). Default: `admin`, which the seed
    /// policies permit everything; a token for every other seed role is printed too.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

/// The roles of the seed policies (`policies/roles.cedar`).
const SEED_ROLES: [&str; 5] = ["admin", "developer", "agent_operator", "user", "viewer"];

/// `palisade dev`: the embedded-default config with the flags' addresses.
pub fn dev(args: DevArgs) -> ExitCode {
    let mut overrides = vec![
        ("PALISADE_LISTENERS__0__ADDRESS", args.listen.to_string()),
        ("PALISADE_ADMIN__ADDRESS", args.admin.to_string()),
        (
            "PALISADE_UPSTREAMS__ORCHESTRATOR__ADDRESS",
            args.orchestrator.to_string(),
        ),
        (
            "PALISADE_EMBEDDED_ORCHESTRATOR__ADDRESS",
            args.orchestrator.to_string(),
        ),
    ];
    if !args.roles.is_empty() {
        // A YAML flow list; every role is an identity token (checked when the config loads).
        let list = serde_json::to_string(&args.roles).unwrap_or_default();
        overrides.push(("PALISADE_AUTHENTICATION__DEV_ISSUER__ROLES", list));
    }
    // Flags win over the environment, which wins over the file.
    let env = std::env::vars()
        .chain(overrides.into_iter().map(|(k, v)| (k.to_string(), v)))
        .collect::<Vec<_>>();
    serve(
        Config::from_yaml(EMBEDDED_DEV_CONFIG, env.clone()),
        "embedded defaults",
        ConfigSource::embedded(EMBEDDED_DEV_CONFIG, env),
    )
}

/// `palisade run -c FILE`.
pub fn run(path: &Path) -> ExitCode {
    let name = path.display().to_string();
    // Read once: the text loaded is the text hashed and watched for changes.
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{name}: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env: Vec<_> = std::env::vars().collect();
    let config = Config::from_yaml(&text, env.clone());
    if let Err(ConfigError::Invalid(errors)) = &config {
        // Each error with its line and column, as `palisade validate` prints them.
        for d in crate::config::locate_all(&text, errors.clone()) {
            eprintln!("{}", d.render(&name));
        }
        return ExitCode::FAILURE;
    }
    let source = ConfigSource {
        path: Some(path.to_path_buf()),
        text,
        env,
    };
    serve(config, &name, source)
}

/// The warning `palisade run` and `palisade dev` print on stderr when the config turns the dev
/// issuer on: anyone who reads the printed token (or the process output) holds its roles.
pub fn dev_issuer_warning(config: &Config, source: &str) -> Option<String> {
    let dev = config.authentication.dev_issuer.as_ref()?;
    Some(format!(
        "WARNING: the dev issuer is on (authentication.dev_issuer in {source}): Palisade generated \
         a signing key at start and prints bearer tokens (roles [{}], and one per seed role) that every route accepts. This is for local \
         development only; never run it in production (use `issuers` or `api_keys`).",
        dev.roles.join(", ")
    ))
}

fn serve(config: Result<Config, ConfigError>, source: &str, origin: ConfigSource) -> ExitCode {
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            for e in err.field_errors() {
                eprintln!("{source}: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    logging::init(config.log_format, &config.log_level);
    if let Some(warning) = dev_issuer_warning(&config, source) {
        eprintln!("{warning}");
    }
    let running = match server::start(
        config.clone(),
        StartOptions {
            handle_signals: true,
            source: Some(origin),
        },
    ) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("palisade: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&config, &running);
    running.wait();
    tracing::info!("shutdown complete");
    // pingora's own threads are still in their grace period; everything they served is done.
    std::process::exit(0)
}

fn print_banner(config: &Config, running: &server::Running) {
    let proxy = running.listeners[0];
    let scheme = if config.listeners[0].tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("Palisade is up.");
    println!("  proxy   {scheme}://{proxy}");
    println!(
        "  admin   http://{}  (/healthz /readyz /metrics)",
        running.admin
    );
    if let Some(orch) = running.orchestrator {
        println!("  orchestrator (bundled, offline model)  http://{orch}");
    }
    // The dev token is printed whatever the routes are (MCP- or A2A-only configs need it too).
    let auth = match running.authn.dev_token() {
        Some(token) => {
            let about = match &config.authentication.dev_issuer {
                Some(dev) => format!(
                    " (roles: {}; valid {})",
                    dev.roles.join(", "),
                    humantime::format_duration(dev.token_ttl)
                ),
                None => String::new(),
            };
            println!();
            println!("A token from the dev issuer{about}:");
            println!("export PALISADE_TOKEN={token}");
            // Policies permit `admin` everything: the other seed roles show them deciding.
            let main_roles = config
                .authentication
                .dev_issuer
                .as_ref()
                .map(|d| d.roles.clone())
                .unwrap_or_default();
            let others: Vec<_> = SEED_ROLES
                .iter()
                .filter(|r| main_roles.len() != 1 || main_roles[0] != **r)
                .filter_map(|r| {
                    let token = running
                        .authn
                        .dev_token_for(&format!("dev-{r}"), &[r.to_string()])?;
                    Some((r, token))
                })
                .collect();
            if !others.is_empty() {
                println!("Tokens for the other seed roles (try one in place of PALISADE_TOKEN; a viewer may not run agents):");
                for (role, token) in others {
                    println!(
                        "export PALISADE_TOKEN_{}={token}",
                        role.to_ascii_uppercase()
                    );
                }
            }
            " -H \"authorization: Bearer $PALISADE_TOKEN\""
        }
        None => "",
    };
    if let Some(route) = config
        .routes
        .routes()
        .iter()
        .find(|r| r.path_prefix == "/agent")
    {
        println!();
        println!(
            "Stream an agent run through the proxy (route `{}`):",
            route.name
        );
        println!(
            "  curl -N -X POST {scheme}://{proxy}/agent{auth} -H 'content-type: application/json' \
             -H 'accept: text/event-stream' \\\n    -d '{{\"threadId\":\"t1\",\"runId\":\"r1\",\
             \"messages\":[{{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hello from behind palisade\"}}],\
             \"tools\":[],\"context\":[],\"state\":{{}},\"forwardedProps\":{{}}}}'"
        );
        if auth.is_empty() && route.auth == crate::route::AuthRequirement::Required {
            println!(
                "  (the route requires authentication, so without credentials this gets 401: add \
                 -H \"authorization: Bearer <token>\" with a JWT from a configured issuer or an API \
                 key from `palisade keys create`; docs/authentication.md)"
            );
        }
    }
    println!();
    println!("Stop with Ctrl-C (drains live streams first; press again to exit at once).");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_issuer_is_announced_with_a_warning() {
        let env = Vec::<(String, String)>::new();
        let dev = Config::from_yaml(EMBEDDED_DEV_CONFIG, env.clone()).unwrap();
        let warning = dev_issuer_warning(&dev, "prod.yaml").expect("a warning");
        assert!(warning
            .starts_with("WARNING: the dev issuer is on (authentication.dev_issuer in prod.yaml)"));
        assert!(warning.contains("never run it in production"));
        let without = Config::from_yaml("listeners: [{address: \"127.0.0.1:0\"}]", env).unwrap();
        assert_eq!(dev_issuer_warning(&without, "prod.yaml"), None);
    }
}
