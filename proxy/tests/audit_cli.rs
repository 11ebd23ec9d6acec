//! The audit trail through the real binary: SIGTERM in the middle of a load loses no record
//! (records written == responses clients received), and `palisade audit verify` / `tail`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_proxy::audit::chain::{self, ChainHead};
use serde_json::json;

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

/// Reads one response (head + content-length body) from `conn`; returns the status and whether
/// the server will close.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, bool)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let value = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let len: usize = value("content-length:").and_then(|v| v.parse().ok())?;
            let close = value("connection:").is_some_and(|v| v == "close");
            let status = head.get(9..12)?.parse().ok()?;
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return Some((status, close));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A keep-alive upstream answering `200 ok` to every bodiless request; `/slow` paths after
/// 300 ms (so that requests are in flight when the proxy is told to stop).
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let slow = buf[..end].windows(5).any(|w| w == b"/slow");
                    buf.drain(..end + 4);
                    if slow {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if conn.write_all(resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn sigterm_during_load_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let config = dir.path().join("palisade.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
             admin: {{address: \"127.0.0.1:0\"}}\n\
             server: {{threads: 2, log_level: warn, drain_timeout: 5s}}\n\
             upstreams: {{up: {{address: \"{}\"}}}}\n\
             routes:\n  - {{name: api, match: {{path_prefix: /}}, upstream: up, auth: optional}}\n\
             audit:\n  file: {{path: \"{}\", fsync: batch}}\n",
            upstream(),
            audit_file.display()
        ),
    )
    .unwrap();
    let mut child = palisade()
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Keep reading stdout to its end: a closed pipe would fail the proxy's later prints.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let banner_deadline = Instant::now() + Duration::from_secs(60);
    let proxy: SocketAddr = std::iter::from_fn(|| {
        rx.recv_timeout(banner_deadline.saturating_duration_since(Instant::now()))
            .ok()
    })
    .find_map(|l| {
        l.trim()
            .strip_prefix("proxy")
            .map(|rest| rest.trim().trim_start_matches("http://").parse().unwrap())
    })
    .expect("the banner names the proxy address within 60 s");

    // Clients hammer the proxy until it stops answering; each counts the responses it read.
    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let signaled = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let received = received.clone();
            let stop = stop.clone();
            let signaled = signaled.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        match TcpStream::connect(proxy) {
                            Ok(c) => {
                                conn = Some(c);
                                buf.clear();
                            }
                            // The listener is gone: the proxy is shutting down.
                            Err(_) if signaled.load(Ordering::SeqCst) => return,
                            Err(e) => panic!("connect before SIGTERM: {e}"),
                        }
                    }
                    let c = conn.as_mut().unwrap();
                    i += 1;
                    let kind = if i % 20 == 0 { "slow" } else { "fast" };
                    let req = format!("GET /{kind}/{client}/{i} HTTP/1.1\r\nhost: p\r\n\r\n");
                    if c.write_all(req.as_bytes()).is_err() {
                        conn = None;
                        continue;
                    }
                    match read_response(c, &mut buf) {
                        Some((_, close)) => {
                            received.fetch_add(1, Ordering::SeqCst);
                            if close {
                                conn = None;
                            }
                        }
                        None => conn = None,
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::SeqCst) < 3000 {
        assert!(Instant::now() < deadline, "load never got going");
        // Poll gently: a spinning core would be taken from the proxy under test.
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    signaled.store(true, Ordering::SeqCst);
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let at_signal = received.load(Ordering::SeqCst);
    let status = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(status.success(), "exit {status:?}");
    let responses = received.load(Ordering::SeqCst);
    let verified = chain::verify(&[&audit_file]).expect("chain intact");
    eprintln!(
        "responses received: {responses} ({} after SIGTERM), records: {}",
        responses - at_signal,
        verified.records
    );
    assert!(responses > at_signal, "nothing was in flight at SIGTERM");
    assert_eq!(verified.records as usize, responses);
}

fn write_chain(path: &Path, statuses: &[u16]) {
    let mut head = ChainHead::default();
    let lines: Vec<String> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let record = json!({"request_id": format!("r{i}"), "status": s, "method": "GET",
                "path": "/x", "reason": if *s == 200 { "ok" } else { "forbidden" },
                "error_code": if *s == 200 { None } else { Some("FORBIDDEN") }});
            head.seal(record.as_object().unwrap().clone())
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn audit_verify_and_tail_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_chain(&file, &[200, 403, 200, 200, 403]);

    let ok = palisade()
        .args(["audit", "verify"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok: 5 records"));

    let tail = palisade()
        .args(["audit", "tail", "--denied", "--no-follow"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(tail.status.success());
    let out = String::from_utf8_lossy(&tail.stdout);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| l.contains(" 403 ") && l.contains("code=FORBIDDEN")),
        "{out}"
    );

    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("\"status\":200", "\"status\":204", 2);
    std::fs::write(&file, edited).unwrap();
    let broken = palisade()
        .args(["audit", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("audit.jsonl:1: record edited"), "{err}");
}

#[test]
fn signed_checkpoints_from_the_command_line() {
    use palisade_proxy::audit::checkpoint::{CheckpointKey, Reason};
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cp.key");
    let public = dir.path().join("cp.key.pub");
    let keygen = palisade()
        .args(["audit", "keygen"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let shown = palisade()
        .args(["audit", "public-key"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert_eq!(shown.stdout, std::fs::read(&public).unwrap());
    let key = CheckpointKey::from_pem(&std::fs::read_to_string(&key_file).unwrap()).unwrap();

    // Five records, a checkpoint after the third and one at the end.
    let file = dir.path().join("audit.jsonl");
    let mut head = ChainHead::default();
    let mut lines = Vec::new();
    for i in 0..5 {
        let record = json!({"request_id": format!("r{i}"), "status": 200, "path": "/x"});
        lines.push(head.seal(record.as_object().unwrap().clone()));
        if i == 2 {
            lines.push(key.seal(&mut head, Reason::Count, "2026-01-01T00:00:00.000Z"));
        }
    }
    lines.push(key.seal(&mut head, Reason::Flush, "2026-01-01T00:00:01.000Z"));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let verify = |with_key: bool| {
        let mut cmd = palisade();
        cmd.args(["audit", "verify"]).arg(&file);
        if with_key {
            cmd.arg("--public-key").arg(&public);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = verify(true);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ok: 7 records in 1 file(s), chain intact"),
        "{out}"
    );
    assert!(
        out.contains("signed: 2 checkpoint(s) valid under key"),
        "{out}"
    );
    assert!(
        out.contains("the last is seq 7 (2026-01-01T00:00:01.000Z, flush)"),
        "{out}"
    );
    assert!(
        out.contains("ok: every record is covered by a signed checkpoint"),
        "{out}"
    );
    let (code, out, _) = verify(false);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("note: 2 signed checkpoint(s) not checked"),
        "{out}"
    );

    // The tail cut off: the chain is fine, the last two records are unsigned.
    std::fs::write(&file, lines[..6].join("\n") + "\n").unwrap();
    let (code, out, _) = verify(true);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("UNSIGNED TAIL: 2 record(s) after the last checkpoint (seq 5-6"),
        "{out}"
    );

    // A full rewrite with recomputed hashes: the chain passes, the checkpoints do not.
    let mut head = ChainHead::default();
    let forged: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut m: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&l.replace("\"r1\"", "\"forged\"")).unwrap();
            for k in ["seq", "prev_hash", "hash"] {
                m.remove(k);
            }
            head.seal(m)
        })
        .collect();
    std::fs::write(&file, forged.join("\n") + "\n").unwrap();
    let (code, _, _) = verify(false);
    assert_eq!(code, Some(0), "the bare chain cannot tell");
    let (code, _, err) = verify(true);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("audit.jsonl:4: checkpoint signed for seq 3")
            && err.contains("the records it vouched for were rewritten"),
        "{err}"
    );
}

#[test]
fn a_stopped_proxy_leaves_a_fully_signed_trail() {
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let key_file = dir.path().join("keys/cp.key");
    let config = dir.path().join("palisade.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
             admin: {{address: \"127.0.0.1:0\"}}\n\
             server: {{threads: 1, log_level: warn, drain_timeout: 2s}}\n\
             upstreams: {{up: {{address: \"{}\"}}}}\n\
             routes:\n  - {{name: api, match: {{path_prefix: /}}, upstream: up, auth: optional}}\n\
             audit:\n  file: {{path: \"{}\"}}\n  checkpoint: {{key_file: \"{}\", generate: true, \
             every_records: 1000, every: 1h}}\n",
            upstream(),
            audit_file.display(),
            key_file.display()
        ),
    )
    .unwrap();
    let mut child = palisade()
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines().map_while(Result::ok);
    let proxy: SocketAddr = lines
        .find_map(|l| {
            l.trim()
                .strip_prefix("proxy")
                .map(|rest| rest.trim().trim_start_matches("http://").parse().unwrap())
        })
        .expect("the banner names the proxy address");
    std::thread::spawn(move || lines.for_each(drop));
    for i in 0..5 {
        let mut c = TcpStream::connect(proxy).unwrap();
        let req = format!("GET /r/{i} HTTP/1.1\r\nhost: p\r\nconnection: close\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut c, &mut buf).map(|r| r.0), Some(200));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
    let out = palisade()
        .args(["audit", "verify"])
        .arg(&audit_file)
        .arg("--public-key")
        .arg(dir.path().join("keys/cp.key.pub"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Neither the count nor the timer is reached (the writer batches records, so a count
    // checkpoint's place in the file depends on timing): the only checkpoint is the shutdown
    // flush's, and it covers all five records.
    assert!(text.contains("ok: 6 records"), "{text}");
    assert!(text.contains("signed: 1 checkpoint(s)"), "{text}");
    assert!(text.contains("flush)"), "{text}");
}

#[test]
fn audit_tail_follows_new_records_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, "").unwrap();
    let mut child = palisade()
        // Default `-n 10`: the first record shows whether it lands before or after tail starts.
        .args(["audit", "tail"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut head = ChainHead::default();
    let mut append = |path: &Path, id: &str| {
        let line = head.seal(
            json!({"request_id": id, "status": 200, "method": "GET", "path": "/x", "reason": "ok"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    };
    append(&file, "first");
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail printed the new record");
    assert!(got.contains("req=first"), "{got}");
    // Rotate as the writer does: rename away, then a new active file.
    std::fs::rename(&file, dir.path().join("audit.000000000001.jsonl")).unwrap();
    append(&file, "second");
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail followed the rotation");
    assert!(got.contains("req=second"), "{got}");
    child.kill().unwrap();
    let _ = child.wait();
}
