//! A lean HTTP/1.1 load client and upstream for the audit load test: a few dozen lines of raw
//! keep-alive I/O instead of a full client and server stack, so that in a debug build most of the
//! CPU goes to the proxy under test, not to the harness.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream answering every request `200` with a small JSON body, keep-alive.
pub async fn fixed_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let Some((head_len, body_len, _)) = read_head(&mut conn, &mut buf).await else {
                        return;
                    };
                    if read_exact_buffered(&mut conn, &mut buf, head_len + body_len)
                        .await
                        .is_none()
                    {
                        return;
                    }
                    buf.drain(..head_len + body_len);
                    let body = br#"{"ok":true,"from":"upstream"}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut out = resp.into_bytes();
                    out.extend_from_slice(body);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One keep-alive client connection that reconnects when the server closes.
pub struct Client {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    /// A client for `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conn: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and returns the response status, or why there was none.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        request_id: &str,
        body: usize,
    ) -> Result<u16, String> {
        if self.conn.is_none() {
            let conn = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            self.conn = Some(conn);
            self.buf.clear();
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: proxy\r\nx-request-id: {request_id}\r\ncontent-length: {body}\r\n\r\n"
        )
        .into_bytes();
        req.resize(req.len() + body, b'x');
        if let Err(e) = conn.write_all(&req).await {
            self.conn = None;
            return Err(format!("write: {e}"));
        }
        let Some((head_len, body_len, close)) = read_head(conn, &mut self.buf).await else {
            self.conn = None;
            return Err("no response head (connection closed or failed)".into());
        };
        let status = std::str::from_utf8(&self.buf[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("no status code")?;
        read_exact_buffered(conn, &mut self.buf, head_len + body_len)
            .await
            .ok_or("response body cut short")?;
        self.buf.drain(..head_len + body_len);
        if close {
            self.conn = None;
        }
        Ok(status)
    }
}

/// Reads until `buf` holds a whole header block; returns its length, the declared body length
/// and whether the peer asked to close.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, usize, bool)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?.to_ascii_lowercase();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let body = header("content-length:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let close = header("connection:").is_some_and(|v| v == "close");
            return Some((end + 4, body, close));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_exact_buffered(conn: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Option<()> {
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}
