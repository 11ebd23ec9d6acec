//! Rate limits, quotas and stream caps through the whole proxy: in-process, a real standalone
//! `redis-server` shared by two proxies (and killed mid-test), and a real 3-node Redis Cluster.
//!
//! Redis tests start their own servers on free loopback ports and stop them on drop. A missing
//! `redis-server` fails the test with instructions — it is never skipped silently.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use palisade_e2e::redis::{redis_cli, RedisCluster, RedisServer};
use palisade_e2e::sse_client;
use palisade_e2e::upstream::{self, SseScript};
use palisade_e2e::{client, error_code, Proxy, TestProxy};

// ---- real Redis servers ----------------------------------------------------------------------

// ---- helpers ---------------------------------------------------------------------------------

fn proxy_with(echo: SocketAddr, rate_limits: &str) -> Proxy {
    TestProxy::new()
        .upstream("echo", echo)
        .route("api", "/", "echo", "")
        .top_yaml(rate_limits)
        .start()
}

/// Sends `n` GETs from `from`, `concurrency` at a time, spread over `proxies`; returns the
/// status codes.
async fn hammer(proxies: &[&Proxy], n: usize, concurrency: usize, from: IpAddr) -> Vec<u16> {
    let c = palisade_e2e::client_builder()
        .local_address(from)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let urls: Vec<String> = proxies.iter().map(|p| p.url("/x")).collect();
    let mut statuses = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(concurrency) {
        let batch = chunk.iter().map(|i| {
            let c = c.clone();
            let url = urls[i % urls.len()].clone();
            async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
        });
        for r in futures::future::join_all(batch).await {
            statuses.push(r.expect("request completes"));
        }
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

// ---- in-process ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_429_with_retry_after_and_ietf_headers() {
    let echo = upstream::echo().await;
    let proxy = proxy_with(
        echo.addr,
        "rate_limits:\n  response_headers: true\n  limits:\n    - {name: per-ip, scope: client_ip, requests: 5, per: 1m}\n",
    );
    let c = client();
    for i in 0..5 {
        let resp = c.get(proxy.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"per-ip\";q=5;w=60");
        assert_eq!(
            resp.headers()["ratelimit"].to_str().unwrap(),
            format!("\"per-ip\";r={};t={}", 4 - i, 12 * (i + 1))
        );
    }
    let resp = c.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "12");
    assert_eq!(resp.headers()["ratelimit-policy"], "\"per-ip\";q=5;w=60");
    assert_eq!(resp.headers()["ratelimit"], "\"per-ip\";r=0;t=60");
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "RATE_LIMITED");
    let metrics = proxy.running.metrics.render();
    assert!(
        metrics.contains(
            r#"palisade_ratelimit_decisions_total{outcome="rejected",scope="client_ip"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_limits_add_to_inherited_ones_and_can_opt_out() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route(
            "tight",
            "/tight",
            "echo",
            "rate_limits: {limits: [{name: tight, scope: route, requests: 2, per: 1h}]}",
        )
        .route("free", "/free", "echo", "rate_limits: {inherit: false}")
        .route("rest", "/", "echo", "")
        .top_yaml(
            "rate_limits:\n  limits:\n    - {name: ip, scope: client_ip, requests: 10, per: 1h}\n",
        )
        .start();
    let c = client();
    let mut got = Vec::new();
    for path in ["/tight", "/tight", "/tight", "/free", "/free"] {
        got.push(
            c.get(proxy.url(path))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(got, [200, 200, 429, 200, 200]);
    // The refused /tight request spent nothing of `ip`: 10 - 2 are left for the rest.
    let rest = hammer(&[&proxy], 10, 1, loopback(1)).await;
    assert_eq!(count(&rest, 200), 8, "{rest:?}");
}

// ---- Redis standalone ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_sharing_redis_enforce_one_combined_limit() {
    let redis = RedisServer::start();
    let echo = upstream::echo().await;
    // 1000 per day with a full bucket: the refill during the test is < 1 request.
    let yaml = format!(
        "rate_limits:\n  redis: {{url: \"{}\", timeout: 500ms}}\n  limits:\n    - {{name: shared, scope: global, requests: 1000, per: 1d}}\n",
        redis.url()
    );
    let a = proxy_with(echo.addr, &yaml);
    let b = proxy_with(echo.addr, &yaml);
    let statuses = hammer(&[&a, &b], 1200, 16, loopback(1)).await;
    let ok = count(&statuses, 200);
    eprintln!("two proxies, one Redis: {ok} of 1200 admitted under a limit of 1000");
    assert!((1000..=1001).contains(&ok), "{ok} admitted, want 1000 (+1)");
    assert_eq!(count(&statuses, 429), 1200 - ok, "only 200s and 429s");
    for p in [&a, &b] {
        assert_eq!(p.running.metrics.ratelimit_fallbacks.get(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_redis_never_exceeds_burst_plus_rate() {
    let redis = RedisServer::start();
    let echo = upstream::echo().await;
    let yaml = format!(
        "rate_limits:\n  redis: {{url: \"{}\", timeout: 500ms}}\n  limits:\n    - {{name: r, scope: global, requests: 20, per: 1s, burst: 5}}\n",
        redis.url()
    );
    let a = proxy_with(echo.addr, &yaml);
    let b = proxy_with(echo.addr, &yaml);
    let started = Instant::now();
    let mut ok = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        ok += count(&hammer(&[&a, &b], 16, 16, loopback(1)).await, 200);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 5.0 + 20.0 * elapsed;
    assert!(
        ok as f64 <= bound + 1.0,
        "{ok} admitted in {elapsed:.3}s; burst + rate allows {bound:.1}"
    );
    assert!(
        ok as f64 >= bound * 0.6,
        "{ok} admitted: the limiter starved the caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_open_or_closed_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let echo = upstream::echo().await;
    let yaml = |mode: &str| {
        format!(
            "rate_limits:\n  redis: {{url: \"{}\", timeout: 100ms, on_failure: {mode}}}\n  limits:\n    - {{name: ip, scope: client_ip, requests: 1000, per: 1m}}\n",
            redis.url()
        )
    };
    let open = proxy_with(echo.addr, &yaml("fail_open"));
    let closed = proxy_with(echo.addr, &yaml("fail_closed"));
    let c = client();
    for p in [&open, &closed] {
        assert_eq!(c.get(p.url("/x")).send().await.unwrap().status(), 200);
    }

    // Load on both proxies while Redis dies and comes back: requests in flight when it dies
    // must also end as a 200, a 429 or (fail_closed only) the documented 503.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, c) = (stop.clone(), c.clone());
        let urls = [open.url("/x"), closed.url("/x")];
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, url) in urls.iter().enumerate() {
                    let resp = c.get(url).send().await.expect("request completes");
                    let status = resp.status().as_u16();
                    let code = if status >= 400 {
                        error_code(&resp.bytes().await.unwrap())
                    } else {
                        String::new()
                    };
                    seen.push((i, status, code));
                }
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    redis.kill();
    for _ in 0..10 {
        let resp = c.get(open.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "fail_open keeps serving");
        let resp = c.get(closed.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), 503, "fail_closed refuses");
        assert_eq!(
            error_code(&resp.bytes().await.unwrap()),
            "RATE_LIMIT_BACKEND_DOWN"
        );
    }
    let fallbacks = open.running.metrics.ratelimit_fallbacks.get();
    assert!(fallbacks >= 10, "fallbacks counted: {fallbacks}");
    assert_eq!(closed.running.metrics.ratelimit_fallbacks.get(), 0);
    assert!(open
        .running
        .metrics
        .render()
        .contains("palisade_ratelimit_backend_errors_total{backend=\"redis\"}"));

    redis.restart();
    // Recovery needs nothing: the next requests reconnect.
    let mut statuses = Vec::new();
    let recovered = async {
        loop {
            let s = c
                .get(closed.url("/x"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            statuses.push(s);
            if s == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), recovered)
        .await
        .expect("fail_closed proxy recovered when Redis returned");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "no 5xx but the documented 503: {statuses:?}"
    );
    // The fail_open proxy is back on Redis too: its fallback count stops growing.
    let mut back_on_redis = false;
    for _ in 0..100 {
        let before = open.running.metrics.ratelimit_fallbacks.get();
        assert_eq!(c.get(open.url("/x")).send().await.unwrap().status(), 200);
        if open.running.metrics.ratelimit_fallbacks.get() == before {
            back_on_redis = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back_on_redis, "fail_open proxy never went back to Redis");
    let keys = redis_cli(redis.port, &["DBSIZE"]).unwrap();
    assert_ne!(keys, "0", "counters are in Redis again");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = load.await.unwrap();
    assert!(seen.len() > 20, "the load ran: {}", seen.len());
    for (proxy, status, code) in &seen {
        let fine = match (proxy, status) {
            (_, 200 | 429) => true,
            (1, 503) => code == "RATE_LIMIT_BACKEND_DOWN",
            _ => false,
        };
        assert!(fine, "proxy {proxy} answered {status} {code}");
    }
    assert!(
        seen.iter().any(|(p, s, _)| *p == 1 && *s == 503),
        "the load saw the outage"
    );
}

/// `palisade run` starts the proxy outside any async runtime: a Redis backend must not need one.
#[test]
fn a_proxy_with_redis_starts_outside_a_runtime_even_with_redis_down() {
    let config = format!(
        "rate_limits:\n  redis: {{url: \"redis://127.0.0.1:{}\", on_failure: fail_closed}}\n  limits:\n    - {{name: ip, scope: client_ip, requests: 10, per: 1s}}\n",
        palisade_e2e::closed_port().port()
    );
    let proxy = TestProxy::new()
        .upstream("echo", palisade_e2e::closed_port())
        .route("api", "/", "echo", "")
        .top_yaml(&config)
        .start();
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(proxy.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(error_code(body.as_bytes()), "RATE_LIMIT_BACKEND_DOWN");
}

// ---- Redis Cluster ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_shares_limits_and_refunds_across_slots() {
    let cluster = RedisCluster::start();
    let echo = upstream::echo().await;
    // Two counters in different slots: the caller's ({Anonymous::"127.0.0.x"}) and the global
    // one ({global}). A request refused by one must not spend the other.
    let yaml = format!(
        "rate_limits:\n  redis: {{cluster: {}, timeout: 500ms}}\n  limits:\n    - {{name: per-caller, scope: principal, requests: 100, per: 1d}}\n    - {{name: all, scope: global, requests: 150, per: 1d}}\n",
        cluster.yaml_nodes()
    );
    let a = proxy_with(echo.addr, &yaml);
    let b = proxy_with(echo.addr, &yaml);
    let first = hammer(&[&a, &b], 130, 8, loopback(1)).await;
    assert_eq!(
        count(&first, 200),
        100,
        "per-caller limit across both proxies"
    );
    // 30 refused by per-caller: refunded on `all`, so 50 of it are left for another caller.
    let second = hammer(&[&a, &b], 80, 8, loopback(2)).await;
    assert_eq!(
        count(&second, 200),
        50,
        "global limit, with refunds: {second:?}"
    );
    for p in [&a, &b] {
        assert_eq!(
            p.running.metrics.ratelimit_fallbacks.get(),
            0,
            "all answers came from the cluster"
        );
    }
}

/// The cluster client connects lazily and reconnects by itself: a proxy started while the whole
/// cluster is down refuses (fail_closed) and then serves once the nodes are back, and a cluster
/// killed and restarted under it is picked up again, with no proxy restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_down_at_start_or_restarted_recovers_by_itself() {
    let mut cluster = RedisCluster::start();
    let echo = upstream::echo().await;
    cluster.kill();
    let yaml = format!(
        "rate_limits:\n  redis: {{cluster: {}, timeout: 300ms, on_failure: fail_closed}}\n  limits:\n    - {{name: all, scope: global, requests: 100000, per: 1d}}\n",
        cluster.yaml_nodes()
    );
    let proxy = proxy_with(echo.addr, &yaml);
    let c = client();
    let resp = c.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "no cluster: fail_closed refuses");
    assert_eq!(
        error_code(&resp.bytes().await.unwrap()),
        "RATE_LIMIT_BACKEND_DOWN"
    );

    // Both outages end the same way: the nodes come back and, within a few seconds, so do 200s.
    let recovers = |what: &'static str| {
        let (c, url) = (c.clone(), proxy.url("/x"));
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                let status = c.get(&url).send().await.unwrap().status();
                if status == 200 {
                    break;
                }
                assert_eq!(status, 503, "{what}: only 503 while reconnecting");
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: never served again"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::task::block_in_place(|| cluster.restart());
    recovers("down at start").await;

    tokio::task::block_in_place(|| cluster.kill());
    let resp = c.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "cluster gone: fail_closed refuses");
    tokio::task::block_in_place(|| cluster.restart());
    recovers("killed and restarted").await;
    assert_eq!(proxy.running.metrics.ratelimit_fallbacks.get(), 0);
}

// ---- stream caps -----------------------------------------------------------------------------

async fn open_stream(proxy: &Proxy, path: &str) -> reqwest::Response {
    client()
        .post(proxy.url(path))
        .header("accept", "text/event-stream")
        .body("{}")
        .send()
        .await
        .unwrap()
}

/// Opens a stream, retrying (429) while the cap still counts streams that are ending.
async fn open_when_free(proxy: &Proxy, path: &str) -> reqwest::Response {
    for _ in 0..250 {
        let r = open_stream(proxy, path).await;
        if r.status() == 200 {
            return r;
        }
        assert_eq!(r.status(), 429);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no stream slot was released within 5s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_caps_refuse_the_extra_stream_and_release_on_disconnect_and_upstream_death() {
    let slow = upstream::sse(SseScript {
        count: 1000,
        interval: Duration::from_millis(20),
        ..SseScript::default()
    })
    .await;
    let dying = upstream::dying_sse(3).await;
    let proxy = TestProxy::new()
        .upstream("slow", slow.addr)
        .upstream("dying", dying.addr)
        .route("slow", "/slow", "slow", "")
        .route("dying", "/dying", "dying", "")
        .top_yaml("rate_limits:\n  streams: {per_principal: 2}\n")
        .start();

    // Two open streams; the third is refused.
    let s1 = open_stream(&proxy, "/slow").await;
    let s2 = open_stream(&proxy, "/slow").await;
    assert_eq!((s1.status().as_u16(), s2.status().as_u16()), (200, 200));
    let third = open_stream(&proxy, "/slow").await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    assert_eq!(error_code(&third.bytes().await.unwrap()), "RATE_LIMITED");
    // A request that does not ask for a stream takes no slot.
    let plain = client().get(proxy.url("/slow")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    drop(plain);

    // Client disconnect: read two events, drop the response; the slot comes back.
    let got = sse_client::read(s1, Some(2), Duration::from_secs(5)).await;
    // One read may complete more than one event (TCP coalesces): at least two arrived.
    assert!(got.events.len() >= 2, "{} events", got.events.len());
    let s3 = open_when_free(&proxy, "/slow").await;
    assert_eq!(
        open_stream(&proxy, "/slow").await.status(),
        429,
        "still capped at 2"
    );

    // Upstream death: two streams whose upstream dies mid-stream give their slots back.
    drop((s2, s3));
    let d1 = open_when_free(&proxy, "/dying").await;
    let d2 = open_when_free(&proxy, "/dying").await;
    for d in [d1, d2] {
        let got = sse_client::read(d, None, Duration::from_secs(5)).await; // ends at the death
        assert_eq!(got.events.len(), 3);
    }
    let _x = open_when_free(&proxy, "/slow").await;
    let _y = open_when_free(&proxy, "/slow").await;
    assert_eq!(
        open_stream(&proxy, "/slow").await.status(),
        429,
        "the cap still holds"
    );
}
