//! TLS material that reloads when its files change: the server certificate and key, and the CA
//! that verifies client certificates (mTLS).
//!
//! pingora builds one rustls `ServerConfig` per listener at start; instead of certificate paths it
//! is given a [`ReloadingCert`] resolver and (for mTLS) a [`ReloadingClientCa`] verifier, each an
//! `ArcSwap` that the config watcher ([`crate::reload`]) refreshes on every poll and on SIGHUP.
//! A handshake reads the current value without a lock; a connection keeps the certificate it
//! was accepted with. A replacement that does not parse, or a key that does not match its
//! certificate, is refused and the last good material stays in use (rotation tools often write
//! the two files one after the other: the pair is only swapped once they match).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{
    CertificateDer, ClientCertVerified, ClientCertVerifier, ClientHello, CryptoProvider,
    DigitallySignedStruct, PrivateKeyDer, ResolvesServerCert, RusTlsError, SignatureScheme,
    UnixTime,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::DistinguishedName;
use sha2::{Digest, Sha256};

/// What one refresh of a TLS file set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The files are as last loaded.
    Unchanged,
    /// New material is in use for new handshakes.
    Reloaded,
    /// The files changed but could not be used; the last good material stays.
    Refused(String),
}

/// The fingerprint of a set of files (their bytes), to notice a change without parsing.
fn fingerprint(paths: &[PathBuf]) -> std::io::Result<[u8; 32]> {
    let mut hash = Sha256::new();
    for path in paths {
        let bytes = std::fs::read(path)?;
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hash.finalize().into())
}

/// Material loaded from a set of files, reloaded when their bytes change. The fingerprint of
/// the files last looked at is kept whether they loaded or were refused: a bad version is not
/// retried until the files change again.
#[derive(Debug)]
struct Watched<T> {
    paths: Vec<PathBuf>,
    current: ArcSwap<T>,
    seen: Mutex<[u8; 32]>,
}

impl<T> Watched<T> {
    /// Loads the files now; an unusable set fails the start.
    fn load(
        paths: Vec<PathBuf>,
        load: impl Fn(&[PathBuf]) -> anyhow::Result<T>,
    ) -> anyhow::Result<Self> {
        let seen = fingerprint(&paths)?;
        let current = load(&paths)?;
        Ok(Self {
            paths,
            current: ArcSwap::from_pointee(current),
            seen: Mutex::new(seen),
        })
    }

    /// Reloads with `load` if the files changed since last looked at.
    fn refresh(&self, load: impl Fn(&[PathBuf]) -> anyhow::Result<T>) -> Refresh {
        let now = match fingerprint(&self.paths) {
            Ok(f) => f,
            // Mid-rotation a file may be briefly missing: keep serving, look again next time.
            Err(e) => return Refresh::Refused(format!("reading the files: {e}")),
        };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen == now {
            return Refresh::Unchanged;
        }
        *seen = now;
        match load(&self.paths) {
            Ok(v) => {
                self.current.store(Arc::new(v));
                Refresh::Reloaded
            }
            Err(e) => Refresh::Refused(format!("{e:#}")),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    pingora_rustls::install_default_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// A listener's certificate chain and key, reloaded from `cert` and `key` when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    listener: String,
    pair: Watched<CertifiedKey>,
}

fn load_pair_at(paths: &[PathBuf]) -> anyhow::Result<CertifiedKey> {
    load_pair(&paths[0], &paths[1])
}

impl ReloadingCert {
    /// Loads the pair now; an unusable pair fails the start.
    pub fn load(listener: &str, cert: &str, key: &str) -> anyhow::Result<Self> {
        let paths = vec![PathBuf::from(cert), PathBuf::from(key)];
        Ok(Self {
            listener: listener.to_string(),
            pair: Watched::load(paths, load_pair_at)?,
        })
    }

    /// The listener this certificate serves.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// Reloads the pair if its files changed since last looked at.
    pub fn refresh(&self) -> Refresh {
        self.pair.refresh(load_pair_at)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair.current.load_full())
    }
}

/// Reads a PEM chain and its key and checks that they belong together.
fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let (chain, key_der) = pingora_rustls::load_certs_and_key_files(&cert_s, &key_s)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("no certificate in {cert_s} or no private key in {key_s}")
        })?;
    let chain: Vec<CertificateDer<'static>> =
        chain.into_iter().map(CertificateDer::into_owned).collect();
    let key_der: PrivateKeyDer<'static> = key_der.clone_key();
    CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| anyhow::anyhow!("{cert_s} and {key_s} do not make a usable pair: {e}"))
}

/// The client-certificate verifier of an mTLS listener, rebuilt when its CA file changes.
#[derive(Debug)]
pub struct ReloadingClientCa {
    listener: String,
    require: bool,
    ca: Watched<Verifier>,
}

/// One loaded verifier with its hint list.
#[derive(Debug)]
struct Verifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// The CA subjects sent as hints. `root_hint_subjects` returns a borrow of `self`, which an
    /// `ArcSwap` guard cannot give out: each distinct hint list is leaked once ([`intern_hints`],
    /// bounded).
    hints: &'static [DistinguishedName],
}

