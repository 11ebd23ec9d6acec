//! Outbound TLS trust: an IdP whose JWKS is served over TLS by a private CA (generated here) is
//! trusted through `authentication.ca_file` (or `SSL_CERT_FILE`), and not without it.

use palisade_e2e::upstream::{self, ScriptedUpstream};
use palisade_e2e::TestProxy;
use palisade_proxy::authn::signer::Signer;
use serde_json::json;

use super::{call, claims, ISS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_behind_a_private_ca_is_trusted_through_ca_file_only() {
    let (ca_pem, leaf_pem, leaf_key) = upstream::private_ca("127.0.0.1");
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

    // `SSL_CERT_FILE` replaces the system bundle (the OpenSSL convention), on top of the web
    // roots; a file that is not PEM is an error naming it, not silently ignored.
    use palisade_proxy::outbound::Trust;
    let url = format!("https://{idp_tls}/jwks");
    let env_ca = ca_file.to_str().unwrap().to_string();
    let from_env = Trust::load(None, |k| (k == "SSL_CERT_FILE").then(|| env_ca.clone())).unwrap();
    assert_eq!(from_env.counts().system, 1);
    let client = from_env.client_builder().build().unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let plain = Trust::default().client_builder().build().unwrap();
    let err = plain.get(&url).send().await.unwrap_err();
    assert!(
        format!("{err:?}").contains("UnknownIssuer"),
        "the web roots alone don't trust the private CA: {err:?}"
    );
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = palisade_proxy::outbound::http_client(
        std::time::Duration::from_secs(5),
        "authentication.ca_file",
        not_pem.to_str(),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("authentication.ca_file") && err.contains("not.pem"),
        "{err}"
    );
}
