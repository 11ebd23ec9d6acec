//! The admin listener: health, readiness, metrics.

use std::time::Duration;

use palisade_e2e::{client, upstream, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .start();
    let c = client();
    assert_eq!(
        c.get(proxy.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(proxy.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The admin endpoints are not on the public port.
    assert_eq!(
        c.get(proxy.url("/metrics")).send().await.unwrap().status(),
        404
    );

    c.get(proxy.url("/api/a")).send().await.unwrap();
    c.get(proxy.url("/nope")).send().await.unwrap(); // the second 404, after /metrics
    let expected = [
        r#"palisade_requests_total{method="GET",reason="ok",route="api",status="200"} 1"#,
        r#"palisade_requests_total{method="GET",reason="no_route",route="-",status="404"} 2"#,
        "palisade_request_duration_seconds_bucket",
        "palisade_response_bytes_total",
    ];
    // A request is counted in its `logging` phase, which runs just after the client has the
    // response: poll until the last one is in.
    let mut text = String::new();
    for _ in 0..100 {
        text = c
            .get(proxy.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if expected.iter().all(|e| text.contains(e)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for expected in expected {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_share_one_metric_series() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .start();
    let c = client();
    for method in ["FOO1", "FOO2", "FOO3"] {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        c.request(method, proxy.url("/api/a")).send().await.unwrap();
    }
    let expected =
        r#"palisade_requests_total{method="OTHER",reason="ok",route="api",status="200"} 3"#;
    let mut text = String::new();
    for _ in 0..100 {
        text = c
            .get(proxy.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains(expected), "missing {expected} in\n{text}");
    assert!(
        !text.contains("FOO"),
        "a raw method became a label:\n{text}"
    );
}
