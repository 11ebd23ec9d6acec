//! `bench-upstream`: the upstream every setup of `tests/bench/run.sh` forwards to.
//!
//! ```text
//! bench-upstream [--threads N] [--port P]   serve on 127.0.0.1:P (0 = any free port)
//! bench-upstream ports N                    print N free loopback ports, one a line
//! ```
//!
//! Serving prints `listening 127.0.0.1:<port>` once bound. Routes:
//! - `GET /small`: a fixed 100-byte `text/plain` body;
//! - `GET /sse?events=N&interval_ms=M`: an SSE stream of `N` events (default 200), one every `M`
//!   ms (default 10), each `data: {"seq":i,"ts":<ns since the UNIX epoch>}`. `ts` is read the
//!   moment the event is handed to the connection, so `arrival - ts` at a client on the same
//!   machine is the latency added by whatever sits in between.
//!
//! HTTP/1.1 and h2c (prior knowledge) are both served, so `h2load` can measure the direct path.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// The `/small` body: 100 bytes, newline-terminated.
const SMALL_BODY: &str = concat!(
    "palisade bench: a small response body of exactly one hundred bytes, ",
    "padded to size ................\n"
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("ports") {
        let n: usize = args.get(1).map_or(Ok(1), |s| s.parse())?;
        return print_free_ports(n);
    }
    let mut threads = 1usize;
    let mut port = 0u16;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--threads" => threads = it.next().ok_or("--threads needs a value")?.parse()?,
            "--port" => port = it.next().ok_or("--port needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Binds all `n` listeners before releasing any, so the ports are distinct.
fn print_free_ports(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let listeners = (0..n)
        .map(|_| StdListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    for l in &listeners {
        println!("{}", l.local_addr()?.port());
    }
    Ok(())
}

async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    let router = Router::new()
        .route("/small", get(small))
        .route("/sse", get(sse));
    axum::serve(listener, router).await?;
    Ok(())
}

async fn small() -> Response {
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from(SMALL_BODY))
        .expect("static response")
}

/// The numeric query parameter `name` of `uri`, if present and valid.
fn query_param(uri: &Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

async fn sse(uri: Uri) -> Response {
    let events = query_param(&uri, "events").unwrap_or(200);
    let interval = Duration::from_millis(query_param(&uri, "interval_ms").unwrap_or(10).max(1));
    // `text=1`: each event also carries a sentence of prose (what output guardrails scan).
    let text = if query_param(&uri, "text") == Some(1) {
        ",\"delta\":\"The quarterly report shows steady growth across all regions. \""
    } else {
        ""
    };
    let mut ticker = tokio::time::interval(interval);
    // A late tick shifts the schedule instead of bursting to catch up: every event is timed on
    // its own, so bursts would only add queueing that no proxy caused.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold((0u64, ticker), move |(seq, mut ticker)| async move {
        if seq >= events {
            return None;
        }
        ticker.tick().await;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let frame = Bytes::from(format!("data: {{\"seq\":{seq},\"ts\":{ts}{text}}}\n\n"));
        Some((Ok::<_, Infallible>(frame), (seq + 1, ticker)))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("static response")
}
