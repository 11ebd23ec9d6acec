//! Per-request cost of tracing and the audit record: `cargo bench -p palisade-proxy --bench
//! telemetry`.
//!
//! `spans/off` minus `spans/baseline` is what every request pays with tracing disabled (the
//! default): a request span,
//! three stage spans with an attribute each, the upstream span and the finish. `spans/sampled`
//! and `spans/unsampled` are the same with an OTLP exporter configured (to a closed port: the
//! batch processor queues and drops), with ratio 1.0 and 0.0. `audit/seal` is the writer's work
//! per record (canonical JSON + SHA-256), `audit/submit` the request side (one bounded-queue
//! send; the writer thread drains to a file in the temp dir).
//!
//! `audit/amortized` and `audit/amortized_cpu` are the whole trail per record: a sample submits
//! its records (a clone of the template each, as a request builds one), then flushes, so the
//! writer thread's sealing, file writes and fsync per batch are in the figure. `amortized` is
//! wall time per record; `amortized_cpu` the process's CPU time (user + system, every thread:
//! the writer runs on its own) per record, with batches of up to 512 records per write and
//! fsync; `amortized_cpu_batch16` the same with at most 16. The audit benches run before the
//! span benches, whose OTLP exporters would otherwise wake up in the background. The bench runs
//! on the binary's allocator (mimalloc).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_proxy::audit::chain::ChainHead;
use palisade_proxy::audit::{AuditRecord, Auditor, FileSettings, FsyncPolicy, Settings};
use palisade_proxy::route::Upstream;
use palisade_proxy::telemetry::otel::{OtelSettings, Tracing};
use palisade_proxy::telemetry::spec::OtlpProtocol;
use palisade_proxy::telemetry::TraceContext;

// The `palisade` binary's allocator (main.rs): the audit benches allocate a record per
// request on one thread and free it on the writer's, as the proxy does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The upstream the benchmark's requests go to.
static UPSTREAM: std::sync::LazyLock<Upstream> = std::sync::LazyLock::new(|| Upstream {
    name: "orchestrator".into(),
    address: "127.0.0.1:8081".parse().unwrap(),
    authority: "127.0.0.1:8081".into(),
    tls: false,
    sni: String::new(),
    connect_timeout: Duration::from_secs(2),
    pool_idle_timeout: Duration::from_secs(60),
});

fn one_request(tracing: &Tracing, parent: &TraceContext) {
    let mut trace = parent.clone();
    let mut span = tracing.begin(&mut trace, "POST", "/agent");
    for stage in ["identify", "authorize", "limit"] {
        let mut s = span.stage(stage);
        s.attr("outcome", "allowed");
    }
    span.start_upstream(&UPSTREAM, "/agent");
    span.upstream_answered(200, true);
    span.finish(None, || {
        vec![opentelemetry::KeyValue::new(
            "http.response.status_code",
            200_i64,
        )]
    });
    black_box(trace);
}

