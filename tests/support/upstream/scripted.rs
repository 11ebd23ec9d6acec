//! [`ScriptedUpstream`]: one raw HTTP/1.1 server on port 0 that plays a script per path — a fixed
//! answer, JSON, SSE frames (paced, cut at arbitrary byte boundaries, then ending, dying or
//! hanging), a forward to another server, or silence — and records every request it received.
//!
//! ```no_run
//! # async fn demo() {
//! use palisade_e2e::upstream::ScriptedUpstream;
//! use serde_json::json;
//! let agent = ScriptedUpstream::new()
//!     .json("/mcp", json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
//!     .sse("/agent/slow", [json!({"type": "RUN_STARTED"})])
//!     .pace(std::time::Duration::from_millis(50))
//!     .then_hang()
//!     .sse("/agent", [json!({"type": "RUN_STARTED"}), json!({"type": "RUN_FINISHED"})])
//!     .start()
//!     .await;
//! // … send requests through the proxy to `agent.addr` …
//! let seen = agent.requests(); // method, path, headers, body of each
//! # }
//! ```
//!
//! A request goes to the route with the longest path prefix of its path (ties: the first added);
//! a route limited by [`ScriptedUpstream::times`] steps aside once used up. Unmatched requests get
//! `404`. Connections are kept alive between fully answered requests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Upstream;

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// Header names lowercased, values as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What an upstream observed; shared between its server task and the test.
#[derive(Default)]
pub(super) struct Record {
    pub(super) requests: Vec<Received>,
    pub(super) closed: Vec<Instant>,
}

/// The shared, lockable [`Record`].
pub(super) type Log = Arc<Mutex<Record>>;

/// How a stream ends once its frames are out.
#[derive(Clone, Copy)]
enum End {
    /// The terminating chunk: a clean end of the response.
    Finish,
    /// A TCP reset without the terminating chunk: the process "died".
    Die,
    /// Stays open, an SSE comment every 20 ms (so a hang-up shows as a failed write, recorded in
    /// [`Upstream::closed`]) for up to 10 s, then closes without finishing.
    Hang,
}

#[derive(Clone)]
struct Stream {
    frames: Vec<String>,
    pace: Duration,
    split_every: Option<usize>,
    whole: bool,
    end: End,
}

#[derive(Clone)]
enum Reply {
    Fixed {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Sse(Stream),
    Forward(String),
    Silent,
}

struct Route {
    path: String,
    times: Option<usize>,
    reply: Reply,
}

/// Builder for a scripted upstream; see the module docs.
#[derive(Default)]
pub struct ScriptedUpstream {
    routes: Vec<Route>,
}

impl ScriptedUpstream {
    /// No routes yet: every request gets `404`.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, path: &str, reply: Reply) -> Self {
        self.routes.push(Route {
            path: path.to_string(),
            times: None,
            reply,
        });
        self
    }

