//! The audit trail end to end: one record per request whatever its outcome, a hash chain that
//! verifies and names the line someone edited, deleted or moved, and `fail_closed` refusing
//! service while the trail cannot be written.

mod load;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_e2e::upstream::{self, ScriptedUpstream, Upstream};
use palisade_e2e::{closed_port, error_code, eventually, Proxy, TestProxy};
use palisade_proxy::audit::chain::{self, BreakKind, VerifyError};
use serde_json::{json, Value};

/// The outcomes the load mixes, by `i % 10`: (path, method, body, expected status).
const MIX: [(&str, &str, usize, u16); 10] = [
    ("/ok/a", "GET", 0, 200),
    ("/ok/b", "GET", 0, 200),
    ("/ok/c", "POST", 8, 200),
    ("/ok/d", "GET", 0, 200),
    ("/ok/e", "GET", 0, 200),
    ("/private", "GET", 0, 401),
    ("/forbid", "GET", 0, 403),
    ("/limited", "GET", 0, 429),
    ("/ok/big", "POST", 64, 413),
    ("/down", "GET", 0, 502),
];

/// A policy directory: everything allowed except `Route::"forbid"`.
fn policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::copy(
        root.join("palisade.cedarschema"),
        dir.path().join("palisade.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.cedar"),
        "@id(\"allow-all-but-forbid\")\npermit(principal, action == Action::\"http_request\", resource)\n  unless { resource == Route::\"forbid\" };\n",
    )
    .unwrap();
    dir
}

