//! Guardrail costs with the built-in `default` rule set (every detector on):
//!
//! - `scan/*`: throughput of whole-text scanning (MB/s per core) over a mixed corpus (prose,
//!   code, JSON, numbers), on the request side (phrases on normalized text + raw detectors) and
//!   the response side;
//! - `stream/*`: added latency per AG-UI `TEXT_MESSAGE_CONTENT` event through the output filter
//!   (parse, carry-over scan, hold-back, re-encode), against the bare SSE re-parse.
//!
//! Run: `cargo bench -p palisade-proxy --bench guardrails`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_proxy::guardrails::scan::scan_text;
use palisade_proxy::guardrails::spec::Location;
use palisade_proxy::guardrails::stream::agui::AguiGuard;
use palisade_proxy::guardrails::stream::Recorder;
use palisade_proxy::guardrails::{Findings, RuleSet, Side};
use palisade_proxy::protocol::sse::SseParser;
use palisade_proxy::telemetry::Metrics;

const PARAGRAPHS: &[&str] = &[
    "The deployment finished at 14:32 and the service answered 200 on every health check. ",
    "Next, run `cargo build --release` and copy target/release/app to /usr/local/bin. ",
    "fn handle(req: Request) -> Result<Response, Error> { let body = req.body()?; Ok(body.into()) } ",
    "{\"id\": 42, \"name\": \"widget\", \"price\": 19.99, \"tags\": [\"blue\", \"small\"]} ",
    "Revenue grew 12.5% year over year, with 3,400 new customers in the third quarter. ",
    "Please review the attached document and send your comments by Friday afternoon. ",
    "Der Bericht enthält Zahlen für Q3; les résultats sont meilleurs que prévu. ",
    "SELECT name, total FROM orders WHERE created_at > '2024-01-01' ORDER BY total DESC; ",
];

fn corpus(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 128);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        i += 1;
    }
    s
}

fn scan(c: &mut Criterion) {
    let rs = RuleSet::builtin_default();
    let text = corpus(1 << 20);
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("request_user_message_1MiB", |b| {
        b.iter(|| scan_text(&rs, black_box(&text), Side::Input, Location::UserMessage))
    });
    group.bench_function("response_assistant_text_1MiB", |b| {
        b.iter(|| scan_text(&rs, black_box(&text), Side::Output, Location::AssistantText))
    });
    let raw_only = RuleSet::compile(
        "raw",
        &yaml_serde::from_str(
            "disable: [injection.ignore_instructions, injection.prompt_leak, \
             injection.role_override, tool.destructive_command]",
        )
        .unwrap(),
    )
    .unwrap();
    group.bench_function("raw_detectors_only_1MiB", |b| {
        b.iter(|| {
            scan_text(
                &raw_only,
                black_box(&text),
                Side::Output,
                Location::AssistantText,
            )
        })
    });
    let ascii = text.replace(|c: char| !c.is_ascii(), "e");
    group.bench_function("request_user_message_ascii_1MiB", |b| {
        b.iter(|| scan_text(&rs, black_box(&ascii), Side::Input, Location::UserMessage))
    });
    group.bench_function("normalize_only_1MiB", |b| {
        b.iter(|| palisade_proxy::guardrails::normalize::normalize(black_box(&text)))
    });
    group.finish();
}

fn event(i: usize) -> String {
    let delta = PARAGRAPHS[i % PARAGRAPHS.len()]
        .split(' ')
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "data: {{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m1\",\"delta\":{}}}\n\n",
        serde_json::to_string(&format!("{delta} ")).unwrap()
    )
}

fn stream(c: &mut Criterion) {
    let rs = RuleSet::builtin_default();
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let events: Vec<String> = (0..64).map(event).collect();
    let mut group = c.benchmark_group("stream");
    group.bench_function("text_message_content_event_guarded", |b| {
        let mut guard = AguiGuard::new(&rs, "bench");
        let mut findings = Findings::default();
        let mut i = 0;
        b.iter(|| {
            let mut rec = Recorder {
                metrics: &metrics,
                findings: &mut findings,
            };
            i += 1;
            black_box(
                guard
                    .process(&rs, &mut rec, events[i % events.len()].as_bytes(), false)
                    .ok(),
            )
        })
    });
    group.bench_function("text_message_content_event_sse_reparse_only", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let mut parser = SseParser::new();
            parser.push(events[i % events.len()].as_bytes());
            black_box(parser.next_item())
        })
    });
    group.finish();
}

criterion_group!(benches, scan, stream);
criterion_main!(benches);
