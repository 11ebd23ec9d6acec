//! Outbound TLS trust: one place that builds every HTTP client the orchestrator uses (model,
//! MCP, A2A, JWKS, OTLP) and the roots the PostgreSQL session store verifies its server against.
//!
//! Servers are verified against the compiled-in web roots (webpki-roots) plus extra CA
//! certificates: `tls.ca_file` from the config and the file named by `SSL_CERT_FILE` (the
//! OpenSSL convention, so an image's `SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt` or a
//! private CA bundle works without a config change). [`Trust::from_config`] reads them once at
//! start; a missing or empty file is a start-up error naming it, never a silent fallback.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Outbound TLS trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates trusted in addition to the built-in web roots, e.g.
    /// the private CA of an IdP or a model gateway. Default: none.
    pub ca_file: Option<PathBuf>,
}

/// The environment variable naming an extra PEM bundle of trusted CAs.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// Extra trusted CA certificates. Cheap to clone.
#[derive(Clone, Default)]
pub struct Trust {
    extra: Vec<reqwest::Certificate>,
    /// The same certificates as DER, for the rustls clients that are not reqwest's (PostgreSQL).
    extra_der: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("extra_roots", &self.extra.len())
            .finish()
    }
}

impl Trust {
    /// `cfg.ca_file` and `SSL_CERT_FILE` (as read by `env`), on top of the web roots.
    pub fn from_config(
        cfg: &TlsConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut extra_der = Vec::new();
        if let Some(path) = &cfg.ca_file {
            extra_der.extend(read_ca_der(path).map_err(|e| format!("tls.ca_file: {e}"))?);
        }
        if let Some(path) = env(SSL_CERT_FILE).filter(|p| !p.is_empty()) {
            extra_der.extend(
                read_ca_der(Path::new(&path)).map_err(|e| format!("{SSL_CERT_FILE}: {e}"))?,
            );
        }
        let extra = extra_der
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("extra CA certificate: {e}"))?;
        Ok(Self { extra, extra_der })
    }

    /// The web roots plus the extra roots, for a rustls client (the PostgreSQL session store).
    /// An extra certificate rustls cannot use as a trust anchor is skipped with a warning.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let (_, ignored) = roots.add_parsable_certificates(self.extra_der.iter().cloned());
        if ignored > 0 {
            tracing::warn!(
                ignored,
                "extra CA certificates rustls cannot use as trust anchors"
            );
        }
        roots
    }

    /// How many extra roots are trusted.
    pub fn extra_roots(&self) -> usize {
        self.extra.len()
    }

    /// A client builder trusting the web roots and the extra roots; every outbound client
    /// starts here.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        self.extra
            .iter()
            .cloned()
            .fold(reqwest::Client::builder(), |b, cert| {
                b.add_root_certificate(cert)
            })
    }
}

/// The certificates of the PEM file at `path` (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    read_ca_der(path)?
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificates of the PEM file at `path` as DER (at least one).
fn read_ca_der(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::TlsConfig;
    use super::{read_ca_file, Trust};

    #[test]
    fn reads_ca_bundles_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let two = format!("{}{}", ca.cert.pem(), ca.cert.pem());
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, two).unwrap();
        assert_eq!(read_ca_file(&good).unwrap().len(), 2);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = read_ca_file(&empty).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = read_ca_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");

        let cfg = TlsConfig {
            ca_file: Some(good.clone()),
        };
        let good_env = good.display().to_string();
        let trust =
            Trust::from_config(&cfg, |k| (k == "SSL_CERT_FILE").then(|| good_env.clone())).unwrap();
        assert_eq!(
            trust.extra_roots(),
            4,
            "ca_file and SSL_CERT_FILE both count"
        );
        let bad_env = empty.display().to_string();
        let err = Trust::from_config(&TlsConfig::default(), |_| Some(bad_env.clone())).unwrap_err();
        assert!(err.starts_with("SSL_CERT_FILE: "), "{err}");
        assert_eq!(
            Trust::from_config(&TlsConfig::default(), |_| None)
                .unwrap()
                .extra_roots(),
            0
        );
    }
}
