//! HTTP/2 downstream: h2c with prior knowledge, and TLS (rustls) with ALPN.

use std::time::Duration;

use palisade_e2e::upstream::{self, SseScript};
use palisade_e2e::{sse_client, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_serves_requests_and_streams() {
    let echo = upstream::echo().await;
    let sse = upstream::sse(SseScript {
        count: 5,
        interval: Duration::from_millis(20),
        ..SseScript::default()
    })
    .await;
    let proxy = TestProxy::new()
        .listener_yaml("    h2c: true\n")
        .upstream("echo", echo.addr)
        .upstream("sse", sse.addr)
        .route("sse", "/events", "sse", "")
        .route("echo", "/", "echo", "")
        .start();
    let c = palisade_e2e::client_builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // The echo upstream sends `connection`/`keep-alive`; an h2 client rejects a response that
    // carries them, so a 200 here shows they were removed.
    let resp = c.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("connection").is_none());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/x");

    let resp = c.get(proxy.url("/events")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let got = sse_client::read(resp, None, Duration::from_secs(10)).await;
    assert_eq!(got.events.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_negotiates_h2_and_http1() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .listener_yaml(&format!(
            "    tls: {{cert: \"{}\", key: \"{}\"}}\n",
            cert_path.display(),
            key_path.display()
        ))
        .upstream("echo", echo.addr)
        .route("echo", "/", "echo", "")
        .start();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/secure", proxy.addr().port());

    let h2 = palisade_e2e::client_builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", proxy.addr())
        .build()
        .unwrap();
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");

    let h1 = palisade_e2e::client_builder()
        .add_root_certificate(root)
        .resolve("localhost", proxy.addr())
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
}
