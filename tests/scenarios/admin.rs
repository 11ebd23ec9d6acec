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

/// `GET`/`PUT /admin/logging` and `GET /admin/config` (docs/operations.md#runtime-log-level-and-effective-config):
/// behind the admin token, a bad filter is a 400 that changes nothing, `palisade admin` drives
/// the same API, and the config dump is the effective one with credentials redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filter_and_effective_config_at_run_time() {
    use palisade_proxy::telemetry::logging;
    use palisade_proxy::telemetry::spec::LogFormat;

    // The subscriber is process-wide; `off` keeps the other tests' output quiet.
    logging::init(LogFormat::Json, "off");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "op-admin-token-0123456789abcdef0123456789\n").unwrap();
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .top_yaml(&format!(
            "authentication:\n  revocation: {{admin_token_file: \"{}\"}}\n\
             tracing:\n  endpoint: \"https://otel:S3cret-otlp@collector.example:4318\"",
            token_file.display()
        ))
        .start();
    let c = client();
    let admin = |method: http::Method, path: &str, bearer: Option<&str>| {
        let mut req = c.request(method, proxy.admin_url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req
    };
    let token = Some("op-admin-token-0123456789abcdef0123456789");

    for path in ["/admin/logging", "/admin/config"] {
        let resp = admin(http::Method::GET, path, None).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let resp = admin(http::Method::GET, path, Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = admin(http::Method::PUT, "/admin/logging", None)
        .body("debug")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let get_filter = || async move {
        let resp = admin(http::Method::GET, "/admin/logging", token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<serde_json::Value>().await.unwrap()["filter"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(get_filter().await, "off");
    let resp = admin(http::Method::PUT, "/admin/logging", token)
        .body("error,palisade_proxy::admin=off")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["filter"], get_filter().await);
    assert!(get_filter().await.contains("palisade_proxy::admin=off"));

    // Bad filters: the documented 400 body, and the filter in force is unchanged.
    for bad in [
        "",
        "palisade_proxy=loudest",
        "{\"filter\": 3}",
        "{\"level\": \"x\"}",
    ] {
        let resp = admin(http::Method::PUT, "/admin/logging", token)
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let body = resp.bytes().await.unwrap();
        assert_eq!(palisade_e2e::error_code(&body), "INVALID_REQUEST", "{bad}");
    }
    assert!(get_filter().await.contains("palisade_proxy::admin=off"));
    let resp = admin(http::Method::PUT, "/admin/logging", token)
        .body(vec![0xff, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // `palisade admin log-level FILTER` and `palisade admin config` use the same API.
    let cli = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["palisade".into(), "admin".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([
            "--admin".into(),
            proxy.running.admin.to_string(),
            "--token-file".into(),
            token_file.display().to_string(),
        ]);
        tokio::task::spawn_blocking(move || palisade_proxy::cli::main_from(args))
    };
    assert_eq!(
        cli(&["log-level", "off"]).await.unwrap(),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(get_filter().await, "off");
    assert_eq!(
        cli(&["log-level", "nope=loudest"]).await.unwrap(),
        std::process::ExitCode::FAILURE
    );
    assert_eq!(
        cli(&["config"]).await.unwrap(),
        std::process::ExitCode::SUCCESS
    );

    let resp = admin(http::Method::GET, "/admin/config", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let text = resp.text().await.unwrap();
    assert!(!text.contains("S3cret"), "{text}");
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        config["tracing"]["endpoint"],
        "https://***@collector.example:4318"
    );
    assert_eq!(config["routes"][0]["name"], "api");
    assert_eq!(
        config["authentication"]["revocation"]["admin_token_file"],
        token_file.display().to_string()
    );
    assert_eq!(config["server"]["log_level"], "warn");
}
