//! What a connection may cost before its request is read: a client trickling its request head
//! is cut off at `server.header_timeout` (while others are served and a kept-alive client may
//! pause between requests), and one address holds at most `server.max_connections_per_ip`.

use std::time::{Duration, Instant};

use palisade_e2e::upstream::{self, Upstream};
use palisade_e2e::{client, error_code, Proxy, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cut(proxy: &Proxy, reason: &str) -> f64 {
    let line = format!("palisade_client_connections_cut_total{{reason=\"{reason}\"}} ");
    proxy
        .running
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&line).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// An echo upstream behind a proxy with the `server:` settings given.
async fn echo_behind_proxy(server: &str) -> (Upstream, Proxy) {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("all", "/", "echo", "")
        .server_yaml(server)
        .start();
    (echo, proxy)
}

/// Reads until the proxy closes the connection (bounded: `limit`); `None` when it did not.
async fn read_until_closed(sock: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, sock.read_to_end(&mut buf)).await {
        Ok(_) => Some(buf),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_off_at_the_header_timeout() {
    let (echo, proxy) = echo_behind_proxy("header_timeout: 1s").await;
    let mut slow = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: p\r\n")
        .await
        .unwrap();
    // One header line every 200 ms: each read is quick, the head never completes. Bounded: 20
    // lines (4 s), well past the 1 s deadline.
    let mut closed_after = None;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow
            .write_all(format!("x-trickle-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        // A normal client is served meanwhile.
        if i == 2 {
            let resp = client().get(proxy.url("/ok")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    let closed_after = match closed_after {
        Some(t) => t,
        None => {
            let rest = read_until_closed(&mut slow, Duration::from_secs(5)).await;
            assert!(rest.is_some(), "the trickling client was never cut off");
            started.elapsed()
        }
    };
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(4),
        "cut off after {closed_after:?}"
    );
    assert_eq!(cut(&proxy, "header_timeout"), 1.0);
    assert!(
        echo.requests().iter().all(|r| r.path == "/ok"),
        "the trickled request was not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_client_may_pause_between_requests() {
    let (_echo, proxy) = echo_behind_proxy("header_timeout: 1s").await;
    let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..2 {
        let req = format!("GET /k/{i} HTTP/1.1\r\nhost: p\r\n\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        // Longer than the head deadline: idle time between requests is not head time.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(cut(&proxy, "header_timeout"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_max_connections_per_ip() {
    let (_echo, proxy) = echo_behind_proxy("max_connections_per_ip: 3").await;
    let mut held = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..3 {
        let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
        // One answered request each: the proxy has accepted (and counts) the connection, however
        // loaded the machine is; it stays open (kept alive) afterwards.
        let req = format!("GET /held/{i} HTTP/1.1\r\nhost: p\r\n\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(sock);
    }
    let mut fourth = TcpStream::connect(proxy.addr()).await.unwrap();
    let answer = read_until_closed(&mut fourth, Duration::from_secs(5))
        .await
        .expect("the connection over the cap is closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_eq!(error_code(body.as_bytes()), "RATE_LIMITED");
    assert_eq!(cut(&proxy, "per_ip_cap"), 1.0);

    // A closed connection frees its place.
    drop(held.pop());
    let mut served = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
        sock.write_all(b"GET /again HTTP/1.1\r\nhost: p\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_until_closed(&mut sock, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        if got.starts_with(b"HTTP/1.1 200") {
            served = Some(());
            break;
        }
    }
    assert!(served.is_some(), "a freed place was never reused");
}
