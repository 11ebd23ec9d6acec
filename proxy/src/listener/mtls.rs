//! mTLS: client certificates verified by rustls against a configured CA, and the workload
//! identity they carry (`Service::"<SPIFFE URI SAN or CN>"`).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_rustls::{RootCertStore, WebPkiClientVerifier};

/// The identity of a verified client certificate, attached to the TLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity(pub String);

/// Records the verified client certificate's identity after the handshake.
pub struct ClientIdentity;

#[async_trait]
impl TlsAccept for ClientIdentity {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let identity = identity_from_der(der)?;
        Some(Arc::new(ServiceIdentity(identity)))
    }
}

/// The SPIFFE URI SAN of a certificate, else its subject CN.
pub fn identity_from_der(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with("spiffe://") {
                    return Some(uri.to_string());
                }
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    cn
}

/// A rustls client-certificate verifier trusting the CAs in `ca_file`; `require` refuses
/// handshakes without a certificate, otherwise they proceed without a service identity.
pub fn client_verifier(
    ca_file: &str,
    require: bool,
) -> anyhow::Result<Arc<dyn pingora_rustls::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    pingora_rustls::load_ca_file_into_store(ca_file, &mut roots)
        .map_err(|e| anyhow::anyhow!("loading client CA {ca_file}: {e}"))?;
    let builder = WebPkiClientVerifier::builder(Arc::new(roots));
    let builder = if require {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_san_wins_over_cn() {
        let mut params = rcgen::CertificateParams::new(vec!["svc.local".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing-agent");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://acme.test/ns/agents/sa/billing"
                .try_into()
                .unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            identity_from_der(cert.der()).as_deref(),
            Some("spiffe://acme.test/ns/agents/sa/billing")
        );

        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing-agent");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            identity_from_der(cert.der()).as_deref(),
            Some("billing-agent")
        );
    }
}
