//! OpenTelemetry end to end: a test OTLP/HTTP receiver (decoding the protobuf export requests)
//! gets the request span with the client's span as parent and the stage spans as its children;
//! the trace context reaches the upstream; logs' and error bodies' trace id is the client's.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use palisade_e2e::otlp::{self, hex};
use palisade_e2e::{error_code, eventually, upstream, TestProxy};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_stage_spans_reach_the_collector_under_the_clients_trace() {
    let (collector, spans) = otlp::http_receiver().await;
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .top_yaml(&format!(
            "tracing:\n  enabled: true\n  endpoint: http://{collector}\n  protocol: http_protobuf\n  sampling_ratio: 1.0\n"
        ))
        .start();
    let client = palisade_e2e::client();
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let resp = client
        .get(proxy.url("/api/x"))
        .header("traceparent", &traceparent)
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: serde_json::Value = resp.json().await.unwrap();
    let upstream_parent = echoed["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(parts[1], TRACE, "the upstream continues the client's trace");
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "and names the proxy's span as its parent"
    );
    assert_eq!(parts[3], "01");
    assert_eq!(echoed["headers"]["tracestate"], "vendor=abc");

    // A refusal's body carries the same trace id.
    let missing = client
        .get(proxy.url("/nowhere"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    let body = missing.bytes().await.unwrap();
    assert_eq!(error_code(&body), "NOT_FOUND");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["trace_id"], TRACE);

    // A request with a body gets the body stages' `guard` span.
    let posted = client
        .post(proxy.url("/api/post?sig=S3cret-signature"))
        .header("traceparent", &traceparent)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);

    // A method outside the standard set: `_OTHER` in the span, never a name a client chose.
    let brewed = client
        .request(
            reqwest::Method::from_bytes(b"BREW").unwrap(),
            proxy.url("/api/pot"),
        )
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(brewed.status(), 200);

    // Stopping flushes the exporter.
    proxy.stop().await;
    let spans = eventually(Duration::from_secs(10), || {
        let spans = spans.lock().unwrap();
        let ours: Vec<Span> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == TRACE)
            .cloned()
            .collect();
        (ours
            .iter()
            .filter(|s| hex(&s.parent_span_id) == CLIENT_SPAN)
            .count()
            == 4)
            .then_some(ours)
    })
    .await
    .expect("four request spans (GET 200, 404, POST, BREW) with the client's span as parent");
    // Span names follow OpenTelemetry's HTTP conventions: `{method} {route template}`, or just
    // the method when nothing was routed; never the raw path.
    let mut names: Vec<&str> = spans
        .iter()
        .filter(|s| hex(&s.parent_span_id) == CLIENT_SPAN)
        .map(|s| s.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["GET", "GET /api", "HTTP /api", "POST /api"]);
    let request = spans
        .iter()
        .find(|s| hex(&s.parent_span_id) == CLIENT_SPAN && s.name == "GET /api")
        .expect("the routed request's span");
    let request_id = hex(&request.span_id);
    assert_eq!(parts[2], request_id, "upstream parent = the request span");
    let attr = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
    };
    assert!(attr(request, "http.response.status_code").is_some_and(|v| v.contains("200")));
    assert!(attr(request, "http.route").is_some_and(|v| v.contains("\"/api\"")));
    assert!(attr(request, "palisade.route").is_some_and(|v| v.contains("\"api\"")));
    assert!(attr(request, "url.path").is_some_and(|v| v.contains("/api/x")));
    let brew = spans.iter().find(|s| s.name == "HTTP /api").unwrap();
    assert!(attr(brew, "http.request.method").is_some_and(|v| v.contains("_OTHER")));
    assert!(attr(brew, "http.request.method_original").is_some_and(|v| v.contains("BREW")));
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| hex(&s.parent_span_id) == request_id)
        .map(|s| s.name.as_str())
        .collect();
    for stage in ["identify", "authorize", "limit", "upstream"] {
        assert!(children.contains(&stage), "no {stage} span in {children:?}");
    }
    let limit = spans
        .iter()
        .find(|s| s.name == "limit" && hex(&s.parent_span_id) == request_id)
        .unwrap();
    assert!(attr(limit, "ratelimit.outcome").is_some_and(|v| v.contains("allowed")));
    let post = spans
        .iter()
        .find(|s| s.name == "POST /api")
        .expect("the POST's span");
    let post_id = hex(&post.span_id);
    assert!(
        spans
            .iter()
            .any(|s| s.name == "guard" && hex(&s.parent_span_id) == post_id),
        "no guard span under the POST"
    );

    // The client span to the upstream: OpenTelemetry HTTP client attributes, and a URL without
    // the query string (it may carry secrets).
    let upstream_of = |parent: &str| {
        spans
            .iter()
            .find(|s| s.name == "upstream" && hex(&s.parent_span_id) == parent)
            .expect("an upstream span")
    };
    let up = upstream_of(&request_id);
    assert_eq!(
        up.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Client as i32
    );
    assert_eq!(
        attr(up, "server.address").as_deref(),
        Some("StringValue(\"127.0.0.1\")")
    );
    assert_eq!(
        attr(up, "server.port"),
        Some(format!("IntValue({})", echo.addr.port()))
    );
    assert_eq!(
        attr(up, "url.full"),
        Some(format!("StringValue(\"http://{}/api/x\")", echo.addr))
    );
    let up = upstream_of(&post_id);
    assert_eq!(
        attr(up, "url.full"),
        Some(format!("StringValue(\"http://{}/api/post\")", echo.addr))
    );
    for span in spans.iter() {
        for kv in &span.attributes {
            let value = format!("{:?}", kv.value);
            assert!(
                !value.contains("S3cret"),
                "{} {}: {value}",
                span.name,
                kv.key
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_the_client_trace_still_propagates() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .start();
    let resp = palisade_e2e::client()
        .get(proxy.url("/api"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    let echoed: serde_json::Value = resp.json().await.unwrap();
    let upstream_parent = echoed["headers"]["traceparent"].as_str().unwrap();
    assert!(upstream_parent.starts_with(&format!("00-{TRACE}-")));
    assert_eq!(echoed["headers"]["tracestate"], "vendor=abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_grpc_too() {
    let (collector, spans) = otlp::grpc_receiver().await;
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .top_yaml(&format!(
            "tracing:\n  enabled: true\n  endpoint: http://{collector}\n  protocol: grpc\n"
        ))
        .start();
    let resp = palisade_e2e::client()
        .get(proxy.url("/api/grpc"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    proxy.stop().await;
    let spans = once_the_request_span_arrives(&spans)
        .await
        .expect("the request span arrived over gRPC");
    let request = spans
        .iter()
        .find(|s| hex(&s.parent_span_id) == CLIENT_SPAN)
        .unwrap();
    assert_eq!(hex(&request.trace_id), TRACE);
    let request_id = hex(&request.span_id);
    let children = spans
        .iter()
        .filter(|s| hex(&s.parent_span_id) == request_id)
        .count();
    assert!(children >= 4, "{spans:?}");
}

/// An `https` gRPC collector behind a private CA: spans arrive when `tracing.ca_file` names the
/// CA, and none when it doesn't (the handshake fails; nothing is sent in the clear instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_grpc_with_tls_to_a_private_ca() {
    let (ca_pem, leaf_pem, leaf_key) = upstream::private_ca("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("collector-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let echo = upstream::echo().await;
    let export = |collector: std::net::SocketAddr, ca: &str| {
        TestProxy::new()
            .upstream("echo", echo.addr)
            .route("api", "/api", "echo", "")
            .top_yaml(&format!(
                "tracing:\n  enabled: true\n  endpoint: https://{collector}\n  protocol: grpc\n{ca}"
            ))
            .start()
    };
    let send = |proxy: &palisade_e2e::Proxy| {
        let request = palisade_e2e::client()
            .get(proxy.url("/api/grpc-tls"))
            .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"));
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = format!("{:?}", resp.headers());
            (status, format!("{headers} {}", resp.text().await.unwrap()))
        }
    };

    let (untrusted_at, untrusted_spans) = otlp::grpc_receiver().await;
    let untrusted_front = upstream::tls_front_h2(untrusted_at, &leaf_pem, &leaf_key).await;
    let untrusting = export(untrusted_front, "");
    let (status, answer) = send(&untrusting).await;
    assert_eq!(status, 200, "{answer}");
    untrusting.stop().await; // flushes: the export is attempted, and fails the handshake

    let (collector, spans) = otlp::grpc_receiver().await;
    let front = upstream::tls_front_h2(collector, &leaf_pem, &leaf_key).await;
    let trusting = export(front, &format!("  ca_file: \"{}\"\n", ca_file.display()));
    let (status, answer) = send(&trusting).await;
    assert_eq!(status, 200, "{answer}");
    trusting.stop().await;
    let spans = once_the_request_span_arrives(&spans)
        .await
        .expect("the request span arrived over gRPC with TLS");
    assert!(spans.iter().all(|s| hex(&s.trace_id) == TRACE), "{spans:?}");
    assert!(
        untrusted_spans.lock().unwrap().is_empty(),
        "no span reached a collector whose CA is not trusted"
    );
}

/// Every span received, once the one whose parent is the client's span is among them (10 s).
async fn once_the_request_span_arrives(spans: &otlp::Spans) -> Option<Vec<Span>> {
    eventually(Duration::from_secs(10), || {
        let spans = spans.lock().unwrap();
        spans
            .iter()
            .any(|s| hex(&s.parent_span_id) == CLIENT_SPAN)
            .then(|| spans.clone())
    })
    .await
}
