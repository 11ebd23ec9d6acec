//! Connection limits of the public listeners, below HTTP: a total deadline for every request
//! head, and a cap on concurrent connections per client address.
//!
//! pingora's downstream read timeout restarts at every read, so a client that trickles one
//! header line every few seconds holds its socket (and a file descriptor) for as long as it
//! likes; a thousand such clients exhaust a small `ulimit -n`. [`ConnGuard`] wraps the HTTP
//! application of a listener: it refuses a connection beyond `server.max_connections_per_ip`
//! from one address, and wraps every accepted stream in a [`HeadDeadline`] that fails the read
//! once a request head has taken longer than `server.header_timeout` — from the connection's
//! start for the first request, from its first byte for each later one on a kept-alive
//! connection. Bodies keep pingora's per-read timeout; HTTP/2 connections (prior knowledge or
//! ALPN) are left to HTTP/2's own flow control after their preface.
//!
//! The head's end is found by watching the bytes pingora reads for the empty line that ends it,
//! as pingora's parser reads one ([`super::head_end`]); only the line feeds are visited, which
//! is cheaper than a second HTTP parser and why this is hand-written.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::head_end::HeadEnd;

/// The limits of one proxy (shared by its listeners) and what they did.
pub struct ConnLimits {
    header_timeout: Duration,
    max_per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: prometheus::IntCounter,
    timed_out: prometheus::IntCounter,
}

impl ConnLimits {
    /// Limits with `header_timeout` per request head and at most `max_per_ip` concurrent
    /// connections per client address (`0`: no cap); `refused` and `timed_out` count what they
    /// cut off.
    pub fn new(
        header_timeout: Duration,
        max_per_ip: usize,
        refused: prometheus::IntCounter,
        timed_out: prometheus::IntCounter,
    ) -> Self {
        Self {
            header_timeout,
            max_per_ip,
            open: Mutex::new(HashMap::new()),
            refused,
            timed_out,
        }
    }

    /// Takes a connection slot for `ip`, or `None` when it already holds the maximum.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        if self.max_per_ip == 0 {
            return Some(Slot(None));
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(Slot(Some((self.clone(), ip))))
    }

    /// Connections open from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

