//! Readiness, in-flight tracking and graceful drain.
//!
//! [`Lifecycle`] is shared by the data plane and the admin listener:
//! - `/readyz` answers 200 only while the config is loaded and no shutdown has begun;
//! - every request holds an [`InFlight`] guard, so a drain knows when nothing is left;
//! - every relayed stream is registered with its upstream socket, so that at the drain deadline
//!   the proxy can end it: shutting the upstream socket down makes the data plane see the
//!   upstream end mid-stream, and the stream's error path then writes the final `RUN_ERROR`
//!   (code `SHUTTING_DOWN`) to the client. pingora offers no hook to write to a downstream from
//!   outside its request task, so this is the one lever that reaches an idle stream.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;

/// Process-wide state of the proxy's life: ready, draining, what is still in flight.
#[derive(Default)]
pub struct Lifecycle {
    ready: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    next_stream: AtomicU64,
    streams: DashMap<u64, LiveStream>,
    checks: std::sync::RwLock<Vec<ReadinessCheck>>,
}

/// A named condition `/readyz` waits for (e.g. "authentication keys loaded").
type ReadinessCheck = (&'static str, Box<dyn Fn() -> bool + Send + Sync>);

struct LiveStream {
    fd: RawFd,
    peer: std::net::SocketAddr,
    ended_by_drain: Arc<AtomicBool>,
}

impl Lifecycle {
    /// A lifecycle that is not ready yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks the proxy ready (config loaded, listeners up).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Adds a condition readiness waits for. Called at start-up only (the lock is never taken on
    /// the request path).
    pub fn add_readiness_check(
        &self,
        name: &'static str,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        if let Ok(mut checks) = self.checks.write() {
            checks.push((name, Box::new(check)));
        }
    }

    /// Names of the readiness conditions not met yet.
    pub fn pending_checks(&self) -> Vec<&'static str> {
        self.checks
            .read()
            .map(|c| c.iter().filter(|(_, f)| !f()).map(|(n, _)| *n).collect())
            .unwrap_or_default()
    }

    /// Whether `/readyz` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
            && self.pending_checks().is_empty()
    }

    /// Whether a shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Begins a shutdown: `/readyz` turns 503 from now on.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Counts a request in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Registers a live stream relayed over the upstream socket `fd` connected to `peer`.
    /// The returned guard deregisters it; [`StreamGuard::ended_by_drain`] tells the stream's
    /// error path whether the drain ended it.
    pub fn register_stream(self: &Arc<Self>, fd: RawFd, peer: std::net::SocketAddr) -> StreamGuard {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let ended_by_drain = Arc::new(AtomicBool::new(false));
        self.streams.insert(
            id,
            LiveStream {
                fd,
                peer,
                ended_by_drain: ended_by_drain.clone(),
            },
        );
        StreamGuard {
            lifecycle: self.clone(),
            id,
            ended_by_drain,
        }
    }

    /// Live streams now.
    pub fn live_streams(&self) -> usize {
        self.streams.len()
    }

    /// Waits until nothing is in flight or `deadline` passes; then ends every stream still
    /// live and waits up to `grace` more for them to finish writing their final event.
    /// Returns the number of streams it had to end.
    pub async fn drain(&self, deadline: Instant, grace: Duration) -> usize {
        self.wait_idle_until(deadline).await;
        let mut ended = 0;
        for entry in self.streams.iter() {
            let stream = entry.value();
            if peer_of(stream.fd) == Some(stream.peer) {
                stream.ended_by_drain.store(true, Ordering::SeqCst);
                // SAFETY: `shutdown` on a socket fd has no memory effects; the peer check above
                // makes sure the fd still is this stream's upstream socket.
                unsafe { libc::shutdown(stream.fd, libc::SHUT_RDWR) };
                ended += 1;
            }
        }
        self.wait_idle_until(Instant::now() + grace).await;
        ended
    }

    async fn wait_idle_until(&self, deadline: Instant) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return;
            }
        }
    }
}

/// The peer address of socket `fd`, if it is a connected TCP socket.
fn peer_of(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes of the given size; the fd is not closed.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let a: &libc::sockaddr_in = unsafe { &*(&storage as *const _ as *const _) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some((ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let a: &libc::sockaddr_in6 = unsafe { &*(&storage as *const _ as *const _) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some((ip, u16::from_be(a.sin6_port)).into())
        }
        _ => None,
    }
}

/// Held by a request while it is in flight.
pub struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Held by a relayed stream while it is live.
pub struct StreamGuard {
    lifecycle: Arc<Lifecycle>,
    id: u64,
    ended_by_drain: Arc<AtomicBool>,
}

impl StreamGuard {
    /// Whether the drain deadline ended this stream.
    pub fn ended_by_drain(&self) -> bool {
        self.ended_by_drain.load(Ordering::SeqCst)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.lifecycle.streams.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_between_load_and_drain() {
        let l = Lifecycle::new();
        assert!(!l.is_ready());
        l.set_ready();
        assert!(l.is_ready());
        l.start_drain();
        assert!(!l.is_ready());
    }

    #[tokio::test]
    async fn drain_returns_when_the_last_request_leaves() {
        let l = Lifecycle::new();
        let guard = l.enter();
        let l2 = l.clone();
        let drain = tokio::spawn(async move {
            l2.drain(
                Instant::now() + Duration::from_secs(30),
                Duration::from_secs(1),
            )
            .await
        });
        tokio::task::yield_now().await;
        assert!(!drain.is_finished());
        drop(guard);
        let ended = tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .expect("drain finished after the request left")
            .unwrap();
        assert_eq!(ended, 0);
    }

    #[tokio::test]
    async fn drain_deadline_ends_live_streams() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(peer).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        use std::os::fd::AsRawFd;
        let l = Lifecycle::new();
        let _in_flight = l.enter();
        let guard = l.register_stream(client.as_raw_fd(), peer);
        let ended = l
            .drain(Instant::now() + Duration::from_millis(50), Duration::ZERO)
            .await;
        assert_eq!(ended, 1);
        assert!(guard.ended_by_drain());
        // The socket was shut down: the other side reads EOF.
        use std::io::Read;
        let mut buf = [0u8; 1];
        assert_eq!(server_side.read(&mut buf).unwrap(), 0);
        drop(guard);
        assert_eq!(l.live_streams(), 0);
    }
}
