//! Limiter tests on a manual clock: no sleeps, every window moved by hand.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use super::algorithm::{evaluate, Rule};
use super::clock::ManualClock;
use super::policy::{self, Limit, RouteLimits, Settings, StreamCaps};
use super::spec::{LimitKind, LimitScope, RateLimitsSpec};
use super::*;
use crate::authn::{AuthMethod, Principal, PrincipalKind};
use crate::telemetry::Metrics;

const T0: u64 = 1_764_000_000 * 1_000_000_000; // a whole UTC day boundary is at T0 - T0 % 86400e9

fn limit(name: &str, scope: LimitScope, requests: u64, per: Duration, burst: u64) -> Arc<Limit> {
    Arc::new(Limit {
        name: name.into(),
        id: name.into(),
        scope,
        kind: LimitKind::Rate,
        requests,
        per,
        burst,
    })
}

fn limiter(settings: Settings) -> (RateLimiter, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let settings = Settings {
        max_keys: settings.max_keys.max(1000),
        ..settings
    };
    (
        RateLimiter::with_clock(settings, clock.clone(), metrics).unwrap(),
        clock,
    )
}

fn caller(ip: u8) -> Caller<'static> {
    Caller {
        route: "r",
        principal: None,
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip))),
        wants_stream: false,
    }
}

fn admitted(l: &RateLimiter, limits: &RouteLimits, c: &Caller<'_>) -> bool {
    futures::executor::block_on(l.check(limits, c)).is_ok()
}

#[test]
fn gcra_allows_the_burst_then_the_sustained_rate() {
    let (l, clock) = limiter(Settings::default());
    let limits = RouteLimits {
        limits: vec![limit(
            "r",
            LimitScope::ClientIp,
            10,
            Duration::from_secs(1),
            5,
        )],
        ..Default::default()
    };
    let c = caller(1);
    let burst = (0..20).filter(|_| admitted(&l, &limits, &c)).count();
    assert_eq!(burst, 5, "the burst, at once");
    clock.advance(Duration::from_millis(99));
    assert!(!admitted(&l, &limits, &c), "one emission interval is 100ms");
    clock.advance(Duration::from_millis(1));
    assert!(admitted(&l, &limits, &c));
    assert!(!admitted(&l, &limits, &c));
    // Sustained: one per 100ms, for 10 seconds.
    let mut passed = 0;
    for _ in 0..1000 {
        clock.advance(Duration::from_millis(10));
        passed += usize::from(admitted(&l, &limits, &c));
    }
    assert_eq!(passed, 100);
}

#[test]
fn a_burst_across_a_window_edge_never_exceeds_burst_plus_rate() {
    // A fixed window of 10/s would admit 10 at 0.999s and 10 more at 1.000s. GCRA admits at
    // most `burst + elapsed / T` in any interval, wherever the "edge" is.
    let (l, clock) = limiter(Settings::default());
    let limits = RouteLimits {
        limits: vec![limit(
            "r",
            LimitScope::Global,
            10,
            Duration::from_secs(1),
            10,
        )],
        ..Default::default()
    };
    let c = caller(1);
    let mut admitted_at = Vec::new();
    // Idle, then hammer from 0.990s to 1.010s in 1ms steps, 20 attempts each.
    clock.advance(Duration::from_millis(990));
    for step in 0..=20u64 {
        for _ in 0..20 {
            if admitted(&l, &limits, &c) {
                admitted_at.push(step);
            }
        }
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(
        admitted_at.len(),
        10,
        "20ms at 10/s adds no whole request to the burst"
    );
    // And over a long random-ish pattern, every interval obeys burst + rate.
    let mut times = Vec::new();
    let mut seed = 7u64;
    for _ in 0..5000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        clock.advance(Duration::from_micros(seed >> 48)); // 0–65ms
        if admitted(&l, &limits, &c) {
            times.push(clock.now_ns());
        }
    }
    let t = 100_000_000u64; // emission interval, ns
    for (i, &a) in times.iter().enumerate() {
        for (j, &b) in times.iter().enumerate().skip(i) {
            let allowed = 10 + (b - a) / t;
            assert!(
                (j - i + 1) as u64 <= allowed,
                "{} requests in {}ns",
                j - i + 1,
                b - a
            );
        }
    }
}

