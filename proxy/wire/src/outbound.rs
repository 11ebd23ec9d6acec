//! [`Trust`]: the certificate authorities the proxy's and the orchestrator's outbound clients
//! (JWKS and OIDC discovery, OTLP over HTTP and gRPC, model, MCP and A2A calls) verify servers
//! against (feature `outbound`).
//!
//! One root store, in this order:
//! - the compiled-in web roots (Mozilla's, through `webpki-roots`), so a public IdP works on an
//!   image with no CA bundle at all;
//! - the system store: the files named by `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set
//!   (the OpenSSL convention, which curl and Python follow too), otherwise the distribution's
//!   bundle as OpenSSL would find it (`/etc/ssl/certs/...`, found by `rustls-native-certs`);
//! - the configured `ca_file` (`authentication.ca_file`, `tracing.ca_file`, the orchestrator's
//!   `tls.ca_file`).
//!
//! A file the operator named (`SSL_CERT_FILE`, `SSL_CERT_DIR`, `ca_file`) that is missing,
//! unreadable or holds no certificate is an error naming it: a typo must not silently fall back
//! to the public roots. A system bundle that isn't there is not an error (minimal images have
//! none); [`Trust::summary`] says what was loaded, for the start-up log.
//!
//! TLS is rustls with the ring provider, built here once and handed to reqwest preconfigured:
//! reqwest's own default (its platform verifier on aws-lc) would be a second crypto stack.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The environment variable naming a PEM bundle that replaces the system bundle.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// The environment variable naming a directory of PEM certificates that replaces the system
/// bundle.
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// Trusted roots and the TLS client configuration over them. Cheap to clone.
#[derive(Clone)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    /// What the operator named: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, and `ca_file` —
    /// neither the web roots nor the distribution's bundle.
    named: Arc<RootCertStore>,
    tls: Arc<rustls::ClientConfig>,
    counts: Counts,
}

/// How many roots came from each source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// The compiled-in web roots.
    pub web: usize,
    /// The system store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub system: usize,
    /// The configured `ca_file`.
    pub ca_file: usize,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("counts", &self.counts)
            .finish()
    }
}

/// The web roots only: no file is read. What tests and [`Trust::load`]'s callers without any
/// configuration start from.
impl Default for Trust {
    fn default() -> Self {
        let roots = web_roots();
        let counts = Counts {
            web: roots.len(),
            ..Counts::default()
        };
        Self::build(roots, RootCertStore::empty(), counts)
    }
}

impl Trust {
    /// The web roots, the system store as `env` describes it, and `ca_file` — `(setting, path)`,
    /// the setting's name used in errors (e.g. `("authentication.ca_file", path)`).
    pub fn load(
        ca_file: Option<(&str, &Path)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut roots = web_roots();
        let web = roots.len();
        let mut named = RootCertStore::empty();
        let (system, system_named) = system_roots(&env)?;
        if system_named {
            named.add_parsable_certificates(system.iter().cloned());
        }
        let (system_added, _) = roots.add_parsable_certificates(system);
        let mut ca = 0;
        if let Some((setting, path)) = ca_file {
            for cert in pem_file(path).map_err(|e| format!("{setting}: {e}"))? {
                named
                    .add(cert.clone())
                    .map_err(|e| format!("{setting}: {}: {e}", path.display()))?;
                roots.add(cert).expect("added to `named` above");
                ca += 1;
            }
        }
        let counts = Counts {
            web,
            system: system_added,
            ca_file: ca,
        };
        Ok(Self::build(roots, named, counts))
    }

    /// [`Trust::load`] with the process environment.
    pub fn from_process_env(ca_file: Option<(&str, &Path)>) -> Result<Self, String> {
        Self::load(ca_file, |k| std::env::var(k).ok())
    }

    fn build(roots: RootCertStore, named: RootCertStore, counts: Counts) -> Self {
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        // What reqwest offers when it builds the configuration itself (feature `http2`).
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            roots,
            named: Arc::new(named),
            tls: Arc::new(tls),
            counts,
        }
    }

    /// A client builder verifying servers against these roots; every outbound HTTP client
    /// starts here.
    #[allow(clippy::disallowed_methods)] // the one place clients start (clippy.toml)
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_backend_preconfigured((*self.tls).clone())
    }

    /// The roots, for clients reqwest doesn't build (the OTLP gRPC exporter).
    pub fn roots(&self) -> &RootCertStore {
        &self.roots
    }

    /// Only the roots the operator named (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set, and
    /// `ca_file`): for a check that trusts a CA *instead of* a host name (PostgreSQL's
    /// `sslmode=verify-ca`), where any public CA would vouch for any server.
    pub fn named_roots(&self) -> &RootCertStore {
        &self.named
    }

    /// How many roots came from each source.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Roots beyond the compiled-in web roots (system store and `ca_file`).
    pub fn extra_roots(&self) -> usize {
        self.counts.system + self.counts.ca_file
    }

    /// One line for the start-up log: `web roots 146, system 140, ca_file 1`.
    pub fn summary(&self) -> String {
        let c = self.counts;
        format!(
            "web roots {}, system {}, ca_file {}",
            c.web, c.system, c.ca_file
        )
    }
}

/// Makes ring the process's default rustls provider (a provider already installed stays).
///
/// reqwest is built without a provider of its own (`rustls-no-provider`): a client not built
/// from a [`Trust`] — the CLI's calls to the loopback admin listener, tests — finds ring here.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn web_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set (strictly: each named must load),
/// otherwise the distribution's bundle (leniently: a minimal image may have none); and whether
/// the operator named them.
fn system_roots(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(Vec<CertificateDer<'static>>, bool), String> {
    let file = env(SSL_CERT_FILE).filter(|v| !v.is_empty());
    let dir = env(SSL_CERT_DIR).filter(|v| !v.is_empty());
    if file.is_none() && dir.is_none() {
        // Reads the process environment itself; it has neither variable here in production
        // (`env` is the process environment), so this is the platform's bundle.
        return Ok((rustls_native_certs::load_native_certs().certs, false));
    }
    let mut certs = Vec::new();
    if let Some(file) = file {
        certs.extend(pem_file(Path::new(&file)).map_err(|e| format!("{SSL_CERT_FILE}: {e}"))?);
    }
    if let Some(dir) = dir {
        certs.extend(pem_dir(Path::new(&dir)).map_err(|e| format!("{SSL_CERT_DIR}: {e}"))?);
    }
    Ok((certs, true))
}

/// The certificates of the PEM file at `path`: at least one.
pub fn pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
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

/// The certificates of every PEM file directly in `dir` (OpenSSL's hashed directory layout or
/// plain `.pem` / `.crt` files); files that hold no certificate are skipped, as OpenSSL does.
fn pem_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut certs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            if let Ok(found) = pem_file(&path) {
                certs.extend(found);
            }
        }
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", dir.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
