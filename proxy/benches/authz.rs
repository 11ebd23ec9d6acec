//! Cedar decision latency, entity construction included, at 100, 1,000 and 10,000 policies.
//!
//! The set is the seed policies plus generated ones shaped like a large deployment: per-team tool
//! grants (`principal in Role::"team_N"`, `resource == Tool::"tool_N"`), per-user blocks and
//! per-route rules. Each decision takes the proxy's own path (`PolicySet::decide`), with its caches
//! warm, as they are for a caller's second request: the principal's entity, the entity store
//! without arguments, the context and the merged (and, for a catalogued tool, pruned) slice. A
//! tool call with arguments still adds its `Arguments::"call"` to a copy of the store per call.
//!
//! Besides criterion's report, the bench prints p50/p99 over individually timed decisions for the
//! sliced decision path (what the proxy runs) and for whole-set evaluation (for comparison). The
//! bench runs on the binary's allocator (mimalloc).
//!
//! `cargo bench -p palisade-proxy --bench authz`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use palisade_proxy::authn::{AuthMethod, Principal, PrincipalKind};
use palisade_proxy::authz::{
    AuthzRequest, Mode, PolicyFiles, PolicySet, RequestFacts, Resource, ResourceKind,
};

fn seed_files() -> PolicyFiles {
    PolicyFiles::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"))
        .expect("policies/ readable")
}

/// The seed set grown to `total` policies.
fn policy_set(total: usize) -> PolicySet {
    let mut files = seed_files();
    let seed = PolicySet::from_files("seed", &files, Mode::Enforce)
        .expect("seed set validates")
        .len();
    let mut text = String::new();
    for i in 0..total.saturating_sub(seed) {
        let team = i % 200;
        let policy = match i % 10 {
            0..=3 => format!(
                "@id(\"gen-call-{i}\")\npermit (principal in Role::\"team_{team}\", action == Action::\"call_tool\", resource == Tool::\"tool_{i}\")\nwhen {{ context.hour >= 6 && context.arguments.hasTag(\"path\") }};\n"
            ),
            4..=6 => format!(
                "@id(\"gen-use-{i}\")\npermit (principal in Role::\"team_{team}\", action == Action::\"use_tool\", resource == Tool::\"tool_{i}\");\n"
            ),
            7 | 8 => format!(
                "@id(\"gen-block-{i}\")\nforbid (principal == User::\"blocked_{i}\", action, resource);\n"
            ),
            _ => format!(
                "@id(\"gen-route-{i}\")\npermit (principal in Role::\"team_{team}\", action == Action::\"http_request\", resource == Route::\"route_{i}\")\nwhen {{ context.method == \"GET\" }};\n"
            ),
        };
        text.push_str(&policy);
    }
    files
        .policies
        .push((PathBuf::from("generated.cedar"), text));
    // The generated tools are catalogued (low risk), as a real deployment's would be.
    if let Some((_, catalog)) = files.catalog.as_mut() {
        for i in 0..total {
            catalog.push_str(&format!("  tool_{i}: {{risk: low, tags: [generated]}}\n"));
        }
    }
    let set =
        PolicySet::from_files("bench", &files, Mode::Enforce).expect("generated set validates");
    assert_eq!(set.len(), total.max(seed));
    set
}

fn principal() -> Principal {
    let mut p = Principal::new(
        PrincipalKind::User,
        "https://idp.example|u-7",
        AuthMethod::Jwt,
    );
    p.roles = vec!["user".into(), "team_0".into(), "developer".into()];
    p.tenant = Some("acme".into());
    p.email = Some("u7@acme.example".into());
    p.scopes = vec!["openid".into(), "agents:run".into()];
    p.normalize()
}

fn facts() -> RequestFacts {
    RequestFacts {
        method: "POST".into(),
        path: "/mcp".into(),
        ip: "10.1.2.3".parse().unwrap(),
        forwarded: false,
        time: time::OffsetDateTime::now_utc(),
        tls: true,
        request_bytes: 512,
        route: "mcp".into(),
        protocol: "mcp",
    }
}

/// p50 and p99 in µs of `n` individually timed calls of `f`.
fn timed(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    percentiles(samples)
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

fn decisions(c: &mut Criterion) {
    let p = principal();
    let f = facts();
    let args = serde_json::json!({"path": "/srv/report.txt", "lines": 20});
    let mut group = c.benchmark_group("authz_decision");
    for total in [100usize, 1_000, 10_000] {
        let set = policy_set(total);
        // tool_0 has a generated grant for team_0 (`gen-call-0`) at every size.
        let tool = Resource::new(ResourceKind::Tool, "tool_0");
        let req = AuthzRequest {
            principal: Some(&p),
            action: "call_tool",
            resource: &tool,
            facts: &f,
            arguments: Some(&args),
        };
        let agent = Resource::new(ResourceKind::Agent, "assistant");
        let run = AuthzRequest {
            principal: Some(&p),
            action: "run_agent",
            resource: &agent,
            facts: &f,
            arguments: None,
        };
        let route = Resource::new(ResourceKind::Route, "api");
        let http = AuthzRequest {
            principal: Some(&p),
            action: "http_request",
            resource: &route,
            facts: &f,
            arguments: None,
        };
        group.bench_with_input(BenchmarkId::new("http_request", total), &total, |b, _| {
            b.iter(|| black_box(set.decide(black_box(&http))))
        });
        group.bench_with_input(BenchmarkId::new("request_level", total), &total, |b, _| {
            b.iter(|| black_box(set.decide(black_box(&run))))
        });
        group.bench_with_input(BenchmarkId::new("sliced", total), &total, |b, _| {
            b.iter(|| black_box(set.decide(black_box(&req))))
        });

        // Individually timed decisions for p50/p99.
        for _ in 0..2_000 {
            black_box(set.decide(&req));
        }
        let n = 20_000;
        let (p50, p99) = timed(n, || {
            black_box(set.decide(black_box(&req)));
        });
        let whole_n = if total >= 10_000 { 500 } else { 5_000 };
        let (w50, w99) = timed(whole_n, || {
            let built = set.build(black_box(&req)).unwrap();
            black_box(set.evaluate_unsliced(&built));
        });
        println!(
            "authz decision, {total:>6} policies: sliced p50 {p50:7.2} µs  p99 {p99:7.2} µs | whole set p50 {w50:9.2} µs  p99 {w99:9.2} µs"
        );
        // The request-level decision of an AG-UI run (what every POST /agent pays).
        assert!(set.decide(&run).allowed);
        let (r50, r99) = timed(n, || {
            black_box(set.decide(black_box(&run)));
        });
        println!("  run_agent on Agent (request level):   p50 {r50:7.2} µs  p99 {r99:7.2} µs");
        // A plain HTTP route (what every request on a non-agent route pays).
        assert!(set.decide(&http).allowed);
        let (h50, h99) = timed(n, || {
            black_box(set.decide(black_box(&http)));
        });
        println!("  http_request on Route (request level): p50 {h50:7.2} µs  p99 {h99:7.2} µs");
        let d = set.decide(&req);
        assert!(
            d.allowed,
            "the request is allowed by a generated grant: {d:?}"
        );
        // Where the time goes: building the request and entities alone.
        let (b50, b99) = timed(5_000, || {
            black_box(set.build(black_box(&req)).unwrap());
        });
        println!("  of which building request + entities: p50 {b50:7.2} µs  p99 {b99:7.2} µs");
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
