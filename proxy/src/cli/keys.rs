//! `palisade keys create|list|revoke` and `palisade tokens revoke`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::authn::apikey::SharedApiKeys;
use crate::authn::apikey::{self, KeysFile};

/// API key management (the keys file named by `authentication.api_keys.file`).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints the secret token once.
    Create {
        #[command(flatten)]
        store: KeyStoreArgs,
        /// Who the key belongs to.
        #[arg(long)]
        owner: String,
        /// Roles (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Scopes (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Rate-limit tier.
        #[arg(long)]
        tier: Option<String>,
        /// Lifetime, e.g. `90d`; default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        store: KeyStoreArgs,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        store: KeyStoreArgs,
        /// The key id.
        id: String,
    },
}

/// Where the keys live: a YAML file or a Redis hash (what `authentication.api_keys` points at).
#[derive(Debug, clap::Args)]
pub struct KeyStoreArgs {
    #[command(flatten)]
    source: KeySource,
    /// The Redis hash (with `--redis` or `--redis-cluster`; `api_keys.redis_key`).
    #[arg(long, default_value = "palisade:apikeys", conflicts_with = "file")]
    redis_key: String,
}

/// Exactly one place the keys are kept.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct KeySource {
    /// The keys file.
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// A standalone Redis (`redis://host:port`) holding the keys (`api_keys.redis_url`).
    #[arg(long)]
    redis: Option<String>,
    /// A Redis Cluster's seed node (`redis://host:port`); repeat for more
    /// (`api_keys.redis_cluster`).
    #[arg(long)]
    redis_cluster: Vec<String>,
}

impl KeyStoreArgs {
    /// The Redis store, when the keys are in Redis.
    fn redis(&self) -> Option<SharedApiKeys> {
        SharedApiKeys::new(
            self.source.redis.as_deref(),
            &self.source.redis_cluster,
            &self.redis_key,
        )
    }

    fn load(&self) -> anyhow::Result<Vec<apikey::KeyRecord>> {
        match (&self.source.file, self.redis()) {
            (Some(file), _) => Ok(KeysFile::load(file)?.keys),
            (None, Some(store)) => block_on(async { Ok(store.load().await?) }),
            (None, None) => anyhow::bail!("give --file, --redis or --redis-cluster"),
        }
    }

    /// Saves `changed` (the whole list for a file; just that record for Redis).
    fn save(&self, all: Vec<apikey::KeyRecord>, changed: &apikey::KeyRecord) -> anyhow::Result<()> {
        match (&self.source.file, self.redis()) {
            (Some(file), _) => KeysFile { keys: all }.save(file),
            (None, Some(store)) => block_on(async { Ok(store.store(changed).await?) }),
            (None, None) => anyhow::bail!("give --file, --redis or --redis-cluster"),
        }
    }
}

pub(super) fn block_on<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Token revocation.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke a JWT by its `jti` on a running proxy (through its admin listener).
    Revoke {
        /// The token's `jti`.
        jti: String,
        /// The proxy's admin address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
        /// The admin token itself (instead of `--token-file`).
        #[arg(long, env = "PALISADE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The file holding the admin token (`authentication.revocation.admin_token_file` of
        /// the proxy; a leading `{tmp}` is the OS temp dir). Default: the one `palisade dev`
        /// uses.
        #[arg(
            long,
            env = "PALISADE_ADMIN_TOKEN_FILE",
            default_value = "{tmp}/palisade-dev/admin-token"
        )]
        token_file: String,
    },
}

/// Runs a `keys` command.
pub fn keys(cmd: KeysCommand) -> ExitCode {
    match run_keys(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade keys: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            store,
            owner,
            roles,
            scopes,
            tenant,
            tier,
            expires_in,
        } => {
            // The rule the proxy applies when it identifies the key (docs/authentication.md).
            if let Some(bad) = roles
                .iter()
                .chain(tenant.iter())
                .find(|v| !crate::principal::is_identity_token(v))
            {
                anyhow::bail!(
                    "{bad:?} is not a valid role or tenant: use ASCII letters, digits and - . _ : / @ + = ~ |"
                );
            }
            let mut keys = store.load()?;
            let (mut record, token) = apikey::generate(&owner);
            record.roles = roles;
            record.scopes = scopes;
            record.tenant = tenant;
            record.tier = tier;
            record.expires_at = expires_in.map(|d| {
                let t = time::OffsetDateTime::now_utc() + d;
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            });
            let id = record.id.clone();
            keys.push(record.clone());
            store.save(keys, &record)?;
            eprintln!("created key {id} for {owner}; the token is shown once:");
            println!("{token}");
        }
        KeysCommand::List { store } => {
            let keys = store.load()?;
            println!(
                "{:<14} {:<16} {:<24} {:<8} EXPIRES",
                "ID", "OWNER", "ROLES", "STATE"
            );
            for k in keys {
                let state = if k.revoked { "revoked" } else { "active" };
                println!(
                    "{:<14} {:<16} {:<24} {:<8} {}",
                    k.id,
                    k.owner,
                    k.roles.join(","),
                    state,
                    k.expires_at.as_deref().unwrap_or("never")
                );
            }
        }
        KeysCommand::Revoke { store, id } => {
            let mut keys = store.load()?;
            let key = keys
                .iter_mut()
                .find(|k| k.id == id)
                .ok_or_else(|| anyhow::anyhow!("no key with id {id}"))?;
            key.revoked = true;
            let changed = key.clone();
            store.save(keys, &changed)?;
            eprintln!("revoked key {id}; running proxies pick the change up within a second");
        }
    }
    Ok(())
}

/// Runs a `tokens` command.
pub fn tokens(cmd: TokensCommand) -> ExitCode {
    let TokensCommand::Revoke {
        jti,
        admin,
        token,
        token_file,
    } = cmd;
    let token = match token.map_or_else(|| crate::authn::admin_token::read(&token_file), Ok) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("palisade tokens revoke: {e:#} (pass --token or --token-file)");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palisade tokens: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        crate::outbound::Trust::default()
            .client_builder()
            .build()?
            .post(format!("http://{admin}/revocations"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "jti": jti }))
            .send()
            .await?
            .error_for_status()
    });
    match result {
        Ok(_) => {
            eprintln!("revoked token {jti}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade tokens revoke: {e}");
            ExitCode::FAILURE
        }
    }
}
