//! SSE through the proxy: event-by-event delivery, framing, cancellation, upstream death.

use std::time::{Duration, Instant};

use palisade_e2e::sse_client::{self, Received};
use palisade_e2e::upstream::{self, SseScript};
use palisade_e2e::{client, eventually, TestProxy};

async fn stream(proxy: &palisade_e2e::Proxy, path: &str, stop_after: Option<usize>) -> Received {
    let resp = client()
        .post(proxy.url(path))
        .header("accept", "text/event-stream")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    sse_client::read(resp, stop_after, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_client_within_10ms_of_being_emitted() {
    let up = upstream::sse(SseScript {
        count: 20,
        ..SseScript::default()
    })
    .await;
    let proxy = TestProxy::new()
        .upstream("sse", up.addr)
        .route("sse", "/", "sse", "idle_timeout: 1s")
        .start();
    let got = stream(&proxy, "/events", None).await;
    let emitted = up.emitted.lock().unwrap().clone();
    assert_eq!(got.events.len(), 20);
    assert_eq!(emitted.len(), 20);
    let mut worst = Duration::ZERO;
    for (i, arrival) in got.events.iter().enumerate() {
        let data: serde_json::Value =
            serde_json::from_str(arrival.event.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["seq"], i, "events arrive in order");
        let lag = arrival.at.saturating_duration_since(emitted[i]);
        worst = worst.max(lag);
        assert!(
            lag < Duration::from_millis(10),
            "event {i} arrived {lag:?} after it was emitted"
        );
        if let Some(next) = emitted.get(i + 1) {
            // Not batched: each arrives before the next one is even emitted.
            assert!(
                arrival.at < *next,
                "event {i} was held back until event {} was emitted",
                i + 1
            );
        }
    }
    eprintln!("worst per-event lag through the proxy: {worst:?}");
    // The stream ran for 2 s with a 1 s idle timeout: idle, not total, is what counts.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_and_cr_framing_leave_the_proxy_as_lf() {
    for line_ending in ["\r\n", "\r"] {
        let up = upstream::sse(SseScript {
            count: 3,
            interval: Duration::from_millis(10),
            line_ending,
            ..SseScript::default()
        })
        .await;
        let proxy = TestProxy::new()
            .upstream("sse", up.addr)
            .route("sse", "/", "sse", "")
            .start();
        let got = stream(&proxy, "/", None).await;
        assert_eq!(got.events.len(), 3);
        let text = String::from_utf8(got.raw.clone()).unwrap();
        assert!(!text.contains('\r'), "CR left in {text:?}");
        assert_eq!(
            text,
            "data: {\"seq\":0}\n\ndata: {\"seq\":1}\n\ndata: {\"seq\":2}\n\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_within_a_second() {
    let up = upstream::sse(SseScript {
        count: 100,
        ..SseScript::default()
    })
    .await;
    let proxy = TestProxy::new()
        .upstream("sse", up.addr)
        .route("sse", "/", "sse", "")
        .start();
    let got = stream(&proxy, "/", Some(3)).await; // reads 3 events, then drops the response
    let gone_at = Instant::now();
    assert_eq!(got.events.len(), 3);
    let cancelled = eventually(Duration::from_secs(3), || *up.cancelled.lock().unwrap())
        .await
        .expect("the upstream stream was never cancelled");
    let delay = cancelled.saturating_duration_since(gone_at);
    assert!(
        delay < Duration::from_secs(1),
        "upstream cancelled {delay:?} after the client left"
    );
    // And the proxy no longer counts the stream as live.
    eventually(Duration::from_secs(2), || {
        (proxy.running.lifecycle.live_streams() == 0).then_some(())
    })
    .await
    .expect("stream still registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_death_mid_stream_ends_an_agui_run_with_run_error() {
    let up = upstream::dying_sse(3).await;
    let proxy = TestProxy::new()
        .upstream("agent", up.addr)
        .route("agent", "/agent", "agent", "protocol: agui")
        .start();
    let got = stream(&proxy, "/agent", None).await;
    let types = got.types();
    assert_eq!(types[0], "RUN_STARTED");
    assert_eq!(types.len(), 4, "{types:?}");
    assert_eq!(types.last().unwrap(), "RUN_ERROR");
    let last = got.json().pop().unwrap();
    assert_eq!(last["code"], "UPSTREAM_UNAVAILABLE");
    assert!(last["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_death_mid_stream_closes_a_plain_sse_stream() {
    let up = upstream::dying_sse(3).await;
    let proxy = TestProxy::new()
        .upstream("sse", up.addr)
        .route("sse", "/", "sse", "")
        .start();
    let got = stream(&proxy, "/", None).await; // `read` panics if the stream hangs
    assert_eq!(got.events.len(), 3);
    assert!(!got.types().contains(&"RUN_ERROR".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agui_stream_that_ends_before_run_finished_gets_run_error() {
    let up = upstream::sse(SseScript {
        count: 2,
        interval: Duration::from_millis(10),
        agui: true,
        finish_run: false,
        ..SseScript::default()
    })
    .await;
    let proxy = TestProxy::new()
        .upstream("agent", up.addr)
        .route("agent", "/agent", "agent", "protocol: agui")
        .start();
    let got = stream(&proxy, "/agent", None).await;
    assert_eq!(
        got.types(),
        [
            "RUN_STARTED",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "RUN_ERROR"
        ]
    );

    // A complete run passes through untouched.
    let up = upstream::sse(SseScript {
        count: 2,
        interval: Duration::from_millis(10),
        agui: true,
        ..SseScript::default()
    })
    .await;
    let proxy = TestProxy::new()
        .upstream("agent", up.addr)
        .route("agent", "/agent", "agent", "protocol: agui")
        .start();
    let got = stream(&proxy, "/agent", None).await;
    assert_eq!(
        got.types(),
        [
            "RUN_STARTED",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "RUN_FINISHED"
        ]
    );
}