    /// Answers requests under `path` with `status`, `headers` and `body` (`content-length` set).
    pub fn respond(
        self,
        path: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Self {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.add(
            path,
            Reply::Fixed {
                status,
                headers,
                body: body.into(),
            },
        )
    }

    /// Answers requests under `path` with `200` and `value` as `application/json`.
    pub fn json(self, path: &str, value: Value) -> Self {
        self.respond(
            path,
            200,
            &[("content-type", "application/json")],
            value.to_string(),
        )
    }

    /// Answers requests under `path` with a `text/event-stream` of one `data: <json>` frame per
    /// event, chunked (one chunk per frame), then a clean end. Shape it with
    /// [`pace`](Self::pace), [`split_every`](Self::split_every),
    /// [`line_ending`](Self::line_ending), [`whole`](Self::whole), [`then_die`](Self::then_die)
    /// and [`then_hang`](Self::then_hang).
    pub fn sse(self, path: &str, events: impl IntoIterator<Item = Value>) -> Self {
        let frames = events
            .into_iter()
            .map(|e| format!("data: {e}\n\n"))
            .collect();
        self.add(
            path,
            Reply::Sse(Stream {
                frames,
                pace: Duration::ZERO,
                split_every: None,
                whole: false,
                end: End::Finish,
            }),
        )
    }

    /// Forwards requests under `path` to `base_url` + the request's path (buffered; method,
    /// headers and body passed on) and relays status, `content-type` and body; `502` when the
    /// forward fails.
    pub fn forward(self, path: &str, base_url: &str) -> Self {
        self.add(path, Reply::Forward(base_url.trim_end_matches('/').into()))
    }

    /// Reads requests under `path` and never answers.
    pub fn silent(self, path: &str) -> Self {
        self.add(path, Reply::Silent)
    }

    /// The last route answers only its first `n` requests, then steps aside for the next match.
    pub fn times(mut self, n: usize) -> Self {
        self.last().times = Some(n);
        self
    }

    /// The last route's stream waits `interval` after each chunk it writes.
    pub fn pace(mut self, interval: Duration) -> Self {
        self.stream().pace = interval;
        self
    }

    /// The last route's stream is cut every `bytes` bytes (on char boundaries) instead of per
    /// frame, so events, lines and JSON strings arrive split across chunks.
    pub fn split_every(mut self, bytes: usize) -> Self {
        self.stream().split_every = Some(bytes);
        self
    }

    /// The last route's frames end with `ending` (`"\r\n"`, `"\r"`) instead of `"\n"`.
    pub fn line_ending(mut self, ending: &str) -> Self {
        for frame in &mut self.stream().frames {
            *frame = frame.replace('\n', ending);
        }
        self
    }

    /// The last route's stream goes out as one body with `content-length` (as a buffering
    /// server would send it) instead of chunked.
    pub fn whole(mut self) -> Self {
        self.stream().whole = true;
        self
    }

    /// After its frames, the last route's stream resets the connection (no terminating chunk).
    pub fn then_die(mut self) -> Self {
        self.stream().end = End::Die;
        self
    }

    /// After its frames, the last route's stream stays open, writing an SSE comment every 20 ms
    /// for up to 10 s; when the other side hangs up, the time lands in [`Upstream::closed`].
    pub fn then_hang(mut self) -> Self {
        self.stream().end = End::Hang;
        self
    }

    fn last(&mut self) -> &mut Route {
        self.routes.last_mut().expect("add a route first")
    }

    fn stream(&mut self) -> &mut Stream {
        match &mut self.last().reply {
            Reply::Sse(stream) => stream,
            _ => panic!("the last route is not an SSE stream"),
        }
    }

    /// Binds 127.0.0.1:0 and serves the script on the test's runtime.
    pub async fn start(self) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let log = Log::default();
        let routes = Arc::new(Mutex::new(self.routes));
        let record = log.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, routes.clone(), record.clone()));
            }
        });
        Upstream { addr, log }
    }
}

/// Picks the reply for `path`: the longest matching prefix with uses left, counting one use.
fn pick(routes: &Mutex<Vec<Route>>, path: &str) -> Option<Reply> {
    let path = path.split('?').next().unwrap_or(path);
    let mut routes = routes.lock().unwrap();
    let mut best: Option<&mut Route> = None;
    for route in routes.iter_mut() {
        if path.starts_with(&route.path)
            && route.times != Some(0)
            && best
                .as_ref()
                .is_none_or(|b| route.path.len() > b.path.len())
        {
            best = Some(route);
        }
    }
    let route = best?;
    if let Some(n) = &mut route.times {
        *n -= 1;
    }
    Some(route.reply.clone())
}

async fn serve(mut sock: TcpStream, routes: Arc<Mutex<Vec<Route>>>, log: Log) {
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut sock, &mut buf).await {
        let reply = pick(&routes, &request.path);
        log.lock().unwrap().requests.push(request.clone());
        let done = match reply {
            None => write_fixed(&mut sock, 404, &[], b"no script for this path").await,
            Some(Reply::Fixed {
                status,
                headers,
                body,
            }) => write_fixed(&mut sock, status, &headers, &body).await,
            Some(Reply::Forward(base)) => forward(&mut sock, &base, &request).await,
            Some(Reply::Sse(stream)) => write_stream(&mut sock, &stream, &log).await,
            Some(Reply::Silent) => std::future::pending().await,
        };
        if !done {
            return;
        }
    }
}

