//! Outbound TLS trust: a model endpoint behind a private CA (generated at test time) works with
//! `tls.ca_file` and fails with a clear certificate error without it.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use palisade_orchestrator::{
    IdentityConfig, ModelConfig, ModelProvider, Orchestrator, OrchestratorConfig, TlsConfig,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::{json, Value};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA and a chat-completions endpoint on 127.0.0.1 with a certificate it issued:
/// the CA's PEM and the endpoint's base URL.
async fn tls_model() -> (String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let c = json!({"id": "chatcmpl-tls", "model": "private-1", "choices": [
                {"index": 0, "delta": {"content": "hello over private TLS"}, "finish_reason": "stop"}]});
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(format!("data: {c}\n\ndata: [DONE]\n\n")))
                .unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                    .await;
            });
        }
    });
    (ca.pem(), format!("https://{addr}/v1"))
}

/// One run against `base_url`; its AG-UI events.
async fn run(base_url: &str, tls: TlsConfig) -> Vec<Value> {
    let cfg = OrchestratorConfig {
        model: ModelConfig {
            provider: ModelProvider::Openai,
            base_url: base_url.to_owned(),
            model: "private-1".into(),
            api_key_env: "PALISADE_TEST_TLS_KEY_UNSET".into(),
            ..ModelConfig::default()
        },
        identity: IdentityConfig {
            require_assertion: false,
            ..IdentityConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
        tls,
        ..OrchestratorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Orchestrator::new(cfg).serve(listener, std::future::pending()));
    let body = http()
        .post(format!("http://{addr}/agent"))
        .json(&json!({"threadId": "t", "runId": "r-tls",
            "messages": [{"id": "u", "role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_model_behind_a_private_ca_needs_its_ca_file() {
    let (ca_pem, base_url) = tls_model().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("private-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let events = run(
        &base_url,
        TlsConfig {
            ca_file: Some(ca_file),
        },
    )
    .await;
    let text: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, ["hello over private TLS"], "{events:#?}");
    assert_eq!(events.last().unwrap()["type"], "RUN_FINISHED");

    // Without the CA: the web roots alone do not trust it, and the error says why.
    let events = run(&base_url, TlsConfig::default()).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "RUN_ERROR", "{events:#?}");
    assert_eq!(last["code"], "MODEL_ERROR");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "{message}"
    );
}

/// A client for the orchestrator under test (plain HTTP; rustls configured as the binaries do).
fn http() -> reqwest::Client {
    palisade_orchestrator::tls::Trust::default()
        .client_builder()
        .build()
        .unwrap()
}
