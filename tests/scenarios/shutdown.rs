//! Graceful drain: readiness flips, listeners close, live streams end at the deadline.

use std::time::{Duration, Instant};

use palisade_e2e::sse_client;
use palisade_e2e::upstream::{self, SseScript};
use palisade_e2e::{client, eventually, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_short_streams_finish_and_ends_long_ones_with_run_error() {
    let short = upstream::sse(SseScript {
        count: 5,
        agui: true,
        ..SseScript::default()
    })
    .await;
    let long = upstream::sse(SseScript {
        count: 1000,
        agui: true,
        ..SseScript::default()
    })
    .await;
    let proxy = TestProxy::new()
        .drain_timeout("1500ms")
        .upstream("short", short.addr)
        .upstream("long", long.addr)
        .route("short", "/short", "short", "protocol: agui")
        .route("long", "/long", "long", "protocol: agui")
        .start();
    let c = client();
    assert_eq!(
        c.get(proxy.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let short_resp = c.post(proxy.url("/short")).body("{}").send().await.unwrap();
    let short_stream = tokio::spawn(sse_client::read(short_resp, None, Duration::from_secs(20)));
    let long_resp = c.post(proxy.url("/long")).body("{}").send().await.unwrap();
    let long_stream = tokio::spawn(sse_client::read(long_resp, None, Duration::from_secs(20)));
    eventually(Duration::from_secs(2), || {
        (proxy.running.lifecycle.live_streams() == 2).then_some(())
    })
    .await
    .expect("both streams live");

    let shutdown_at = Instant::now();
    proxy.running.shutdown();
    eventually(Duration::from_secs(2), || {
        (!proxy.running.lifecycle.is_ready()).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        c.get(proxy.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    // New connections are refused once the listener closed.
    let addr = proxy.addr();
    let refused = eventually(Duration::from_secs(2), || {
        std::net::TcpStream::connect(addr).is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "listener still accepting during drain");

    let short_got = short_stream.await.unwrap();
    assert_eq!(
        short_got.types().last().unwrap(),
        "RUN_FINISHED",
        "a stream that ends within the deadline finishes"
    );

    let long_got = long_stream.await.unwrap();
    let ended_at = long_got.events.last().unwrap().at;
    let last = long_got.json().pop().unwrap();
    assert_eq!(last["type"], "RUN_ERROR");
    assert_eq!(last["code"], "SHUTTING_DOWN");
    let after = ended_at.duration_since(shutdown_at);
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_secs(4),
        "ended {after:?} after shutdown"
    );
    assert!(
        long_got.events.len() > 10,
        "the long stream kept flowing during the drain"
    );
}
