//! Routing and header hygiene.

use palisade_e2e::{client, error_code, upstream, TestProxy};
use serde_json::Value;

async fn echo_json(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_and_method_with_rewrite() {
    let a = upstream::echo().await;
    let b = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("a", a.addr)
        .upstream("b", b.addr)
        .route_matching("only-post", "path_prefix: /agent, methods: [POST]", "a", "")
        .route_matching(
            "tenant",
            "host: api.example.test, path_prefix: /",
            "b",
            "rewrite_prefix: /v2",
        )
        .route("api", "/api", "a", "rewrite_prefix: /")
        .start();
    let c = client();

    let got = echo_json(
        c.post(proxy.url("/agent/run?x=1"))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["path"], "/agent/run?x=1");
    assert_eq!(got["method"], "POST");

    let got = echo_json(c.get(proxy.url("/api/things")).send().await.unwrap()).await;
    assert_eq!(got["path"], "/things");

    let got = echo_json(
        c.get(proxy.url("/things"))
            .header("host", "api.example.test:8080")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["path"], "/v2/things");
    assert_eq!(got["headers"]["x-forwarded-host"], "api.example.test:8080");

    let resp = c.get(proxy.url("/agent")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(
        error_code(&resp.bytes().await.unwrap()),
        "METHOD_NOT_ALLOWED"
    );

    let resp = c.get(proxy.url("/agents")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strips_spoofable_and_hop_by_hop_headers_and_adds_forwarding() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("all", "/", "echo", "")
        .start();
    let resp = client()
        .get(proxy.url("/x"))
        .header("X-Palisade-Principal", "User::\"admin\"")
        .header("x-palisade-roles", "admin")
        .header("X-PALISADE-ASSERTION", "forged")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    // Hop-by-hop headers from the upstream never reach the client either.
    assert!(resp.headers().get("keep-alive").is_none());
    let got = echo_json(resp).await;
    let headers = got["headers"].as_object().unwrap();
    // The upstream sees the proxy's identity headers, never the client's.
    assert_eq!(headers["x-palisade-principal"], "Anonymous::\"127.0.0.1\"");
    assert_eq!(headers["x-palisade-roles"], "");
    let assertion = headers["x-palisade-assertion"].as_str().unwrap();
    assert_ne!(assertion, "forged");
    assert_eq!(assertion.split('.').count(), 3, "a JWT signed by the proxy");
    assert!(headers.get("x-hop").is_none());
    assert_eq!(headers["x-custom"], "kept");
    // The client is no trusted proxy: its own X-Forwarded-For never reaches the upstream.
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["host"], echo.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_client() {
    let echo = upstream::echo().await;
    // The test client plays a reverse proxy on loopback.
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("all", "/", "echo", "auth: optional")
        .top_yaml(
            "edge:\n  trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]\n\
             rate_limits:\n  limits:\n    - {name: per-ip, scope: client_ip, requests: 1, per: 1h}\n",
        )
        .start();
    let send = |xff: Option<&'static str>| {
        let mut req = client()
            .get(proxy.url("/x"))
            .header("x-forwarded-proto", "https")
            .header("forwarded", "for=192.0.2.1");
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        req.send()
    };
    // Rightmost untrusted: `1.1.1.1` is the client's own claim, 10.0.0.2 a trusted hop.
    let resp = send(Some("1.1.1.1, 198.51.100.9, 10.0.0.2")).await.unwrap();
    let got = echo_json(resp).await;
    let headers = &got["headers"];
    assert_eq!(
        headers["x-palisade-principal"],
        "Anonymous::\"198.51.100.9\""
    );
    assert_eq!(
        headers["x-forwarded-for"],
        "1.1.1.1, 198.51.100.9, 10.0.0.2, 127.0.0.1"
    );
    assert_eq!(
        headers["x-forwarded-proto"], "https",
        "kept from a trusted hop"
    );
    assert!(
        headers.get("forwarded").is_none(),
        "not the configured header"
    );

    // Per-IP limits key on the forwarded client, not on the proxy.
    let again = send(Some("198.51.100.9")).await.unwrap();
    assert_eq!(again.status(), 429);
    let other = send(Some("203.0.113.50")).await.unwrap();
    assert_eq!(other.status(), 200);

    // A trusted proxy must name its client.
    let resp = send(None).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_and_traceparent_propagate() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("all", "/", "echo", "")
        .start();
    let c = client();

    let resp = c
        .get(proxy.url("/"))
        .header("x-request-id", "client-id-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-id-42");
    let got = echo_json(resp).await;
    assert_eq!(got["headers"]["x-request-id"], "client-id-42");
    let tp = got["headers"]["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "the proxy is a hop with its own span id: {tp}"
    );

    // A malformed id is replaced, and the replacement is what both sides see.
    let resp = c
        .get(proxy.url("/"))
        .header("x-request-id", "bad id;")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "bad id;");
    let got = echo_json(resp).await;
    assert_eq!(got["headers"]["x-request-id"], id.as_str());

    // The error body carries the same request id.
    let resp = c
        .get(proxy.url("/"))
        .header("x-request-id", "r-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let proxy404 = TestProxy::new().start();
    let resp = c
        .get(proxy404.url("/nothing"))
        .header("x-request-id", "r-2")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "r-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_trusted_roots() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "upstream test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["agent.internal".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let up = upstream::echo_tls(&cert.pem(), &key.serialize_pem()).await;
    // The proxy trusts the system roots plus SSL_CERT_FILE (set before it starts, in this
    // test's own process).
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::env::set_var("SSL_CERT_FILE", &ca_file);
    let proxy = TestProxy::new()
        .upstream_with("secure", up.addr, "tls: true\nsni: agent.internal")
        .upstream_with("wrong_name", up.addr, "tls: true\nsni: other.internal")
        .route("secure", "/secure", "secure", "")
        .route("wrong", "/wrong", "wrong_name", "")
        .start();
    let resp = client().get(proxy.url("/secure/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["headers"]["x-upstream-tls"], "yes");
    assert_eq!(got["path"], "/secure/x");

    // A certificate for another name is refused: 502, not a silent downgrade.
    let resp = client().get(proxy.url("/wrong")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        error_code(&resp.bytes().await.unwrap()),
        "UPSTREAM_UNAVAILABLE"
    );
}
