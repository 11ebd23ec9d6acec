//! Real upstreams on port 0. [`ScriptedUpstream`] plays a script per path (fixed answers, JSON,
//! SSE frames that end, die or hang, forwards, silence) and records what it received; the presets
//! here are built on it or on axum: an echo server (also behind TLS), a timed SSE server, one that
//! dies mid-stream, and one that never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

mod scripted;

use scripted::Log;
pub use scripted::{Received, ScriptedUpstream};

/// An upstream server running on the test's runtime, and what it received.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Log,
}

impl Upstream {
    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().requests.clone()
    }

    /// Every request received so far, removed from the record.
    pub fn take_requests(&self) -> Vec<Received> {
        std::mem::take(&mut self.log.lock().unwrap().requests)
    }

    /// The JSON body of every request received so far (`Null` for a body that is not JSON).
    pub fn bodies(&self) -> Vec<Value> {
        self.requests().iter().map(Received::json).collect()
    }

    /// When the other side hung up on a stream before it ended (scripted SSE streams only).
    pub fn closed(&self) -> Vec<Instant> {
        self.log.lock().unwrap().closed.clone()
    }
}

async fn serve(router: Router, log: Log) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    Upstream { addr, log }
}

/// Answers every request with JSON describing it: method, path (with query), headers, body size
/// (HTTP/1.1 and h2c).
pub async fn echo() -> Upstream {
    let log = Log::default();
    let record = log.clone();
    let router = Router::new().fallback(move |req: Request| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let headers: serde_json::Map<String, serde_json::Value> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            record.lock().unwrap().requests.push(Received {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
                body: body.to_vec(),
            });
            let json = serde_json::json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                "headers": headers,
                "body_len": body.len(),
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("connection", "keep-alive")
                .header("keep-alive", "timeout=5")
                .body(Body::from(json.to_string()))
                .unwrap()
        }
    });
    serve(router, log).await
}

/// How a [`sse`] upstream frames and fills its stream.
#[derive(Clone, Copy)]
pub struct SseScript {
    /// Time between events.
    pub interval: Duration,
    /// Number of payload events.
    pub count: usize,
    /// Line ending: `"\n"`, `"\r\n"` or `"\r"`.
    pub line_ending: &'static str,
    /// Emit AG-UI events (RUN_STARTED … RUN_FINISHED) instead of `{"seq":i}` payloads.
    pub agui: bool,
    /// For AG-UI: end with RUN_FINISHED (otherwise just close the stream).
    pub finish_run: bool,
}

impl Default for SseScript {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            count: 10,
            line_ending: "\n",
            agui: false,
            finish_run: true,
        }
    }
}

/// A timed SSE upstream and what it observed.
pub struct SseUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// When each payload event `seq` was handed to the connection.
    pub emitted: Arc<Mutex<Vec<Instant>>>,
    /// When a response stream was dropped before it finished (client or proxy went away).
    pub cancelled: Arc<Mutex<Option<Instant>>>,
}

struct CancelGuard {
    done: bool,
    cancelled: Arc<Mutex<Option<Instant>>>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            *self.cancelled.lock().unwrap() = Some(Instant::now());
        }
    }
}