/// One admitted connection's place under the per-address cap; freed on drop.
struct Slot(Option<(Arc<ConnLimits>, IpAddr)>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((limits, ip)) = self.0.take() {
            let mut open = limits.open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

/// A listener's HTTP application behind [`ConnLimits`].
pub struct ConnGuard<A> {
    inner: Arc<A>,
    limits: Arc<ConnLimits>,
}

impl<A> ConnGuard<A> {
    /// Guards `inner` with `limits`.
    pub fn new(inner: A, limits: Arc<ConnLimits>) -> Self {
        Self {
            inner: Arc::new(inner),
            limits,
        }
    }

    /// The guarded application.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

/// The answer to a connection over the per-address cap: the documented error body, then close.
fn over_cap_response() -> Vec<u8> {
    let err = crate::error::ProxyError::RateLimited {
        retry_after: Duration::from_secs(1),
        headers: Default::default(),
    };
    let body = err.body("", "");
    let mut out = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let slot = match ip {
            Some(ip) => match self.limits.admit(ip) {
                Some(slot) => slot,
                None => {
                    self.limits.refused.inc();
                    tracing::warn!(client = %ip, max = self.limits.max_per_ip,
                        "connection refused: too many from this address");
                    // Best effort: the client learns why; the socket closes either way.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        let _ = stream.write_all(&over_cap_response()).await;
                        let _ = stream.flush().await;
                    })
                    .await;
                    return None;
                }
            },
            None => Slot(None),
        };
        let guarded = HeadDeadline::new(stream, &self.limits, slot);
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Where a connection is, as far as the head deadline cares.
#[derive(Debug)]
enum Phase {
    /// Reading a request head, which must be complete by the deadline. `end` follows the bytes
    /// read (to find the empty line across reads); `first`: nothing of the connection was read
    /// yet (only then can it be HTTP/2's preface).
    Head { end: HeadEnd, first: bool },
    /// The head was read; the request and its answer are under way.
    Request,
    /// The answer went out: the next byte read starts the next head.
    Idle,
    /// HTTP/2: no heads to time.
    Off,
}

/// A client stream whose request heads must arrive in time (see the module docs).
pub struct HeadDeadline {
    inner: Stream,
    phase: Phase,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: prometheus::IntCounter,
    _slot: Slot,
}

impl std::fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadDeadline")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl HeadDeadline {
    fn new(inner: Stream, limits: &ConnLimits, slot: Slot) -> Self {
        Self {
            inner,
            phase: Phase::Head {
                end: HeadEnd::default(),
                first: true,
            },
            timeout: limits.header_timeout,
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            timed_out: limits.timed_out.clone(),
            _slot: slot,
        }
    }

    /// Follows the bytes just read: the start of a head, its end, or HTTP/2's preface.
    fn observe(&mut self, read: &[u8]) {
        if read.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Idle) {
            let at = tokio::time::Instant::now() + self.timeout;
            self.deadline.as_mut().reset(at);
            self.phase = Phase::Head {
                end: HeadEnd::default(),
                first: false,
            };
        }
        let Phase::Head { end, first } = &mut self.phase else {
            return;
        };
        // Only the connection's very first bytes can be the preface: a later `PRI ` (after
        // empty lines, say) is an HTTP/1 head and stays under the deadline.
        if std::mem::take(first) && read.starts_with(b"PRI ") {
            self.phase = Phase::Off;
            return;
        }
        if end.feed(read) {
            self.phase = Phase::Request;
        }
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if matches!(this.phase, Phase::Head { .. }) && this.deadline.as_mut().poll(cx).is_ready() {
            this.timed_out.inc();
            this.phase = Phase::Off;
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request head not complete within server.header_timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Only heads are watched: a body or an HTTP/2 frame costs one comparison here.
        if matches!(polled, Poll::Ready(Ok(())))
            && matches!(this.phase, Phase::Head { .. } | Phase::Idle)
        {
            this.observe(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // A `100 Continue` is not the answer: the body follows, and it is no head.
        if matches!(self.phase, Phase::Request) && !buf.starts_with(b"HTTP/1.1 1") {
            self.phase = Phase::Idle;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let interim = bufs.first().is_some_and(|b| b.starts_with(b"HTTP/1.1 1"));
        if matches!(self.phase, Phase::Request) && !interim {
            self.phase = Phase::Idle;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora_core::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<pingora_core::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora_core::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<pingora_core::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora_core::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(timeout: Duration, max_per_ip: usize) -> Arc<ConnLimits> {
        let c = || prometheus::IntCounter::new("c", "c").unwrap();
        Arc::new(ConnLimits::new(timeout, max_per_ip, c(), c()))
    }

    /// A guarded server end and the client end of an in-memory connection.
    fn pair(timeout: Duration) -> (HeadDeadline, tokio::io::DuplexStream, Arc<ConnLimits>) {
        let l = limits(timeout, 0);
        let (client, server) = tokio::io::duplex(4096);
        (
            HeadDeadline::new(Box::new(server), &l, Slot(None)),
            client,
            l,
        )
    }

    async fn read_some(s: &mut HeadDeadline) -> std::io::Result<Vec<u8>> {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_split_over_reads_ends_at_its_blank_line() {
        let (mut s, mut c, _l) = pair(Duration::from_secs(10));
        for (part, done) in [
            (&b"GET / HTTP/1.1\r\nhost: a\r"[..], false),
            (b"\n\r", false),
            (b"\nbody", true),
        ] {
            c.write_all(part).await.unwrap();
            read_some(&mut s).await.unwrap();
            assert_eq!(matches!(s.phase, Phase::Request), done, "{part:?}");
        }
        // Lenient line endings end a head too.
        let (mut s, mut c, _l) = pair(Duration::from_secs(10));
        c.write_all(b"GET / HTTP/1.1\nhost: a\n\n").await.unwrap();
        read_some(&mut s).await.unwrap();
        assert!(matches!(s.phase, Phase::Request));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_not_done_by_the_deadline_fails_the_read() {
        let (mut s, mut c, l) = pair(Duration::from_secs(2));
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        read_some(&mut s).await.unwrap();
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(900)).await;
            c.write_all(b"x: y\r\n").await.unwrap();
            if let Err(e) = read_some(&mut s).await {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                assert_eq!(l.timed_out.get(), 1);
                return;
            }
        }
        panic!("a head trickled past its deadline was read");
    }

    /// Empty lines before the request line (which pingora's parser skips) are not the end of a
    /// head: a client sending them first and then trickling its head is still cut off.
    #[tokio::test(start_paused = true)]
    async fn empty_lines_first_do_not_stop_the_deadline() {
        for leading in [&b"\r\n\r\n"[..], b"\n\n", b"\r\n\r\nPRI "] {
            let (mut s, mut c, l) = pair(Duration::from_secs(2));
            c.write_all(leading).await.unwrap();
            read_some(&mut s).await.unwrap();
            assert!(matches!(s.phase, Phase::Head { .. }), "{leading:?}");
            let mut cut = false;
            for _ in 0..3 {
                tokio::time::advance(Duration::from_millis(900)).await;
                c.write_all(b"x").await.unwrap();
                if let Err(e) = read_some(&mut s).await {
                    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                    assert_eq!(l.timed_out.get(), 1);
                    cut = true;
                    break;
                }
            }
            assert!(
                cut,
                "{leading:?}, then a trickled head, got past the deadline"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_head_is_timed_from_its_first_byte_and_http2_is_left_alone() {
        let (mut s, mut c, _l) = pair(Duration::from_secs(2));
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read_some(&mut s).await.unwrap();
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(s.phase, Phase::Idle));
        // An interim `100 Continue` leaves the request under way (its body is no head).
        let (mut s2, mut c2, _l2) = pair(Duration::from_secs(2));
        c2.write_all(b"POST / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut s2).await.unwrap();
        s2.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(s2.phase, Phase::Request));
        // Idle far longer than the deadline, then a quick second head.
        tokio::time::advance(Duration::from_secs(30)).await;
        c.write_all(b"GET /2 HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_some(&mut s).await.is_ok());
        assert!(matches!(s.phase, Phase::Request));

        let (mut s, mut c, _l) = pair(Duration::from_secs(2));
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut s).await.unwrap();
        assert!(matches!(s.phase, Phase::Off));
        tokio::time::advance(Duration::from_secs(30)).await;
        c.write_all(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        assert!(
            read_some(&mut s).await.is_ok(),
            "HTTP/2 frames are not heads"
        );
    }

    #[test]
    fn the_per_address_cap_counts_open_connections() {
        let l = limits(Duration::from_secs(1), 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.admit(ip).unwrap();
        let _b = l.admit(ip).unwrap();
        assert!(l.admit(ip).is_none());
        assert!(
            l.admit("10.0.0.2".parse().unwrap()).is_some(),
            "per address"
        );
        drop(a);
        assert_eq!(l.open_from(ip), 1);
        assert!(l.admit(ip).is_some());
        assert!(
            limits(Duration::from_secs(1), 0).admit(ip).is_some(),
            "0: no cap"
        );
    }
}