#[test]
fn a_refused_request_consumes_from_no_limit() {
    let (l, _clock) = limiter(Settings::default());
    let per_ip = limit(
        "per-ip",
        LimitScope::ClientIp,
        2,
        Duration::from_secs(60),
        2,
    );
    let global = limit("global", LimitScope::Global, 3, Duration::from_secs(60), 3);
    let limits = RouteLimits {
        limits: vec![per_ip, global],
        ..Default::default()
    };
    assert!(admitted(&l, &limits, &caller(1)));
    assert!(admitted(&l, &limits, &caller(1)));
    // Refused by per-ip: must not spend the global counter.
    for _ in 0..5 {
        assert!(!admitted(&l, &limits, &caller(1)));
    }
    assert!(
        admitted(&l, &limits, &caller(2)),
        "global still has one left"
    );
    assert!(
        !admitted(&l, &limits, &caller(3)),
        "now the global limit is spent"
    );
    // And a request refused by the global limit did not spend caller 3's own counter.
    let own = RouteLimits {
        limits: vec![limit(
            "per-ip",
            LimitScope::ClientIp,
            2,
            Duration::from_secs(60),
            2,
        )],
        ..Default::default()
    };
    assert!(admitted(&l, &own, &caller(3)));
    assert!(admitted(&l, &own, &caller(3)));
    assert!(!admitted(&l, &own, &caller(3)));
}

