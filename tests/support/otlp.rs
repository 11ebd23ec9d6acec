//! Test OpenTelemetry collectors on port 0: an OTLP/HTTP receiver (`POST /v1/traces`, protobuf)
//! and an OTLP/gRPC one (`TraceService/Export` over h2c, answered by hand so no gRPC server stack
//! is needed), both keeping every span they decode; and [`hex`] to compare ids.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::routing::post;
use axum::Router;
use http_body_util::StreamBody;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// Every span a receiver decoded, in arrival order.
pub type Spans = Arc<Mutex<Vec<Span>>>;

/// Lowercase hex of a trace or span id (`trace_id`, `span_id`, `parent_span_id`).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keep(sink: &Spans, request: ExportTraceServiceRequest) {
    let mut sink = sink.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            sink.extend(scope.spans);
        }
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    addr
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` bodies.
pub async fn http_receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    let router = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                keep(&sink, request);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    (serve(router).await, spans)
}

/// An OTLP/gRPC receiver: `TraceService/Export` over h2c, answered by hand (length-prefixed
/// protobuf, `grpc-status` trailer).
pub async fn grpc_receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    let router = Router::new().route(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                assert!(body.len() >= 5 && body[0] == 0, "uncompressed gRPC frame");
                let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
                let request =
                    ExportTraceServiceRequest::decode(&body[5..5 + len]).expect("OTLP protobuf");
                keep(&sink, request);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let frames = futures::stream::iter([
                    Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(
                        &[0, 0, 0, 0, 0],
                    ))),
                    Ok(http_body::Frame::trailers(trailers)),
                ]);
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(Body::new(StreamBody::new(frames)))
                    .unwrap()
            }
        }),
    );
    (serve(router).await, spans)
}
