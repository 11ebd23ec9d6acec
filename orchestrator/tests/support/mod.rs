//! Shared test harness: an OTLP/HTTP receiver and a signer of proxy assertions.

#![allow(dead_code)] // each test file uses part of it

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::routing::post;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

/// Spans received so far.
pub type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a free loopback port: its base URL and its spans.
pub async fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut sink = sink.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        sink.extend(scope.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    (format!("http://{addr}"), spans)
}

/// Waits (up to 10 s) until `spans` holds at least `n` spans; returns them.
pub async fn spans_at_least(spans: &Spans, n: usize) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Span> = spans.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span attribute, as a string / integer / string array (`None` when absent).
pub fn attr(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

/// A string attribute.
pub fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        AnyValue::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An integer attribute.
pub fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        AnyValue::IntValue(n) => Some(n),
        _ => None,
    }
}

/// A string-array attribute.
pub fn attr_strings(span: &Span, key: &str) -> Option<Vec<String>> {
    match attr(span, key)? {
        AnyValue::ArrayValue(a) => a
            .values
            .into_iter()
            .map(|v| match v.value? {
                AnyValue::StringValue(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Signs assertions like the proxy does (ES256, key generated at test time).
pub struct Signer {
    key: EncodingKey,
    /// The public keys, for `Orchestrator::with_jwks`.
    pub jwks: JwkSet,
}

impl Signer {
    /// A fresh key pair.
    pub fn new() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("test".into());
        Self {
            key,
            jwks: JwkSet { keys: vec![jwk] },
        }
    }

    /// An `X-Palisade-Assertion` for `sub` in `tenant`, valid for a minute.
    pub fn assertion(&self, sub: &str, tenant: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("test".into());
        let claims = json!({"iss": "palisade", "sub": sub, "aud": "agent", "iat": now,
                            "exp": now + 60, "roles": ["user"], "tenant": tenant});
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}
