//! Outbound TLS trust: an IdP whose JWKS is served over TLS by a private CA (generated here) is
//! trusted through `authentication.ca_file` (and `SSL_CERT_FILE`), and not without it.

use palisade_e2e::upstream::{self, ScriptedUpstream};
use palisade_e2e::TestProxy;
use palisade_proxy::authn::signer::Signer;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::json;

use super::{call, claims, ISS};

/// A private CA and a leaf for 127.0.0.1 signed by it: (CA PEM, leaf PEM, leaf key PEM).
fn private_ca() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_behind_a_private_ca_is_trusted_through_ca_file_only() {
    let (ca_pem, leaf_pem, leaf_key) = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let signer = Signer::generate().unwrap();
    let idp = ScriptedUpstream::new()
        .json("/jwks", serde_json::to_value(signer.jwks()).unwrap())
        .start()
        .await;
    let idp_tls = upstream::tls_front(idp.addr, &leaf_pem, &leaf_key).await;
    let echo = upstream::echo().await;
    let proxy_with = |ca: Option<&std::path::Path>| {
        let ca = ca
            .map(|p| format!("  ca_file: \"{}\"\n", p.display()))
            .unwrap_or_default();
        TestProxy::new()
            .upstream("echo", echo.addr)
            .route("private", "/", "echo", "auth: required")
            .top_yaml(&format!(
                "authentication:\n{ca}  issuers:\n    - issuer: {ISS}\n      algorithms: [ES256]\n      \
                 keys: {{jwks_url: \"https://{idp_tls}/jwks\"}}\n      required_for_readiness: false\n"
            ))
            .start()
    };
    let token = signer.sign(&claims(json!({}))).unwrap();

    let trusting = proxy_with(Some(&ca_file));
    let mut status = 0;
    for _ in 0..200 {
        status = call(&trusting, "/", Some(&token)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200, "the JWKS over TLS from the private CA loaded");

    // Without the CA, the same JWKS URL fails the TLS handshake: no keys, 401.
    let fetched = idp.requests().len();
    let untrusting = proxy_with(None);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(call(&untrusting, "/", Some(&token)).await.0, 401);
    assert_eq!(
        idp.requests().len(),
        fetched,
        "nothing got past the TLS handshake"
    );

    // `SSL_CERT_FILE` adds the same trust (set for OpenSSL tools, honoured here too); a file that
    // is not PEM is an error naming it, not silently ignored.
    let url = format!("https://{idp_tls}/jwks");
    let timeout = std::time::Duration::from_secs(5);
    let env_ca = ca_file.to_str().unwrap();
    let client = palisade_proxy::outbound::http_client_with(timeout, None, Some(env_ca)).unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let plain = palisade_proxy::outbound::http_client_with(timeout, None, None).unwrap();
    assert!(plain.get(&url).send().await.is_err());
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err =
        palisade_proxy::outbound::http_client_with(timeout, not_pem.to_str(), None).unwrap_err();
    assert!(format!("{err:#}").contains("not.pem"), "{err:#}");
}