fn head(status: u16, headers: &[(String, String)]) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head
}

/// Writes a complete response; whether the connection can serve another request.
async fn write_fixed(
    sock: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> bool {
    let mut out = head(status, headers);
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    sock.write_all(&out).await.is_ok()
}

async fn forward(sock: &mut TcpStream, base: &str, request: &Received) -> bool {
    let method = http::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut out = crate::client_builder()
        .build()
        .unwrap()
        .request(method, format!("{base}{}", request.path))
        .timeout(Duration::from_secs(20))
        .body(request.body.clone());
    for (k, v) in &request.headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            out = out.header(k, v);
        }
    }
    match out.send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let content_type = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let body = answer.bytes().await.unwrap_or_default();
            let headers = [("content-type".to_string(), content_type)];
            write_fixed(sock, status, &headers, &body).await
        }
        Err(_) => write_fixed(sock, 502, &[], b"forward failed").await,
    }
}

/// Plays `stream`; whether the connection can serve another request.
async fn write_stream(sock: &mut TcpStream, stream: &Stream, log: &Log) -> bool {
    let content_type = [("content-type".to_string(), "text/event-stream".to_string())];
    let whole = stream.frames.concat();
    if stream.whole {
        return write_fixed(sock, 200, &content_type, whole.as_bytes()).await;
    }
    let closed = || log.lock().unwrap().closed.push(Instant::now());
    let head = head(200, &content_type) + "transfer-encoding: chunked\r\n\r\n";
    if sock.write_all(head.as_bytes()).await.is_err() {
        closed();
        return false;
    }
    let pieces = match stream.split_every {
        Some(n) => split(&whole, n),
        None => stream.frames.clone(),
    };
    let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
    for piece in pieces {
        if sock.write_all(chunk(&piece).as_bytes()).await.is_err() {
            closed();
            return false;
        }
        sock.flush().await.ok();
        tokio::time::sleep(stream.pace).await;
    }
    match stream.end {
        End::Finish => sock.write_all(b"0\r\n\r\n").await.is_ok(),
        End::Die => {
            #[allow(deprecated)]
            sock.set_linger(Some(Duration::ZERO)).ok();
            false
        }
        End::Hang => {
            for _ in 0..500 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if sock
                    .write_all(chunk(": ping\n\n").as_bytes())
                    .await
                    .is_err()
                {
                    closed();
                    break;
                }
            }
            false
        }
    }
}

/// `text` cut every `n` bytes, on char boundaries.
fn split(text: &str, n: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut to = (at + n).min(text.len());
        while !text.is_char_boundary(to) {
            to += 1;
        }
        pieces.push(text[at..to].to_string());
        at = to;
    }
    pieces
}

/// Reads one request from `sock` (bytes past it stay in `buf` for the next); `None` when the
/// connection ends first.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(sock, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let (method, path) = (request_line.next()?, request_line.next()?);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    buf.drain(..head_end);
    let body = if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(sock, buf).await?
    } else {
        let len = value("content-length").map_or(0, |v| v.parse().unwrap_or(0));
        while buf.len() < len {
            fill(sock, buf).await?;
        }
        buf.drain(..len).collect()
    };
    Some(Received {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body,
    })
}

async fn read_chunked(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(sock, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        // The chunk, its CRLF; the last (empty) chunk is followed by (no trailers) one CRLF.
        while buf.len() < line_end + 2 + size + 2 {
            fill(sock, buf).await?;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Some(body);
        }
    }
}

async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut bytes = [0u8; 4096];
    match sock.read(&mut bytes).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&bytes[..n]);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests;
