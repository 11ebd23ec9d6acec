//! HTTP clients for the proxy's own outbound calls (JWKS and OIDC discovery, OTLP export) and the
//! certificate authorities they trust.
//!
//! Trust is the compiled-in web roots, plus the PEM bundle named by `SSL_CERT_FILE` (the
//! variable OpenSSL-based tools honour, so an image that sets it for them covers Palisade too),
//! plus a config `ca_file` (`authentication.ca_file`, `tracing.ca_file`) — so an IdP or a
//! collector behind a private CA works without giving up the public roots.

use std::time::Duration;

use anyhow::Context as _;

/// The certificates of the PEM bundle at `path`; an error names the file.
fn bundle(path: &str, what: &str) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {what} {path}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{what} {path} is not a PEM certificate bundle"))?;
    anyhow::ensure!(!certs.is_empty(), "{what} {path} holds no certificate");
    Ok(certs)
}

/// A client with `timeout` per request that trusts the web roots, `SSL_CERT_FILE` when set, and
/// `ca_file` when given.
pub fn http_client(timeout: Duration, ca_file: Option<&str>) -> anyhow::Result<reqwest::Client> {
    http_client_with(
        timeout,
        ca_file,
        std::env::var("SSL_CERT_FILE").ok().as_deref(),
    )
}

/// [`http_client`] with the `SSL_CERT_FILE` value given (tests).
pub fn http_client_with(
    timeout: Duration,
    ca_file: Option<&str>,
    ssl_cert_file: Option<&str>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    let sources = [
        (ssl_cert_file.filter(|p| !p.is_empty()), "SSL_CERT_FILE"),
        (ca_file, "ca_file"),
    ];
    for (path, what) in sources {
        if let Some(path) = path {
            for cert in bundle(path, what)? {
                builder = builder.add_root_certificate(cert);
            }
        }
    }
    Ok(builder.build()?)
}
