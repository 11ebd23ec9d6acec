//! [`OtlpHttpClient`]: OpenTelemetry's OTLP/HTTP exporter over `reqwest` (rustls), so the proxy
//! and the orchestrator link no second HTTP stack (feature `otlp`).

/// An `opentelemetry_http::HttpClient` over a `reqwest::Client`; hand it to
/// `SpanExporter::builder().with_http().with_http_client(..)`.
#[derive(Debug, Clone)]
pub struct OtlpHttpClient(pub reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let mut out = http::Response::builder().status(status).body(body)?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}
