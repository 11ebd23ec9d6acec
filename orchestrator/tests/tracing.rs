//! OpenTelemetry: a run's spans reach an OTLP/HTTP receiver under the caller's trace (the
//! proxy's span is the parent of `agent.run`), with model calls (`chat offline`) and tool calls as children.

mod support;

use opentelemetry_proto::tonic::trace::v1::Span;
use palisade_orchestrator::otel::TracingConfig;
use palisade_orchestrator::{IdentityConfig, Orchestrator, OrchestratorConfig};
use serde_json::json;
use support::{attr_str, hex, otlp_receiver, spans_at_least};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PROXY_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_spans_continue_the_callers_trace() {
    let (collector, spans) = otlp_receiver().await;
    let cfg = OrchestratorConfig {
        word_delay: std::time::Duration::from_millis(0),
        identity: IdentityConfig {
            require_assertion: false,
            ..IdentityConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
        tracing: TracingConfig {
            otlp_endpoint: Some(collector),
            export_interval: std::time::Duration::from_millis(50),
            ..TracingConfig::default()
        },
        ..OrchestratorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Orchestrator::new(cfg).serve(listener, std::future::pending()));

    let body = http()
        .post(format!("http://{addr}/agent"))
        .header("traceparent", format!("00-{TRACE}-{PROXY_SPAN}-01"))
        .json(&json!({"threadId": "t", "runId": "r-traced",
            "messages": [{"id": "u", "role": "user", "content": "use calculator 1/0"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("RUN_FINISHED"), "{body}");

    // Two model turns and one tool call under the run span.
    let got = spans_at_least(&spans, 4).await;
    let named = |name: &str| -> Vec<&Span> { got.iter().filter(|s| s.name == name).collect() };
    let run = named("agent.run");
    assert_eq!(
        run.len(),
        1,
        "{:?}",
        got.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let run = run[0];
    assert_eq!(hex(&run.trace_id), TRACE);
    assert_eq!(
        hex(&run.parent_span_id),
        PROXY_SPAN,
        "the proxy's span is the parent"
    );
    let turns = named("chat offline");
    let tools = named("tool.call");
    assert_eq!(turns.len(), 2);
    assert_eq!(tools.len(), 1);
    for turn in &turns {
        assert_eq!(turn.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(
            attr_str(turn, "gen_ai.provider.name").as_deref(),
            Some("palisade.offline")
        );
    }
    for child in turns.iter().chain(&tools) {
        assert_eq!(hex(&child.trace_id), TRACE);
        assert_eq!(child.parent_span_id, run.span_id);
    }
    // The failed tool call is marked as an error.
    let status = tools[0].status.as_ref().unwrap();
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert!(status.message.contains("division by zero"));
}

/// With no `tracing` in the config, the standard `OTEL_*` variables choose the endpoint, the
/// headers and the resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_otel_variables_configure_export() {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use opentelemetry::trace::SpanKind;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use palisade_orchestrator::otel::Telemetry;
    use palisade_orchestrator::trace::TraceContext;
    use prost::Message;

    type Seen = Arc<Mutex<Vec<(HeaderMap, ExportTraceServiceRequest)>>>;
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let router = axum::Router::new().route(
        "/custom/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                sink.lock().unwrap().push((headers, request));
                [("content-type", "application/x-protobuf")]
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });

    let endpoint = format!("http://{addr}/custom/traces");
    let env = move |k: &str| match k {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-api-key=k%2C1,x-tenant=acme".into()),
        "OTEL_SERVICE_NAME" => Some("orchestrator-eu".into()),
        "OTEL_RESOURCE_ATTRIBUTES" => Some("deployment.environment=staging".into()),
        _ => None,
    };
    let cfg = TracingConfig {
        export_interval: std::time::Duration::from_millis(50),
        ..TracingConfig::default()
    };
    let telemetry =
        Telemetry::start_with_env(&cfg, &palisade_orchestrator::tls::Trust::default(), env)
            .unwrap();
    let mut parent = TraceContext::from_header(Some(&format!("00-{TRACE}-{PROXY_SPAN}-01")));
    drop(telemetry.span("probe", SpanKind::Internal, &mut parent));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (headers, request) = seen.lock().unwrap().first().cloned().expect("an export");
    assert_eq!(headers["x-api-key"], "k,1", "percent-decoded");
    assert_eq!(headers["x-tenant"], "acme");
    let resource = request.resource_spans[0].resource.clone().unwrap();
    let attr = |key: &str| {
        resource
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.clone()?.value? {
                AnyValue::StringValue(s) => Some(s),
                _ => None,
            })
    };
    assert_eq!(attr("service.name").as_deref(), Some("orchestrator-eu"));
    assert_eq!(attr("deployment.environment").as_deref(), Some("staging"));
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "probe");
    assert_eq!(hex(&span.trace_id), TRACE);
    telemetry.shutdown();
}

/// A client for the orchestrator under test (plain HTTP; rustls configured as the binaries do).
fn http() -> reqwest::Client {
    palisade_orchestrator::tls::Trust::default()
        .client_builder()
        .build()
        .unwrap()
}