/// Streams `script.count` events, one every `script.interval`, recording emit times.
pub async fn sse(script: SseScript) -> SseUpstream {
    let emitted = Arc::new(Mutex::new(Vec::new()));
    let cancelled = Arc::new(Mutex::new(None));
    let (em, ca) = (emitted.clone(), cancelled.clone());
    let router = Router::new().fallback(move |_req: Request| {
        let (emitted, cancelled) = (em.clone(), ca.clone());
        async move {
            let nl = script.line_ending;
            let stream = async_stream(script, emitted, cancelled, nl);
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    });
    let up = serve(router, Log::default()).await;
    SseUpstream {
        addr: up.addr,
        emitted,
        cancelled,
    }
}

fn async_stream(
    script: SseScript,
    emitted: Arc<Mutex<Vec<Instant>>>,
    cancelled: Arc<Mutex<Option<Instant>>>,
    nl: &'static str,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let frame = move |data: String| Bytes::from(format!("data: {data}{nl}{nl}"));
    let guard = CancelGuard {
        done: false,
        cancelled,
    };
    futures::stream::unfold((0usize, guard), move |(step, mut guard)| {
        let emitted = emitted.clone();
        async move {
            // Steps: [RUN_STARTED], payloads…, [RUN_FINISHED]
            let payload_start = usize::from(script.agui);
            let total =
                payload_start + script.count + usize::from(script.agui && script.finish_run);
            if step >= total {
                guard.done = true;
                drop(guard);
                return None;
            }
            if step >= payload_start && step < payload_start + script.count {
                tokio::time::sleep(script.interval).await;
            }
            let seq = step.wrapping_sub(payload_start);
            let data = if !script.agui {
                serde_json::json!({ "seq": seq }).to_string()
            } else if step == 0 {
                r#"{"type":"RUN_STARTED","threadId":"t","runId":"r"}"#.to_string()
            } else if step < payload_start + script.count {
                serde_json::json!({"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta": format!("w{seq} ")}).to_string()
            } else {
                r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r"}"#.to_string()
            };
            if step >= payload_start && step < payload_start + script.count {
                emitted.lock().unwrap().push(Instant::now());
            }
            Some((Ok(frame(data)), (step + 1, guard)))
        }
    })
}

/// An upstream that starts an SSE response, sends `events` AG-UI-shaped events 50 ms apart, then
/// resets the connection (the process "died").
pub async fn dying_sse(events: usize) -> Upstream {
    let frames = (0..events).map(|i| match i {
        0 => json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
        i => json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": i.to_string()}),
    });
    ScriptedUpstream::new()
        .sse("/", frames)
        .pace(Duration::from_millis(50))
        .then_die()
        .start()
        .await
}

/// Accepts connections and reads requests but never answers.
pub async fn silent() -> Upstream {
    ScriptedUpstream::new().silent("/").start().await
}

/// The [`echo`] upstream behind TLS with `cert_pem`/`key_pem` (HTTP/1.1).
pub async fn echo_tls(cert_pem: &str, key_pem: &str) -> Upstream {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let plain = echo().await; // reuse the echo handler through a loopback hop
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = plain.addr;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let router = Router::new().fallback(move |req: Request| async move {
                    // Forward to the plain echo server so the response describes this request.
                    let (parts, body) = req.into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .unwrap_or_default();
                    let mut forwarded = crate::client_builder().build().unwrap().request(
                        parts.method.clone(),
                        format!("http://{target}{}", parts.uri.path()),
                    );
                    for (k, v) in &parts.headers {
                        forwarded = forwarded.header(k, v);
                    }
                    let resp = forwarded
                        .header("x-upstream-tls", "yes")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(resp.bytes().await.unwrap()))
                        .unwrap()
                });
                let service = TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        log: plain.log,
    }
}

/// A private CA and a leaf for `name` (a host name or an IP address) signed by it:
/// (CA PEM, leaf PEM, leaf key PEM).
pub fn private_ca(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// A TLS terminator on a free loopback port in front of `target` (plain TCP), serving
/// `cert_pem` (chain, leaf first) and `key_pem`: bytes are piped both ways as they come.
/// No ALPN: clients speak HTTP/1.1.
pub async fn tls_front(target: SocketAddr, cert_pem: &str, key_pem: &str) -> SocketAddr {
    tls_front_alpn(target, cert_pem, key_pem, Vec::new()).await
}

/// [`tls_front`] selecting HTTP/2 through ALPN, for an h2c (e.g. gRPC) server behind it.
pub async fn tls_front_h2(target: SocketAddr, cert_pem: &str, key_pem: &str) -> SocketAddr {
    tls_front_alpn(target, cert_pem, key_pem, vec![b"h2".to_vec()]).await
}

async fn tls_front_alpn(
    target: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
    alpn: Vec<Vec<u8>>,
) -> SocketAddr {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let mut config = config;
    config.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}
