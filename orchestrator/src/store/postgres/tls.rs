//! TLS to PostgreSQL through the workspace's rustls (ring provider), as the URL's `sslmode` says.
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked (as libpq without a root certificate) |
//! | `verify-ca` | always | issued by a CA you named (`tls.ca_file`, `SSL_CERT_FILE`/`SSL_CERT_DIR`): without a name check, a public CA would vouch for any server, so the web roots and the system bundle don't count; refused at start when none is named |
//! | `verify-full` | always | issued by a trusted CA and naming the URL's host |
//!
//! Trusted CAs for `verify-full` are the orchestrator's [`Trust`]: the web roots, the system
//! store and `tls.ca_file`; for `verify-ca`, only the ones named ([`Trust::named_roots`]). `tokio-postgres` itself knows only `disable`/`prefer`/`require`, so
//! [`parse_url`] reads `sslmode` out of the URL and hands it `require` for the verifying modes.
//! The stream offers `tls-server-end-point` channel binding (SCRAM-SHA-256-PLUS).
//!
//! This connector is ours rather than `tokio-postgres-rustls`, whose current
//! version brings `x509-cert` and a second `sha2`; what it does here is the same.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::store::StoreError;
use crate::tls::Trust;

/// libpq's `sslmode`, all five that matter for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, certificate not checked (the default).
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate issued by a trusted CA.
    VerifyCa,
    /// TLS, certificate issued by a trusted CA for the host connected to.
    VerifyFull,
}

impl SslMode {
    /// As written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Url(format!(
                    "sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// What `tokio-postgres` is told (it checks no certificates itself).
    fn negotiation(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require | Self::VerifyCa | Self::VerifyFull => "require",
        }
    }

    /// Where to look when the handshake fails.
    pub fn hint(self) -> &'static str {
        match self {
            Self::VerifyCa | Self::VerifyFull => {
                " (verify-full: the server's certificate must be issued by a CA in the web roots, \
                 the system store or tls.ca_file, and name the URL's host; verify-ca: by the CA \
                 in tls.ca_file or SSL_CERT_FILE)"
            }
            _ => "",
        }
    }
}

/// Options libpq reads from files this store does not: trust comes from [`Trust`].
const UNSUPPORTED: [&str; 4] = ["sslrootcert", "sslcert", "sslkey", "sslcrl"];

/// The `tokio-postgres` config of `url` (a `postgres://` URL or a key=value string) and its
/// `sslmode`.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, SslMode), StoreError> {
    let mut mode = SslMode::Prefer;
    let mut check = |key: &str, value: &str| -> Result<Option<&'static str>, StoreError> {
        if UNSUPPORTED.contains(&key) {
            return Err(StoreError::Url(format!(
                "{key} is not supported: the CA comes from tls.ca_file or SSL_CERT_FILE, and \
                 client certificates are not used"
            )));
        }
        if key == "sslmode" {
            mode = SslMode::parse(value)?;
            return Ok(Some(mode.negotiation()));
        }
        Ok(None)
    };
    let rewritten = match url.split_once("://") {
        Some(("postgres" | "postgresql", _)) => {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut params = Vec::new();
            for param in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
                match check(&decode(key), &decode(value))? {
                    Some(mode) => params.push(format!("sslmode={mode}")),
                    None => params.push(param.to_owned()),
                }
            }
            if params.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", params.join("&"))
            }
        }
        _ => {
            let mut pairs = Vec::new();
            for (key, value) in key_values(url)? {
                let value = check(&key, &value)?.map_or(value, str::to_owned);
                pairs.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
            pairs.join(" ")
        }
    };
    let config = rewritten
        .parse::<tokio_postgres::Config>()
        .map_err(|e| StoreError::Url(e.to_string()))?;
    Ok((config, mode))
}

