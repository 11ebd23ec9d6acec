//! The documented error bodies for the proxy's own failures.

use palisade_e2e::{client, closed_port, error_code, upstream, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("small", "/small", "echo", "max_body_bytes: 100")
        .route("big", "/", "echo", "")
        .start();
    let c = client();

    let resp = c
        .post(proxy.url("/small"))
        .body(vec![b'x'; 101])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        error_code(&resp.bytes().await.unwrap()),
        "PAYLOAD_TOO_LARGE"
    );

    // A chunked body (no Content-Length) is counted as it streams.
    let chunks = futures::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 40])));
    let resp = c
        .post(proxy.url("/small"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        error_code(&resp.bytes().await.unwrap()),
        "PAYLOAD_TOO_LARGE"
    );

    // At the limit passes; the route-less default limit (1 MiB) applies elsewhere.
    let resp = c
        .post(proxy.url("/small"))
        .body(vec![b'x'; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(proxy.url("/other"))
        .body(vec![b'x'; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502() {
    let proxy = TestProxy::new()
        .upstream("gone", closed_port())
        .route("gone", "/", "gone", "")
        .start();
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        error_code(&resp.bytes().await.unwrap()),
        "UPSTREAM_UNAVAILABLE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_504_after_the_idle_timeout() {
    let silent = upstream::silent().await;
    let proxy = TestProxy::new()
        .upstream("silent", silent.addr)
        .route("silent", "/", "silent", "idle_timeout: 300ms")
        .start();
    let started = std::time::Instant::now();
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "UPSTREAM_TIMEOUT");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_client_is_a_4xx_not_a_crash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("all", "/", "echo", "")
        .start();
    for garbage in [
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ] {
        let mut sock = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        sock.write_all(garbage).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sock.read_to_end(&mut buf),
        )
        .await;
        assert!(read.is_ok(), "the proxy hung on {garbage:?}");
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains(" 500 "), "{text}");
    }
    // And it still serves.
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