fn record() -> AuditRecord {
    AuditRecord {
        action: Some("Action::\"run_agent\"".into()),
        approval: None,
        bytes_in: 512,
        bytes_out: 20_480,
        client_ip: Some("10.1.2.3".into()),
        config_hash: "0123456789abcdef".into(),
        decision: None,
        duration_ms: 12.345,
        error_code: None,
        guardrails: Vec::new(),
        hash: None,
        method: "POST".into(),
        path: "/agent".into(),
        prev_hash: String::new(),
        principal: None,
        rate_limit: "passed",
        reason: "ok",
        request_id: "0b6f3a52-3f0e-4c55-9a5e-2f1f1d1c9f00".into(),
        resource: Some("Agent::\"agent\"".into()),
        route: Some("agent".into()),
        seq: 0,
        status: 200,
        stream: None,
        timestamp: "2026-11-25T21:00:00.000Z".into(),
        tool_calls: Vec::new(),
        tool_integrity: Vec::new(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        upstream_status: Some(200),
    }
}

fn spans(c: &mut Criterion) {
    let mut req = pingora_http::RequestHeader::build("POST", b"/agent", None).unwrap();
    req.insert_header(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    let parent = TraceContext::from_request(&req);

    // What `one_request` does besides spans (copying the request's trace context), to subtract.
    c.bench_function("spans/baseline", |b| b.iter(|| black_box(parent.clone())));
    let off = Tracing::off();
    c.bench_function("spans/off", |b| b.iter(|| one_request(&off, &parent)));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (name, ratio, flags) in [("spans/sampled", 1.0, "01"), ("spans/unsampled", 0.0, "00")] {
        let settings = OtelSettings {
            endpoint: "http://127.0.0.1:9/v1/traces".into(),
            protocol: OtlpProtocol::HttpProtobuf,
            sampling_ratio: ratio,
            service_name: "bench".into(),
            timeout: Duration::from_millis(100),
            ca_file: None,
        };
        let on = Tracing::start(Some(&settings), runtime.handle()).unwrap();
        let mut parent = parent.clone();
        parent.flags = flags.into();
        c.bench_function(name, |b| b.iter(|| one_request(&on, &parent)));
    }
}

fn audit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut head = ChainHead::default();
    let template = record();
    c.bench_function("audit/seal", |b| {
        b.iter(|| black_box(template.clone().seal(&mut head)))
    });

    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir.path().join("audit.jsonl"));
    let metrics = palisade_proxy::telemetry::Metrics::new(prometheus::Registry::new()).unwrap();
    let auditor = Auditor::start(&settings, metrics.audit.clone()).unwrap();
    c.bench_function("audit/submit", |b| {
        b.iter(|| runtime.block_on(auditor.submit(template.clone())))
    });
    runtime.block_on(auditor.flush());

    amortized(c, &runtime, &template, 512, "");
    // Fewer records per fsync, as under a lighter load: the per-batch part weighs more.
    amortized(c, &runtime, &template, 16, "_batch16");
}

/// `audit/amortized{suffix}` (wall, only for the default batch size: with small batches it is
/// the disk's fsync latency) and `audit/amortized_cpu{suffix}`, on a trail of their own.
fn amortized(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    template: &AuditRecord,
    batch_max: usize,
    suffix: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let active = dir.path().join("audit.jsonl");
    let settings = Settings {
        batch_max,
        ..settings(&active)
    };
    let metrics = palisade_proxy::telemetry::Metrics::new(prometheus::Registry::new()).unwrap();
    let auditor = Auditor::start(&settings, metrics.audit.clone()).unwrap();
    // One iteration is one record; a sample ends with one flush (criterion's smallest samples
    // hold hundreds of records, so it weighs little beside the fsync per batch).
    let sample = |iters: u64| {
        runtime.block_on(async {
            for _ in 0..iters {
                auditor.submit(template.clone()).await;
            }
            auditor.flush().await;
        })
    };
    // Rotated files (64 MiB each) are removed between samples, outside the measurement.
    let tidy = || {
        for file in palisade_proxy::audit::file::rotated_files(&active).unwrap() {
            let _ = std::fs::remove_file(file);
        }
    };
    if suffix.is_empty() {
        c.bench_function("audit/amortized", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                sample(iters);
                let took = start.elapsed();
                tidy();
                took
            })
        });
    }
    c.bench_function(&format!("audit/amortized_cpu{suffix}"), |b| {
        b.iter_custom(|iters| {
            let start = process_cpu();
            sample(iters);
            let took = process_cpu().saturating_sub(start);
            tidy();
            took
        })
    });
}

/// The bench's audit settings: a file sink at `path`, fsync per batch.
fn settings(path: &std::path::Path) -> Settings {
    Settings {
        file: Some(FileSettings {
            path: path.to_path_buf(),
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(3600),
            fsync: FsyncPolicy::Batch,
        }),
        stdout: false,
        redis: None,
        queue_capacity: 8192,
        on_full: palisade_proxy::audit::OnFull::Block,
        on_sink_failure: palisade_proxy::audit::OnSinkFailure::FailOpen,
        batch_max: 512,
        checkpoint: None,
    }
}

/// CPU time (user + system) of every thread of the process so far.
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

criterion_group!(benches, audit, spans);
criterion_main!(benches);