/// The pairs of a libpq key=value string (`host=db port=5432 password='a b\'c'`).
fn key_values(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut chars = text.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(StoreError::Url(format!("`{key}` has no `=value`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(StoreError::Url(format!("`{key}`: unterminated quote"))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Makes a rustls connection for each new PostgreSQL connection.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    /// A connector checking certificates as `mode` says, against `trust`.
    pub fn new(mode: SslMode, trust: &Trust) -> Result<Self, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let failed = |e: &dyn std::fmt::Display| StoreError::Tls(format!("client setup: {e}"));
        let webpki = |roots: &rustls::RootCertStore| {
            WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.clone()),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| failed(&e))
        };
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            SslMode::VerifyFull => webpki(trust.roots())?,
            // No name check: only the CAs the operator named, never the public ones (any of
            // which would vouch for any server, e.g. a certificate for an attacker's domain).
            SslMode::VerifyCa if trust.named_roots().is_empty() => {
                return Err(StoreError::Tls(
                    "sslmode=verify-ca trusts only the CA that issued the server's certificate: \
                     name it in tls.ca_file (or SSL_CERT_FILE)"
                        .into(),
                ))
            }
            SslMode::VerifyCa => Arc::new(IgnoreName(webpki(trust.named_roots())?)),
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                Arc::new(AnyCertificate(Arc::clone(&provider)))
            }
        };
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| failed(&e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17's ALPN name (required for `sslnegotiation=direct`, ignored before).
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
        })
    }
}

/// One pending handshake.
pub struct RustlsConnect {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929): the server certificate hashed with its signature's
    /// hash (SHA-256 for SHA-1 and MD5); none for signatures without one (Ed25519).
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
            return ChannelBinding::none();
        };
        match end_point_hash(cert) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// The certificate hashed as `tls-server-end-point` says, if its signature names a hash.
fn end_point_hash(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use x509_parser::oid_registry as oid;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let alg = &parsed.signature_algorithm.algorithm;
    let der: &[u8] = cert;
    if [
        oid::OID_PKCS1_SHA256WITHRSA,
        oid::OID_SIG_ECDSA_WITH_SHA256,
        oid::OID_PKCS1_SHA1WITHRSA,
        oid::OID_PKCS1_MD5WITHRSAENC,
    ]
    .contains(alg)
    {
        Some(sha2::Sha256::digest(der).to_vec())
    } else if [oid::OID_PKCS1_SHA384WITHRSA, oid::OID_SIG_ECDSA_WITH_SHA384].contains(alg) {
        Some(sha2::Sha384::digest(der).to_vec())
    } else if [oid::OID_PKCS1_SHA512WITHRSA, oid::OID_SIG_ECDSA_WITH_SHA512].contains(alg) {
        Some(sha2::Sha512::digest(der).to_vec())
    } else {
        None
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `require`/`prefer`: any certificate, the handshake's signatures still verified (so the
/// channel binding names the key that really answered).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must reach a trusted root; the name is not checked (webpki checks the
/// chain before the name, so a name error means the chain was good).
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The reason, when `err` is a failed TLS handshake (an untrusted or misnamed certificate, a
/// server without TLS) rather than an unreachable server or a refused login.
pub fn handshake_failure(err: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(tls.to_string());
        }
        source = e.source();
    }
    let text = err.to_string();
    text.starts_with("error performing TLS handshake")
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::{parse_url, SslMode};

    #[test]
    fn sslmode_is_read_from_urls_and_key_value_strings() {
        let (cfg, mode) = parse_url(
            "postgres://u:p%40ss@db.internal:5433/app?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(cfg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(cfg.get_ports(), [5433]);
        assert_eq!(cfg.get_application_name(), Some("x"));

        let (cfg, mode) = parse_url("postgresql://db/app").unwrap();
        assert_eq!(mode, SslMode::Prefer);
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);

        let (cfg, mode) =
            parse_url("host=db port=5432 user=p password='a b\\'c' sslmode = verify-ca").unwrap();
        assert_eq!(mode, SslMode::VerifyCa);
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(cfg.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(cfg.get_user(), Some("p"));

        let (cfg, mode) = parse_url("host=db sslmode=disable").unwrap();
        assert_eq!(mode, SslMode::Disable);
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        assert_eq!(
            parse_url("host=db sslmode=require").unwrap().1,
            SslMode::Require
        );

        for (bad, says) in [
            ("postgres://db/app?sslmode=verify-everything", "sslmode"),
            ("host=db sslmode=sometimes", "sslmode"),
            ("postgres://db/app?sslrootcert=/ca.pem", "tls.ca_file"),
            ("host=db sslrootcert=/ca.pem", "tls.ca_file"),
            ("host=db password='open", "unterminated"),
            ("host", "no `=value`"),
            ("postgres://x:notaport/db", "invalid connection string"),
        ] {
            let err = parse_url(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
