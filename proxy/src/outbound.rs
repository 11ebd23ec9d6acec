//! HTTP clients for the proxy's own outbound calls (JWKS and OIDC discovery, OTLP export) and the
//! certificate authorities they trust: the compiled-in web roots, the system store (or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`), and a config `ca_file` (`authentication.ca_file`,
//! `tracing.ca_file`) — [`palisade_wire::outbound::Trust`], shared with the orchestrator.

use std::time::Duration;

pub use palisade_wire::outbound::Trust;

/// The roots for the clients configured by `setting` (e.g. `authentication.ca_file`), with the
/// file that setting names; logs what was loaded.
pub fn trust(setting: &str, ca_file: Option<&str>) -> anyhow::Result<Trust> {
    let trust = Trust::from_process_env(ca_file.map(|p| (setting, std::path::Path::new(p))))
        .map_err(anyhow::Error::msg)?;
    tracing::debug!(setting, roots = %trust.summary(), "outbound TLS trust");
    Ok(trust)
}

/// A client with `timeout` per request verifying servers against [`trust`]`(setting, ca_file)`.
pub fn http_client(
    timeout: Duration,
    setting: &str,
    ca_file: Option<&str>,
) -> anyhow::Result<reqwest::Client> {
    Ok(trust(setting, ca_file)?
        .client_builder()
        .timeout(timeout)
        .build()?)
}