impl ReloadingClientCa {
    /// Loads the CA file now; an unusable file fails the start.
    pub fn load(listener: &str, ca: &str, require: bool) -> anyhow::Result<Self> {
        let ca = Watched::load(vec![PathBuf::from(ca)], |p| load_verifier(&p[0], require))?;
        Ok(Self {
            listener: listener.to_string(),
            require,
            ca,
        })
    }

    /// The listener this CA verifies clients for.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// Reloads the CA if its file changed since last looked at.
    pub fn refresh(&self) -> Refresh {
        self.ca.refresh(|p| load_verifier(&p[0], self.require))
    }
}

fn load_verifier(ca: &Path, require: bool) -> anyhow::Result<Verifier> {
    let inner = super::mtls::client_verifier(&ca.display().to_string(), require)?;
    let hints = intern_hints(inner.root_hint_subjects());
    Ok(Verifier { inner, hints })
}

/// The `'static` copy of a hint list: each distinct list is leaked once and reused (a bundle
/// rewritten with the same CAs costs nothing). Past [`MAX_HINT_SETS`] distinct lists (a bundle
/// that changes on every poll) new ones get no hints — clients then offer any certificate they
/// have — rather than memory growing for as long as the process runs.
fn intern_hints(hints: &[DistinguishedName]) -> &'static [DistinguishedName] {
    const MAX_HINT_SETS: usize = 16;
    static SETS: Mutex<Vec<&'static [DistinguishedName]>> = Mutex::new(Vec::new());
    let mut sets = SETS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let same = |set: &&&'static [DistinguishedName]| {
        set.len() == hints.len() && set.iter().zip(hints).all(|(a, b)| a.as_ref() == b.as_ref())
    };
    if let Some(set) = sets.iter().find(same) {
        return set;
    }
    if sets.len() >= MAX_HINT_SETS {
        return &[];
    }
    let set: &'static [DistinguishedName] = Box::leak(hints.to_vec().into_boxed_slice());
    sets.push(set);
    set
}

impl ClientCertVerifier for ReloadingClientCa {
    fn offer_client_auth(&self) -> bool {
        self.ca.current.load().inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.ca.current.load().inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.current.load().hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, RusTlsError> {
        self.ca
            .current
            .load()
            .inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        self.ca
            .current
            .load()
            .inner
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        self.ca
            .current
            .load()
            .inner
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.current.load().inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    }

    fn end_entity(r: &ReloadingCert) -> Vec<u8> {
        r.pair.current.load().cert[0].to_vec()
    }

    #[test]
    fn a_new_pair_is_picked_up_and_a_mismatched_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a.test");
        let r = ReloadingCert::load("public", &cert, &key).unwrap();
        assert_eq!(r.refresh(), Refresh::Unchanged);
        let first = end_entity(&r);

        write_pair(dir.path(), "b.test");
        assert_eq!(r.refresh(), Refresh::Reloaded);
        let second = end_entity(&r);
        assert_ne!(first, second);

        // Only the certificate replaced: the key no longer matches; the last pair stays.
        let other = rcgen::generate_simple_self_signed(vec!["c.test".into()]).unwrap();
        std::fs::write(&cert, other.cert.pem()).unwrap();
        let refused = r.refresh();
        assert!(
            matches!(&refused, Refresh::Refused(m) if m.contains("usable pair")),
            "{refused:?}"
        );
        assert_eq!(end_entity(&r), second);
        // Not retried until the files change again.
        assert_eq!(r.refresh(), Refresh::Unchanged);

        std::fs::write(&cert, "not pem").unwrap();
        assert!(matches!(r.refresh(), Refresh::Refused(_)));
        assert_eq!(end_entity(&r), second);
    }

    #[test]
    fn a_client_ca_change_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        let ca_a = rcgen::generate_simple_self_signed(vec!["ca-a".into()]).unwrap();
        std::fs::write(&ca_path, ca_a.cert.pem()).unwrap();
        let v = ReloadingClientCa::load("public", ca_path.to_str().unwrap(), true).unwrap();
        assert!(v.client_auth_mandatory());
        let hints = |v: &ReloadingClientCa| -> Vec<Vec<u8>> {
            v.root_hint_subjects()
                .iter()
                .map(|d| d.as_ref().to_vec())
                .collect()
        };
        let hints_a = hints(&v);
        assert_eq!(v.refresh(), Refresh::Unchanged);

        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Second CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca_b = params.self_signed(&key).unwrap();
        std::fs::write(&ca_path, ca_b.pem()).unwrap();
        assert_eq!(v.refresh(), Refresh::Reloaded);
        assert_ne!(hints(&v), hints_a);

        std::fs::write(&ca_path, "garbage").unwrap();
        assert!(matches!(v.refresh(), Refresh::Refused(_)));
        assert!(v.client_auth_mandatory());
    }
}
