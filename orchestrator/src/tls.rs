//! Outbound TLS trust: one place that builds the roots every HTTP client the orchestrator uses
//! (model, MCP, A2A, JWKS, OTLP) verifies servers against.
//!
//! The roots are [`palisade_wire::outbound::Trust`], shared with the proxy: the compiled-in web
//! roots, the system store (the files named by `SSL_CERT_FILE` / `SSL_CERT_DIR` when set — the
//! OpenSSL convention — else the distribution's bundle), and `tls.ca_file`. [`trust`] reads
//! them once at start; a file the operator named that is missing or holds no certificate is a
//! start-up error naming it, never a silent fallback.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use palisade_wire::outbound::{pem_file, Trust, SSL_CERT_DIR, SSL_CERT_FILE};

/// Outbound TLS trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates trusted in addition to the built-in web roots and
    /// the system store, e.g. the private CA of an IdP or a model gateway. Default: none.
    pub ca_file: Option<PathBuf>,
}

/// The roots for `cfg`, with `SSL_CERT_FILE` / `SSL_CERT_DIR` as read by `env`.
pub fn trust(cfg: &TlsConfig, env: impl Fn(&str) -> Option<String>) -> Result<Trust, String> {
    Trust::load(cfg.ca_file.as_deref().map(|p| ("tls.ca_file", p)), env)
}

#[cfg(test)]
mod tests {
    use super::{trust, TlsConfig};

    #[test]
    fn ca_file_and_ssl_cert_file_are_trusted_and_bad_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, format!("{}{}", ca.cert.pem(), ca.cert.pem())).unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();

        let cfg = TlsConfig {
            ca_file: Some(good.clone()),
        };
        let good_env = good.display().to_string();
        let t = trust(&cfg, |k| (k == "SSL_CERT_FILE").then(|| good_env.clone())).unwrap();
        assert_eq!(
            (t.counts().system, t.counts().ca_file),
            (2, 2),
            "SSL_CERT_FILE replaces the system bundle; ca_file adds to it"
        );
        let err = trust(
            &TlsConfig {
                ca_file: Some(dir.path().join("missing.pem")),
            },
            |_| None,
        )
        .unwrap_err();
        assert!(
            err.starts_with("tls.ca_file: ") && err.contains("missing.pem"),
            "{err}"
        );
        let bad_env = empty.display().to_string();
        let err = trust(&TlsConfig::default(), |k| {
            (k == "SSL_CERT_FILE").then(|| bad_env.clone())
        })
        .unwrap_err();
        assert!(err.starts_with("SSL_CERT_FILE: "), "{err}");
    }
}