#[test]
fn rejection_carries_retry_after_and_ietf_headers() {
    let (l, _clock) = limiter(Settings::default());
    let limits = RouteLimits {
        limits: vec![limit(
            "per-ip",
            LimitScope::ClientIp,
            60,
            Duration::from_secs(60),
            1,
        )],
        ..Default::default()
    };
    assert!(admitted(&l, &limits, &caller(1)));
    let err = futures::executor::block_on(l.check(&limits, &caller(1))).unwrap_err();
    let ProxyError::RateLimited {
        retry_after,
        headers,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*retry_after, Duration::from_secs(1));
    assert_eq!(headers.policy, r#""per-ip";q=60;w=60"#);
    assert_eq!(headers.state, r#""per-ip";r=0;t=1"#);
    let names: Vec<&str> = err.headers().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["retry-after", "ratelimit-policy", "ratelimit"]);
    assert_eq!(err.kind().status, 429);
}

#[test]
fn allowed_responses_carry_headers_only_when_configured() {
    let limits = RouteLimits {
        limits: vec![limit("a", LimitScope::Route, 5, Duration::from_secs(10), 5)],
        ..Default::default()
    };
    let (quiet, _) = limiter(Settings::default());
    let got = futures::executor::block_on(quiet.check(&limits, &caller(1))).unwrap();
    assert!(got.response_headers().is_empty());
    let (loud, _) = limiter(Settings {
        response_headers: true,
        ..Settings::default()
    });
    let got = futures::executor::block_on(loud.check(&limits, &caller(1))).unwrap();
    assert_eq!(
        got.response_headers(),
        vec![
            ("ratelimit-policy", r#""a";q=5;w=10"#.to_string()),
            ("ratelimit", r#""a";r=4;t=2"#.to_string()),
        ]
    );
}

#[test]
fn daily_quota_resets_at_utc_midnight() {
    let (l, clock) = limiter(Settings::default());
    let day = 86_400 * 1_000_000_000u64;
    clock.set(T0 - T0 % day + day - 2_000_000_000); // 23:59:58 UTC
    let quota = Arc::new(Limit {
        kind: LimitKind::Quota,
        ..(*limit(
            "daily",
            LimitScope::ClientIp,
            3,
            Duration::from_secs(86_400),
            3,
        ))
        .clone()
    });
    let limits = RouteLimits {
        limits: vec![quota],
        ..Default::default()
    };
    let c = caller(1);
    assert_eq!((0..5).filter(|_| admitted(&l, &limits, &c)).count(), 3);
    let err = futures::executor::block_on(l.check(&limits, &c)).unwrap_err();
    assert!(
        matches!(err, ProxyError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(2))
    );
    clock.advance(Duration::from_secs(2)); // 00:00:00
    assert_eq!((0..5).filter(|_| admitted(&l, &limits, &c)).count(), 3);
}

#[test]
fn role_and_tier_multipliers_scale_principal_limits() {
    let (l, _clock) = limiter(Settings {
        role_multipliers: [("admin".to_string(), 10.0)].into(),
        tier_multipliers: [("gold".to_string(), 3.0)].into(),
        ..Settings::default()
    });
    let limits = RouteLimits {
        limits: vec![limit(
            "p",
            LimitScope::Principal,
            2,
            Duration::from_secs(3600),
            2,
        )],
        ..Default::default()
    };
    let mut admin = Principal::new(PrincipalKind::User, "idp|root", AuthMethod::Jwt);
    admin.roles = vec!["admin".into(), "user".into()];
    let mut key = Principal::new(PrincipalKind::ApiKey, "k1", AuthMethod::ApiKey);
    key.limit_tier = Some("gold".into());
    let plain = Principal::new(PrincipalKind::User, "idp|bob", AuthMethod::Jwt);
    for (p, expected) in [(&admin, 20), (&key, 6), (&plain, 2)] {
        let c = Caller {
            principal: Some(p),
            ..caller(1)
        };
        let n = (0..50).filter(|_| admitted(&l, &limits, &c)).count();
        assert_eq!(n, expected, "{}", p.id);
    }
}

#[test]
fn scopes_pick_their_counter_or_skip() {
    let (l, _clock) = limiter(Settings::default());
    let one = |scope| RouteLimits {
        limits: vec![limit("x", scope, 1, Duration::from_secs(3600), 1)],
        ..Default::default()
    };
    // api_key / tenant limits skip callers without a key / tenant.
    for scope in [LimitScope::ApiKey, LimitScope::Tenant] {
        let limits = one(scope);
        assert!((0..5).all(|_| admitted(&l, &limits, &caller(1))));
    }
    // Anonymous principals are keyed by IP: two IPs, two counters.
    let limits = one(LimitScope::Principal);
    assert!(admitted(&l, &limits, &caller(1)));
    assert!(!admitted(&l, &limits, &caller(1)));
    assert!(admitted(&l, &limits, &caller(2)));
    // Tenants share.
    let mut a = Principal::new(PrincipalKind::User, "idp|a", AuthMethod::Jwt);
    a.tenant = Some("acme".into());
    let mut b = Principal::new(PrincipalKind::User, "idp|b", AuthMethod::Jwt);
    b.tenant = Some("acme".into());
    let limits = one(LimitScope::Tenant);
    assert!(admitted(
        &l,
        &limits,
        &Caller {
            principal: Some(&a),
            ..caller(1)
        }
    ));
    assert!(!admitted(
        &l,
        &limits,
        &Caller {
            principal: Some(&b),
            ..caller(2)
        }
    ));
}

#[test]
fn memory_stays_bounded_and_evicts_idle_keys_first() {
    let store = memory::MemoryStore::new(640);
    let rule = Rule {
        kind: LimitKind::Rate,
        interval_ns: 1_000_000_000,
        capacity: 5,
    };
    // 10k idle-soon keys: the store never holds more than its bound.
    for i in 0..10_000u64 {
        store.check(&[(store.key("l", &i.to_string()), rule)], T0 + i);
    }
    assert!(store.len() <= 640, "{}", store.len());
    // Later, when they are all idle, new keys replace idle ones without evicting live state.
    let before = store.evictions();
    let later = T0 + 10_000_000_000;
    for i in 0..100u64 {
        store.check(&[(store.key("m", &i.to_string()), rule)], later);
    }
    assert_eq!(store.evictions(), before, "only idle keys were dropped");
    assert!(store.len() <= 640);
}

#[test]
fn stream_caps_release_on_drop() {
    let (l, _clock) = limiter(Settings::default());
    let limits = RouteLimits {
        limits: Vec::new(),
        streams: StreamCaps {
            per_principal: Some(2),
            route_total: Some(3),
            ..Default::default()
        },
    };
    let stream = |ip| Caller {
        wants_stream: true,
        ..caller(ip)
    };
    let a1 = futures::executor::block_on(l.check(&limits, &stream(1))).unwrap();
    let a2 = futures::executor::block_on(l.check(&limits, &stream(1))).unwrap();
    assert!(futures::executor::block_on(l.check(&limits, &stream(1))).is_err());
    let b1 = futures::executor::block_on(l.check(&limits, &stream(2))).unwrap();
    assert!(
        futures::executor::block_on(l.check(&limits, &stream(3))).is_err(),
        "route total of 3 reached"
    );
    // A request that does not open a stream is never capped.
    assert!(admitted(&l, &limits, &caller(1)));
    drop(a1);
    let a3 = futures::executor::block_on(l.check(&limits, &stream(1))).unwrap();
    drop((a2, a3, b1));
    assert!(l.stream_slots().is_empty(), "every slot given back");
}

#[test]
fn quota_and_gcra_are_pure_functions_of_the_cell() {
    let rule = Rule {
        kind: LimitKind::Rate,
        interval_ns: 10,
        capacity: 3,
    };
    let v = evaluate(rule, None, 100);
    assert!(v.allowed);
    assert_eq!((v.remaining, v.reset_ns, v.next.value), (2, 10, 110));
    let v = evaluate(rule, Some(v.next), 100);
    let v = evaluate(rule, Some(v.next), 100);
    assert_eq!(v.remaining, 0);
    let refused = evaluate(rule, Some(v.next), 100);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_ns, 10);
}

#[test]
fn config_errors_name_their_fields() {
    let yaml = r#"
limits:
  - {name: "bad name", scope: principal, requests: 0, per: 0s}
  - {name: q, scope: global, requests: 5, per: 1d, kind: quota, burst: 3}
role_multipliers: {admin: -1}
streams: {per_principal: 0}
redis: {url: "http://x", cluster: ["redis://a:1"]}
"#;
    let spec: RateLimitsSpec = yaml_serde::from_str(yaml).unwrap();
    let mut errors = Vec::new();
    policy::validate(&spec, &mut errors);
    let mut paths: Vec<String> = errors.into_iter().map(|e| e.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "rate_limits.limits[0].name",
            "rate_limits.limits[0].per",
            "rate_limits.limits[0].requests",
            "rate_limits.limits[1].burst",
            "rate_limits.redis",
            "rate_limits.redis.url",
            "rate_limits.role_multipliers.admin",
            "rate_limits.streams.per_principal",
        ]
    );
}

#[test]
fn embedded_dev_config_ships_the_seed_limits() {
    let config =
        crate::config::Config::from_yaml(crate::config::EMBEDDED_DEV_CONFIG, Vec::new()).unwrap();
    let route = &config.stages.per_route.limits[config.routes.routes()[0].id];
    let names: Vec<&str> = route.limits.iter().map(|l| l.name.as_str()).collect();
    assert!(names.contains(&"per-principal"), "{names:?}");
    let l = &route.limits[0];
    assert_eq!((l.requests, l.per), (300, Duration::from_secs(60)));
    assert_eq!(
        config.rate_limits.role_multipliers.get("admin"),
        Some(&10.0)
    );
    assert_eq!(route.streams.per_principal, Some(10));
}

#[test]
fn redis_url_can_come_from_the_environment() {
    let env = vec![(
        "PALISADE_RATE_LIMITS__REDIS__URL".to_string(),
        "redis://127.0.0.1:6390".to_string(),
    )];
    let config = crate::config::Config::from_yaml("", env).unwrap();
    let redis = config.rate_limits.redis.expect("redis configured");
    assert_eq!(
        redis.target,
        policy::RedisTarget::Standalone("redis://127.0.0.1:6390".into())
    );
    assert_eq!(redis.on_failure, super::spec::FailureMode::FailOpen);
}
