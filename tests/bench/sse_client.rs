//! `bench-sse`: opens concurrent SSE streams and measures the latency each event picked up on
//! its way from `bench-upstream` to here.
//!
//! ```text
//! bench-sse --url http://127.0.0.1:PORT/sse?events=200&interval_ms=10 \
//!           [--streams 50] [--events 200] [--timeout-s 60] [--stagger-ms 0] [--threads 1] \
//!           [--header 'Name: value']... [--ready-file PATH]
//! ```
//!
//! `--stagger-ms` spreads the stream starts evenly over that many milliseconds (pass the event
//! interval, so the streams' events interleave instead of all firing at once). `--header` (any
//! number of times) adds a request header to every stream, e.g. `Authorization: Bearer …`.
//! `--ready-file` is written (empty) once every stream has received its first event: a script
//! waiting for it knows that all streams are open at once, e.g. to read a proxy's memory while
//! they idle (the upstream's `interval_ms` is how long they idle).
//!
//! Every event's data carries the upstream's emit time (`"ts"`, ns since the UNIX epoch); the
//! client reads the wall clock (`SystemTime`) as soon as the chunk completing the event arrives.
//! Both ends run on the same machine, so they share the clock. Prints one JSON object:
//! `{"streams":…,"events":…,"expected_events":…,"failed_streams":…,"elapsed_s":…,
//! "events_per_s":…,"p50_us":…,"p90_us":…,"p99_us":…,"max_us":…,"first_event_p50_us":…,
//! "first_event_p99_us":…}`, and exits non-zero when a stream failed or delivered fewer events
//! than `--events`. `first_event_*` is the time from sending a stream's request to its first
//! event (the upstream sends one at once): the request path's latency, where the other figures
//! are the relay's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use palisade_wire::sse::{SseItem, SseParser};

struct Options {
    url: String,
    streams: usize,
    events: usize,
    timeout: Duration,
    stagger: Duration,
    threads: usize,
    headers: reqwest::header::HeaderMap,
    ready_file: Option<PathBuf>,
}

/// What one stream saw.
struct StreamResult {
    latencies_ns: Vec<i64>,
    /// From sending the request to the first event.
    first_event_ns: Option<i64>,
    error: Option<String>,
}

/// Counts streams that have their first event; the last one writes the ready file.
struct Ready {
    seen: AtomicUsize,
    of: usize,
    file: Option<PathBuf>,
}

impl Ready {
    fn first_event(&self) {
        if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.of {
            if let Some(file) = &self.file {
                if let Err(e) = std::fs::write(file, b"") {
                    eprintln!("bench-sse: writing {}: {e}", file.display());
                }
            }
        }
    }
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-sse: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = runtime.block_on(run(&options));
    std::process::exit(if ok { 0 } else { 1 });
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        url: String::new(),
        streams: 50,
        events: 200,
        timeout: Duration::from_secs(60),
        stagger: Duration::ZERO,
        threads: 1,
        headers: reqwest::header::HeaderMap::new(),
        ready_file: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--url" => o.url = value()?,
            "--streams" => o.streams = num(value()?)?,
            "--events" => o.events = num(value()?)?,
            "--timeout-s" => o.timeout = Duration::from_secs(num(value()?)? as u64),
            "--stagger-ms" => o.stagger = Duration::from_millis(num(value()?)? as u64),
            "--threads" => o.threads = num(value()?)?,
            "--ready-file" => o.ready_file = Some(PathBuf::from(value()?)),
            "--header" => {
                let header = value()?;
                let (name, val) = header
                    .split_once(':')
                    .ok_or(format!("--header {header:?}: expected 'Name: value'"))?;
                let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|e| format!("--header {name:?}: {e}"))?;
                let val = reqwest::header::HeaderValue::from_str(val.trim())
                    .map_err(|e| format!("--header value for {name}: {e}"))?;
                o.headers.append(name, val);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(o)
}

async fn run(o: &Options) -> bool {
    let client = palisade_e2e::client_builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(o.streams)
        .default_headers(o.headers.clone())
        .build()
        .expect("http client");
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + o.timeout;
    let ready = Arc::new(Ready {
        seen: AtomicUsize::new(0),
        of: o.streams,
        file: o.ready_file.clone(),
    });
    // Spread the stream starts over one interval so the upstream's ticks do not all fire at
    // the same instant: a burst of `streams` simultaneous events measures queueing in the
    // client and the upstream more than anything in between.
    let tasks: Vec<_> = (0..o.streams)
        .map(|i| {
            let delay = o.stagger * i as u32 / o.streams as u32;
            tokio::spawn(one_stream(
                client.clone(),
                o.url.clone(),
                delay,
                deadline,
                ready.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::with_capacity(o.streams * o.events);
    let mut first_events = Vec::with_capacity(o.streams);
    let mut failed = 0usize;
    let mut short = 0usize;
    for task in tasks {
        let result = task.await.unwrap_or_else(|e| StreamResult {
            latencies_ns: Vec::new(),
            first_event_ns: None,
            error: Some(format!("task: {e}")),
        });
        if let Some(error) = &result.error {
            failed += 1;
            if failed <= 3 {
                eprintln!("bench-sse: stream failed: {error}");
            }
        } else if result.latencies_ns.len() < o.events {
            short += 1;
        }
        latencies.extend(result.latencies_ns);
        first_events.extend(result.first_event_ns);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    first_events.sort_unstable();
    let pct = |p: f64| percentile_us(&latencies, p);
    let report = serde_json::json!({
        "streams": o.streams,
        "events": latencies.len(),
        "expected_events": o.streams * o.events,
        "failed_streams": failed,
        "short_streams": short,
        "elapsed_s": elapsed,
        "events_per_s": latencies.len() as f64 / elapsed,
        "p50_us": pct(50.0),
        "p90_us": pct(90.0),
        "p99_us": pct(99.0),
        "max_us": pct(100.0),
        "first_event_p50_us": percentile_us(&first_events, 50.0),
        "first_event_p99_us": percentile_us(&first_events, 99.0),
    });
    println!("{report}");
    failed == 0 && short == 0
}

async fn one_stream(
    client: reqwest::Client,
    url: String,
    delay: Duration,
    deadline: tokio::time::Instant,
    ready: Arc<Ready>,
) -> StreamResult {
    let mut out = StreamResult {
        latencies_ns: Vec::new(),
        first_event_ns: None,
        error: None,
    };
    let read = async {
        tokio::time::sleep(delay).await;
        let sent = Instant::now();
        let resp = client
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let mut parser = SseParser::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("body: {e}"))?;
            let now = now_ns();
            parser.push(&chunk);
            while let Some(item) = parser.next_item() {
                if let Ok(SseItem::Event(event)) = item {
                    let ts = event
                        .data
                        .as_deref()
                        .and_then(emit_ts)
                        .ok_or("event without ts")?;
                    out.latencies_ns.push(now - ts);
                    if out.first_event_ns.is_none() {
                        out.first_event_ns = Some(sent.elapsed().as_nanos() as i64);
                        ready.first_event();
                    }
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.error = Some(e),
        Err(_) => out.error = Some("timed out".into()),
    }
    out
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The `ts` field of `{"seq":…,"ts":…}`.
fn emit_ts(data: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    value.get("ts")?.as_i64()
}

/// The `p`th percentile (nearest rank) of sorted nanosecond samples, in microseconds.
fn percentile_us(sorted_ns: &[i64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns[idx] as f64 / 1000.0
}
