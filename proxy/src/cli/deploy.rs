//! Commands for running Palisade in a container or a pod: `palisade healthcheck` (a probe that
//! needs no curl in the image) and `palisade assertion-key` (the key replicas share).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::authn::signer::{self, Signer};

/// `palisade healthcheck`: exit 0 when the readiness endpoint answers 2xx, 1 otherwise.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The readiness URL (the admin listener's `/readyz`).
    #[arg(
        long,
        env = "PALISADE_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:9901/readyz"
    )]
    url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Runs the probe; prints the status (and the body of a refusal, e.g. `draining`) to stderr.
pub fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let outcome = super::keys::block_on(async {
        // Straight to the address given: a cluster's HTTP_PROXY must not catch a loopback probe,
        // and a redirect is an answer, not readiness.
        // An `https` URL is verified like every outbound call (web roots + system store).
        let client = crate::outbound::trust("SSL_CERT_FILE", None)?
            .client_builder()
            .timeout(args.timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let resp = client.get(&args.url).send().await?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Ok((status, body))
    });
    match outcome {
        Ok((status, _)) if status.is_success() => ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("{}: {status}: {}", args.url, body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e:#}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// The key that signs `X-Palisade-Assertion` (`authentication.assertion.signing_key_file`).
#[derive(Debug, Subcommand)]
pub enum AssertionKeyCommand {
    /// Write a new P-256 private key (PKCS#8 PEM, mode 0600); prints its `kid`.
    Generate {
        /// Where to write it; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the JWKS that a proxy holding these keys publishes (first: the signing key; then
    /// keys rotated out), for upstreams that read their keys from a file rather than fetch them.
    Jwks {
        /// Private key files (PEM).
        #[arg(required = true)]
        keys: Vec<PathBuf>,
    },
}

/// Runs an `assertion-key` command.
pub fn assertion_key(cmd: AssertionKeyCommand) -> ExitCode {
    let result = match cmd {
        AssertionKeyCommand::Generate { out } => generate(&out),
        AssertionKeyCommand::Jwks { keys } => jwks(&keys),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pem = signer::generate_pem()?;
    let kid = Signer::from_pem(&pem)?.kid().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    file.write_all(pem.as_bytes())?;
    println!("{kid}");
    Ok(())
}

fn jwks(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for path in paths {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        keys.push(Signer::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
    }
    let current = keys.remove(0);
    let set = signer::AssertionKeys {
        current,
        previous: keys,
    };
    println!("{}", serde_json::to_string_pretty(&set.jwks())?);
    Ok(())
}
