//! In-process limiter cost per check: `cargo bench -p palisade-proxy --bench ratelimit`.
//!
//! `store/1-limit` is the bare sharded GCRA store; `limiter/*` is the whole stage as the
//! pipeline calls it (scope keys, tier multiplier, header rendering, atomic multi-limit check)
//! over 10,000 distinct callers.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_proxy::ratelimit::algorithm::Rule;
use palisade_proxy::ratelimit::memory::MemoryStore;
use palisade_proxy::ratelimit::policy::{Limit, RouteLimits, Settings};
use palisade_proxy::ratelimit::spec::{LimitKind, LimitScope};
use palisade_proxy::ratelimit::{Caller, RateLimiter, SystemClock};
use palisade_proxy::telemetry::Metrics;

fn limit(name: &str, scope: LimitScope, kind: LimitKind) -> Arc<Limit> {
    Arc::new(Limit {
        name: name.into(),
        id: name.into(),
        scope,
        kind,
        requests: 1_000_000_000,
        per: Duration::from_secs(60),
        burst: 1_000_000_000,
    })
}

fn bench(c: &mut Criterion) {
    let store = MemoryStore::new(100_000);
    let rule = Rule {
        kind: LimitKind::Rate,
        interval_ns: 1,
        capacity: u64::MAX / 4,
    };
    let keys: Vec<u64> = (0..10_000u32)
        .map(|i| store.key("per-principal", &i.to_string()))
        .collect();
    let mut i = 0usize;
    let mut now = 1_764_000_000_000_000_000u64;
    c.bench_function("store/1-limit", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            now += 1000;
            black_box(store.check(&[(keys[i], rule)], now));
        })
    });

    let settings = Settings {
        max_keys: 100_000,
        ..Settings::default()
    };
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let limiter = RateLimiter::with_clock(settings, Arc::new(SystemClock), metrics).unwrap();
    let ips: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    for (name, limits) in [
        (
            "limiter/1-limit",
            vec![limit(
                "per-principal",
                LimitScope::Principal,
                LimitKind::Rate,
            )],
        ),
        (
            "limiter/3-limits",
            vec![
                limit("per-principal", LimitScope::Principal, LimitKind::Rate),
                limit("daily", LimitScope::Principal, LimitKind::Quota),
                limit("route", LimitScope::Route, LimitKind::Rate),
            ],
        ),
    ] {
        let limits = RouteLimits {
            limits,
            ..RouteLimits::default()
        };
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % ips.len();
                let caller = Caller {
                    route: "agent",
                    principal: None,
                    client_ip: Some(ips[i]),
                    wants_stream: false,
                };
                black_box(futures::executor::block_on(limiter.check(&limits, &caller)).is_ok());
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