fn audited_proxy(echo: std::net::SocketAddr, policy_dir: &Path, audit_file: &Path) -> Proxy {
    TestProxy::new()
        .upstream("echo", echo)
        .upstream_with("down", closed_port(), "connect_timeout: 1s")
        .route("ok", "/ok", "echo", "max_body_bytes: 16")
        .route("private", "/private", "echo", "auth: required")
        .route("forbid", "/forbid", "echo", "")
        .route(
            "limited",
            "/limited",
            "echo",
            "rate_limits: {limits: [{name: tight, scope: route, requests: 1, per: 1h}]}",
        )
        .route("down", "/down", "down", "")
        // All 32 clients come from 127.0.0.1 and a fifth of the requests end their connection
        // (413, 502). When the audit queue is full (`on_full: block`), a closed connection's
        // task waits to queue its record and keeps its per-address slot meanwhile, while its
        // client has already reconnected: a slow writer (a debug build on a busy CI disk) can then
        // fill the default cap of 512 and the proxy refuses new connections (with
        // `queue_capacity: 4` and a cap of 40 this test saw about 1,700 such refusals). This test
        // is about records, not that cap (connections.rs tests it): no cap.
        .server_yaml("max_connections_per_ip: 0")
        .top_yaml(&format!(
            "authorization:\n  policy_sets:\n    - {{name: main, path: \"{}\", mode: enforce}}\n\
             audit:\n  file: {{path: \"{}\", fsync: batch}}\n  queue_capacity: 4096\n",
            policy_dir.display(),
            audit_file.display()
        ))
        .start()
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn break_of(files: &[PathBuf]) -> (usize, BreakKind) {
    match chain::verify(files) {
        Err(VerifyError::Broken(b)) => (b.line, b.kind),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_mixed_requests_leave_fifty_thousand_verifiable_records() {
    const TOTAL: usize = 50_000;
    const WORKERS: usize = 32;
    let upstream = load::fixed_upstream().await;
    let policy_dir = policies();
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let proxy = audited_proxy(upstream, policy_dir.path(), &audit_file);
    let addr = proxy.addr();

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut client = load::Client::new(addr);
            let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TOTAL {
                    return seen;
                }
                let (path, method, body, _) = MIX[i % MIX.len()];
                let status = client
                    .send(method, path, &format!("load-{i}"), body)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("request load-{i} ({method} {path}) unanswered: {e}")
                    });
                *seen.entry(status).or_default() += 1;
            }
        }));
    }
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for w in workers {
        for (status, n) in w.await.unwrap() {
            *by_status.entry(status).or_default() += n;
        }
    }
    let load_time = started.elapsed();
    eprintln!("{TOTAL} requests in {load_time:?}: {by_status:?}");
    assert_eq!(by_status.values().sum::<usize>(), TOTAL);
    for (_, _, _, status) in MIX {
        assert!(
            by_status.contains_key(&status),
            "no {status} in {by_status:?}"
        );
    }
    let file_records = proxy
        .running
        .metrics
        .audit
        .audit_records
        .with_label_values(&["file"]);
    proxy.stop().await;
    assert_eq!(file_records.get(), TOTAL as u64);

    // Exactly one record per response, statuses as the clients saw them, and an intact chain.
    let verified = chain::verify(&[&audit_file]).expect("chain intact");
    assert_eq!(verified.records, TOTAL as u64);
    let records = read_records(&audit_file);
    let mut recorded: BTreeMap<u16, usize> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for r in &records {
        *recorded
            .entry(r["status"].as_u64().unwrap() as u16)
            .or_default() += 1;
        assert!(
            ids.insert(r["request_id"].as_str().unwrap().to_string()),
            "{r}"
        );
    }
    assert_eq!(recorded, by_status);

    // Each outcome says why, in its own fields.
    let of = |i: usize| {
        records
            .iter()
            .find(|r| r["request_id"] == format!("load-{i}"))
            .unwrap_or_else(|| panic!("no record for load-{i}"))
            .clone()
    };
    let ok = of(10);
    assert_eq!(ok["route"], "ok");
    assert_eq!(ok["upstream_status"], 200);
    assert_eq!(ok["decision"]["allowed"], true);
    assert_eq!(ok["decision"]["policies"][0], "allow-all-but-forbid");
    assert_eq!(ok["principal"]["type"], "Anonymous");
    assert_eq!(ok["principal"]["auth_method"], "anonymous");
    assert_eq!(ok["rate_limit"], "passed");
    assert!(ok["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(ok["trace_id"].as_str().unwrap().len(), 32);
    let post = of(12);
    assert_eq!(post["bytes_in"], 8);
    assert_eq!(of(15)["error_code"], "UNAUTHENTICATED");
    assert_eq!(of(15)["principal"], Value::Null);
    let denied = of(16);
    assert_eq!(denied["error_code"], "FORBIDDEN");
    assert_eq!(denied["decision"]["allowed"], false);
    assert_eq!(denied["decision"]["mode"], "enforce");
    assert_eq!(denied["resource"], "Route::\"forbid\"");
    assert_eq!(denied["rate_limit"], "not_reached");
    assert_eq!(
        denied["decision"]["policy_set_hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let limited = records
        .iter()
        .find(|r| r["route"] == "limited" && r["status"] == 429)
        .unwrap();
    assert_eq!(limited["rate_limit"], "limited");
    assert_eq!(limited["error_code"], "RATE_LIMITED");
    assert_eq!(of(18)["error_code"], "PAYLOAD_TOO_LARGE");
    let down = of(19);
    assert_eq!(down["error_code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(down["upstream_status"], Value::Null);

    // Tampering is caught at the line it happened.
    let lines: Vec<String> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let tampered = dir.path().join("tampered.jsonl");
    let write = |lines: &[String]| std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let files = [tampered.clone()];

    let mut edited = lines.clone();
    edited[99] = edited[99].replacen("\"status\":", "\"status\":1", 1);
    write(&edited);
    assert_eq!(break_of(&files), (100, BreakKind::Edited));

    let mut deleted = lines.clone();
    deleted.remove(199);
    write(&deleted);
    assert!(matches!(
        break_of(&files),
        (
            200,
            BreakKind::OutOfSequence {
                expected_seq: 200,
                found_seq: 201
            }
        )
    ));

    let mut reordered = lines.clone();
    reordered.swap(299, 300);
    write(&reordered);
    assert_eq!(break_of(&files).0, 300);

    let mut inserted = lines;
    inserted.insert(400, inserted[10].clone());
    write(&inserted);
    assert_eq!(break_of(&files).0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_service_while_the_trail_cannot_be_written() {
    assert!(
        Path::new("/dev/full").exists(),
        "this test needs /dev/full (Linux) to make every audit write fail"
    );
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/", "echo", "")
        .top_yaml("audit:\n  file: {path: /dev/full}\n  on_sink_failure: fail_closed\n")
        .start();
    let client = palisade_e2e::client();
    // The first request is served (nothing has failed yet); its record cannot be written.
    assert_eq!(
        client.get(proxy.url("/x")).send().await.unwrap().status(),
        200
    );
    // Polls (like `eventually`, but each check is a request) until the writer reported failure.
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let resp = client.get(proxy.url("/x")).send().await.unwrap();
        if resp.status() == 503 {
            break resp.bytes().await.unwrap();
        }
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(error_code(&refused), "AUDIT_UNAVAILABLE");
    let audit = &proxy.running.metrics.audit;
    assert!(audit.audit_sink_errors.with_label_values(&["file"]).get() >= 1);
    assert!(audit.audit_refused.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_serves_on_and_counts_the_failures() {
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/", "echo", "")
        .top_yaml("audit:\n  file: {path: /dev/full}\n  on_sink_failure: fail_open\n")
        .start();
    let client = palisade_e2e::client();
    for _ in 0..20 {
        assert_eq!(
            client.get(proxy.url("/x")).send().await.unwrap().status(),
            200
        );
    }
    let errors = proxy
        .running
        .metrics
        .audit
        .audit_sink_errors
        .with_label_values(&["file"]);
    eventually(Duration::from_secs(5), || (errors.get() >= 1).then_some(()))
        .await
        .expect("sink errors counted");
}

/// With a file sink the file is the trail: a Redis copy that cannot be shipped is counted, but
/// `fail_closed` keeps serving because every record is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_redis_copy_does_not_close_a_proxy_whose_file_is_written() {
    let echo = upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/", "echo", "")
        .top_yaml(&format!(
            "audit:\n  file: {{path: \"{}\"}}\n  redis: {{url: \"redis://{}\"}}\n  on_sink_failure: fail_closed\n",
            audit_file.display(),
            palisade_e2e::closed_port()
        ))
        .start();
    let client = palisade_e2e::client();
    let errors = proxy
        .running
        .metrics
        .audit
        .audit_sink_errors
        .with_label_values(&["redis"]);
    for _ in 0..20 {
        assert_eq!(
            client.get(proxy.url("/x")).send().await.unwrap().status(),
            200
        );
    }
    eventually(Duration::from_secs(10), || {
        (errors.get() >= 1).then_some(())
    })
    .await
    .expect("redis failures counted");
    assert_eq!(
        client.get(proxy.url("/x")).send().await.unwrap().status(),
        200,
        "the file trail is intact, so fail_closed must not refuse"
    );
    let written = eventually(Duration::from_secs(5), || {
        let n = std::fs::read_to_string(&audit_file).ok()?.lines().count();
        (n >= 21).then_some(n)
    })
    .await;
    assert!(written.is_some(), "records reach the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_shipped_to_a_redis_stream_as_written_to_the_file() {
    let redis = palisade_e2e::redis::RedisServer::start();
    let echo = upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .top_yaml(&format!(
            "audit:\n  file: {{path: \"{}\"}}\n  redis: {{url: \"{}\", stream: \"audit:test\", maxlen: 1000}}\n",
            audit_file.display(),
            redis.url()
        ))
        .start();
    let client = palisade_e2e::client();
    for i in 0..25 {
        let path = if i % 5 == 0 { "/missing" } else { "/api/x" };
        client.get(proxy.url(path)).send().await.unwrap();
    }
    let shipped = proxy
        .running
        .metrics
        .audit
        .audit_records
        .with_label_values(&["redis"]);
    proxy.stop().await;
    assert_eq!(shipped.get(), 25);
    let len = palisade_e2e::redis::redis_cli(redis.port, &["XLEN", "audit:test"]).unwrap();
    assert_eq!(len, "25");
    // Stream entries are the file's lines, chain fields included.
    let lines: Vec<String> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 25);
    let range =
        palisade_e2e::redis::redis_cli(redis.port, &["XRANGE", "audit:test", "-", "+"]).unwrap();
    for line in &lines {
        assert!(range.contains(line.as_str()), "{line} not in the stream");
    }
}

/// An AG-UI agent streaming (as one buffered body) a run that calls `search_docs` (id `c1`) and
/// `write_file` (`c2`).
async fn tool_calling_agent() -> Upstream {
    let call = |id: &str, tool: &str, args: &str| {
        [
            json!({"type": "TOOL_CALL_START", "toolCallId": id, "toolCallName": tool}),
            json!({"type": "TOOL_CALL_ARGS", "toolCallId": id, "delta": args}),
            json!({"type": "TOOL_CALL_END", "toolCallId": id}),
        ]
    };
    let mut events = vec![json!({"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"})];
    events.extend(call("c1", "search_docs", r#"{"query":"secret plans"}"#));
    events.extend(call("c2", "write_file", r#"{"path":"/etc/passwd"}"#));
    events.push(json!({"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}));
    ScriptedUpstream::new()
        .sse("/", events)
        .whole()
        .start()
        .await
}

/// The same run as [`tool_calling_agent`], written the way a JSON serializer may: each event
/// pretty-printed over several `data:` lines, names written with JSON escapes, CRLF framing.
async fn pretty_printing_agent() -> Upstream {
    let mut body = String::new();
    let event = |lines: &[&str]| -> String {
        lines
            .iter()
            .map(|l| format!("data: {l}\r\n"))
            .collect::<String>()
            + "\r\n"
    };
    body += &event(&[r#"{"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"}"#]);
    for (id, tool, args) in [
        ("c1", "search\\u005fdocs", r#"{\"query\":\"secret plans\"}"#),
        ("c2", "write\\u005ffile", r#"{\"path\":\"/etc/passwd\"}"#),
    ] {
        body += &event(&[
            "{",
            r#"  "type": "TOOL\u005fCALL\u005fSTART","#,
            &format!(r#"  "toolCallId": "{id}","#),
            &format!(r#"  "toolCallName": "{tool}""#),
            "}",
        ]);
        body += &event(&[&format!(
            r#"{{"type": "TOOL_CALL_ARGS", "toolCallId": "{id}", "delta": "{args}"}}"#
        )]);
        body += &event(&[&format!(
            r#"{{"type": "TOOL_CALL_END", "toolCallId": "{id}"}}"#
        )]);
    }
    body += &event(&[r#"{"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}"#]);
    ScriptedUpstream::new()
        .respond("/", 200, &[("content-type", "text/event-stream")], body)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_list_tool_calls_by_id_with_their_verdicts() {
    // One event per line, and the same run pretty-printed with escapes: authorization decides
    // each call, and the record lists each by id, whatever the event looked like on the wire.
    for (label, agent) in [
        ("one line per event", tool_calling_agent().await),
        ("pretty-printed, escaped", pretty_printing_agent().await),
    ] {
        let (streamed, record, line) = audited_run(&agent).await;
        assert!(
            !streamed.contains("write_file") && !streamed.contains("write\\u005ffile"),
            "{label}: the denied call is filtered: {streamed}"
        );
        assert!(streamed.contains("search_docs"), "{label}: {streamed}");
        let r = &record;
        assert_eq!(r["stream"]["events"], 8, "{label}");
        let calls = r["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2, "{label}: {calls:?}");
        assert_eq!(calls[0]["id"], "c1", "{label}");
        assert_eq!(calls[0]["tool"], "Tool::\"search_docs\"", "{label}");
        assert_eq!(calls[0]["allowed"], true, "{label}");
        assert_eq!(calls[1]["id"], "c2", "{label}");
        assert_eq!(calls[1]["tool"], "Tool::\"write_file\"", "{label}");
        assert_eq!(calls[1]["allowed"], false, "{label}");
        assert_eq!(calls[1]["action"], "Action::\"use_tool\"", "{label}");
        // Ids and names only: the arguments never reach the record.
        assert!(
            !line.contains("secret plans") && !line.contains("/etc/passwd"),
            "{label}: {line}"
        );
    }
}

/// One AG-UI run through a proxy that permits `search_docs` only, with an audit file: what the
/// client received, the record, and the record's line.
async fn audited_run(agent: &Upstream) -> (String, serde_json::Value, String) {
    let policies = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/palisade.cedarschema"),
        policies.path().join("palisade.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        policies.path().join("main.cedar"),
        "@id(\"agents\")\npermit(principal, action == Action::\"run_agent\", resource);\n\
         @id(\"search-only\")\npermit(principal, action == Action::\"use_tool\", resource == Tool::\"search_docs\");\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let proxy = TestProxy::new()
        .upstream("agent", agent.addr)
        .route("agent", "/agent", "agent", "protocol: agui")
        .top_yaml(&format!(
            "authorization:\n  policy_sets:\n    - {{name: main, path: \"{}\", mode: enforce}}\n\
             audit:\n  file: {{path: \"{}\"}}\n",
            policies.path().display(),
            audit_file.display()
        ))
        .start();
    let input = r#"{"threadId":"t1","runId":"r1","messages":[],"tools":[],"context":[],"state":{},"forwardedProps":{}}"#;
    let resp = palisade_e2e::client()
        .post(proxy.url("/agent"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(input)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let streamed = resp.text().await.unwrap();
    proxy.stop().await;
    let records = read_records(&audit_file);
    assert_eq!(records.len(), 1);
    let line = std::fs::read_to_string(&audit_file).unwrap();
    (streamed, records[0].clone(), line)
}
