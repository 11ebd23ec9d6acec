//! Unit tests of the hash chain, the file sink's rotation and the writer's delivery.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::chain::{self, BreakKind, ChainHead, VerifyError, GENESIS};
use super::file::{chain_files, rotated_files, FileSink};
use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn write_chain(path: &Path, n: u64) -> Vec<String> {
    let mut head = ChainHead::default();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            head.seal(obj(
                json!({"request_id": format!("r{i}"), "status": 200, "b": [1, {"z": 1, "a": 2}]}),
            ))
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    lines
}

fn broken_at(path: &Path) -> (usize, BreakKind) {
    match chain::verify(&[path]) {
        Err(VerifyError::Broken(b)) => (b.line, b.kind),
        other => panic!("expected a break, got {other:?}"),
    }
}

#[test]
fn canonical_json_sorts_keys_at_every_depth() {
    let v = json!({"b": 1, "a": {"d": [3, {"y": 1, "x": 2}], "c": "é\"q"}});
    assert_eq!(
        chain::canonical(&v),
        r#"{"a":{"c":"é\"q","d":[3,{"x":2,"y":1}]},"b":1}"#
    );
}

#[test]
fn an_intact_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let lines = write_chain(&path, 5);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["prev_hash"], GENESIS);
    assert_eq!(first["seq"], 1);
    let v = chain::verify(&[&path]).unwrap();
    assert_eq!(v.records, 5);
    assert_eq!(v.head.seq, 5);
}

#[test]
fn verify_names_an_edited_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut lines = write_chain(&path, 5);
    lines[2] = lines[2].replace("\"status\":200", "\"status\":201");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert_eq!(broken_at(&path), (3, BreakKind::Edited));
}

#[test]
fn verify_names_a_deleted_inserted_or_reordered_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let lines = write_chain(&path, 6);

    let mut deleted = lines.clone();
    deleted.remove(3);
    std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
    let (line, kind) = broken_at(&path);
    assert_eq!(line, 4);
    assert!(matches!(
        kind,
        BreakKind::OutOfSequence {
            expected_seq: 4,
            found_seq: 5
        }
    ));

    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    std::fs::write(&path, swapped.join("\n") + "\n").unwrap();
    assert_eq!(broken_at(&path).0, 2);

    let mut inserted = lines.clone();
    inserted.insert(2, lines[4].clone());
    std::fs::write(&path, inserted.join("\n") + "\n").unwrap();
    assert_eq!(broken_at(&path).0, 3);

    // A line forged with a correct own hash still does not link.
    let mut head = ChainHead {
        seq: 2,
        hash: "f".repeat(64),
    };
    let mut forged = lines.clone();
    forged[2] = head.seal(obj(json!({"request_id": "forged"})));
    std::fs::write(&path, forged.join("\n") + "\n").unwrap();
    assert_eq!(broken_at(&path).0, 3);

    let mut garbage = lines;
    garbage[4] = "not json".into();
    std::fs::write(&path, garbage.join("\n") + "\n").unwrap();
    assert!(matches!(broken_at(&path), (5, BreakKind::Malformed(_))));
}

#[test]
fn rotation_keeps_one_chain_across_files_and_restarts_continue_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/audit.jsonl");
    let (mut sink, mut head) = FileSink::open(&path, 400, Duration::from_secs(3600)).unwrap();
    assert_eq!(head, ChainHead::default());
    for i in 0..20 {
        let line = head.seal(obj(json!({"i": i, "pad": "x".repeat(50)}))) + "\n";
        sink.write(line.as_bytes(), head.seq).unwrap();
    }
    drop(sink);
    let rotated = rotated_files(&path).unwrap();
    assert!(rotated.len() >= 3, "{rotated:?}");
    // A restart continues the chain of whatever is newest.
    let (mut sink, mut reopened) = FileSink::open(&path, 400, Duration::from_secs(3600)).unwrap();
    assert_eq!(reopened, head);
    let line = reopened.seal(obj(json!({"i": 20}))) + "\n";
    sink.write(line.as_bytes(), reopened.seq).unwrap();
    let files = chain_files(&path).unwrap();
    let v = chain::verify(&files).unwrap();
    assert_eq!(v.records, 21);

    // Dropping a whole middle file is caught at the next file's first line.
    let mut gap = files.clone();
    gap.remove(1);
    match chain::verify(&gap) {
        Err(VerifyError::Broken(b)) => {
            assert_eq!(b.file, files[2]);
            assert_eq!(b.line, 1);
        }
        other => panic!("{other:?}"),
    }
}

fn settings(dir: &Path, on_full: OnFull) -> Settings {
    Settings {
        file: Some(FileSettings {
            path: dir.join("audit.jsonl"),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(3600),
            fsync: FsyncPolicy::Batch,
        }),
        stdout: false,
        redis: None,
        queue_capacity: 4,
        on_full,
        on_sink_failure: OnSinkFailure::FailClosed,
        batch_max: 3,
        checkpoint: None,
    }
}

pub(super) fn record(i: usize) -> AuditRecord {
    AuditRecord {
        seq: 0,
        approval: None,
        prev_hash: String::new(),
        hash: None,
        timestamp: crate::text::now_rfc3339(),
        request_id: format!("req-{i}"),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        principal: None,
        client_ip: Some("127.0.0.1".into()),
        config_hash: "0123456789abcdef".into(),
        method: "GET".into(),
        path: "/x".into(),
        route: Some("r".into()),
        action: None,
        resource: None,
        decision: None,
        rate_limit: "passed",
        guardrails: Vec::new(),
        status: 200,
        upstream_status: Some(200),
        bytes_in: 0,
        bytes_out: 2,
        duration_ms: 0.5,
        stream: None,
        tool_calls: Vec::new(),
        tool_integrity: Vec::new(),
        error_code: None,
        reason: "ok",
    }
}

fn metrics() -> crate::telemetry::audit::AuditMetrics {
    crate::telemetry::audit::AuditMetrics::new(&prometheus::Registry::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_delivers_every_record_through_a_small_queue_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), OnFull::Block);
    let m = metrics();
    let auditor = Auditor::start(&s, m.clone()).unwrap();
    for i in 0..500 {
        auditor.submit(record(i)).await;
    }
    auditor.flush().await;
    let path = dir.path().join("audit.jsonl");
    let v = chain::verify(&[&path]).unwrap();
    assert_eq!(v.records, 500);
    assert_eq!(m.audit_records.with_label_values(&["file"]).get(), 500);
    assert_eq!(m.audit_dropped.get(), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        (0..500).map(|i| format!("req-{i}")).collect::<Vec<_>>()
    );
    assert!(!auditor.refuses());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), OnFull::Drop);
    let m = metrics();
    let auditor = Auditor::start(&s, m.clone()).unwrap();
    for i in 0..2000 {
        auditor.submit(record(i)).await;
    }
    auditor.flush().await;
    let written = chain::verify(&[dir.path().join("audit.jsonl")])
        .unwrap()
        .records;
    assert_eq!(written + m.audit_dropped.get(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_closes_the_gate_under_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), OnFull::Block);
    // /dev/full accepts the open and fails every write with ENOSPC.
    s.file.as_mut().unwrap().path = "/dev/full".into();
    if !Path::new("/dev/full").exists() {
        panic!("this test needs /dev/full (Linux)");
    }
    let m = metrics();
    let auditor = Auditor::start(&s, m.clone()).unwrap();
    assert!(!auditor.refuses());
    auditor.submit(record(1)).await;
    auditor.flush().await;
    assert!(auditor.refuses());
    assert!(m.audit_sink_errors.with_label_values(&["file"]).get() >= 1);

    s.on_sink_failure = OnSinkFailure::FailOpen;
    let open = Auditor::start(&s, metrics()).unwrap();
    open.submit(record(1)).await;
    open.flush().await;
    assert!(!open.refuses());
}

#[test]
fn tmp_paths_resolve_under_the_os_temp_dir() {
    assert_eq!(
        resolve_path("{tmp}/palisade-dev/audit.jsonl"),
        std::env::temp_dir().join("palisade-dev/audit.jsonl")
    );
    assert_eq!(resolve_path("/var/x.jsonl"), Path::new("/var/x.jsonl"));
}

#[test]
fn validation_reports_every_bad_field() {
    let spec: AuditSpec = yaml_serde::from_str(
        "file: {path: '', max_bytes: 0, fsync: sometimes}\nqueue_capacity: 0\nredis: {url: 'nope'}",
    )
    .unwrap();
    let mut errors = Vec::new();
    validate(&spec, &mut crate::config::Secrets::required(), &mut errors);
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "audit.queue_capacity",
            "audit.file.path",
            "audit.file.max_bytes",
            "audit.file.fsync",
            "audit.redis.url"
        ]
    );
}

/// A record with every part filled, some text in it made to look like a JSON key.
fn full_record(i: usize) -> AuditRecord {
    let mut r = record(i);
    r.principal = Some(record::AuditPrincipal {
        auth_method: "jwt",
        id: "User::\"iss|alice\"".into(),
        roles: vec!["admin".into()],
        tenant: Some("acme".into()),
        kind: "User",
    });
    r.decision = Some(record::AuditDecision {
        allowed: true,
        mode: "enforce",
        policies: vec!["p1".into()],
        policy_set: "main".into(),
        policy_set_hash: "ab".repeat(32),
    });
    // Text before `method` that looks like its key (escaped in JSON, so it is not).
    r.client_ip = Some(",\"method\":\"x\\".into());
    r.guardrails = vec![record::AuditFinding {
        action: "redact",
        count: 2,
        location: "request.messages[0].content,\"method\":".into(),
        rule: "pii.email".into(),
    }];
    r.stream = Some(record::StreamFacts {
        ended_by_drain: false,
        events: 12,
    });
    r.tool_calls = vec![record::ToolCall {
        action: "Action::\"call_tool\"".into(),
        allowed: false,
        id: Some("c1".into()),
        tool: "Tool::\"rm\"".into(),
    }];
    r
}

#[test]
fn a_sealed_record_is_canonical_json_and_verifies() {
    let mut head = ChainHead::default();
    let line = full_record(1).seal(&mut head);
    // The struct's own serialization is already canonical (sorted keys at every depth).
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(chain::canonical(&value), line);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let second = record(2).seal(&mut head);
    std::fs::write(&path, format!("{line}\n{second}\n")).unwrap();
    assert_eq!(chain::verify(&[&path]).unwrap().records, 2);
    // Guardrail findings carry ids and places, never content.
    assert!(!line.contains("@"));
}

#[test]
fn sealed_lines_are_pinned_byte_for_byte() {
    // The trail's bytes and hashes must not change with how the writer builds them.
    let mut head = ChainHead::default();
    let mut lines = Vec::new();
    for i in 1..=2 {
        let mut r = full_record(i);
        r.timestamp = "2026-12-08T10:00:00.000Z".into();
        lines.push(r.seal(&mut head));
    }
    // Pinned with the writer of 2026-12-07 (one `String` per line): the SHA-256 of both lines.
    assert_eq!(
        chain::hash_text("", &lines.join("\n")),
        "bd3eb0170db1d4d0f7ca89763b676010818f4622633ab468aac0814f5b7f5568"
    );
    assert_eq!(
        head.hash,
        "20cab44e3fc2fefd383d54eac783383c6a53feaf6805dfa26fad322572f5edf3"
    );
}

#[test]
fn a_batch_holds_the_lines_seal_returns() {
    let (mut sealed, mut batched) = (ChainHead::default(), ChainHead::default());
    let mut lines = Vec::new();
    let mut batch = batch::Batch::default();
    for i in 1..=3 {
        let r = full_record(i);
        lines.push(r.clone().seal(&mut sealed));
        batch.seal(&mut r.clone(), &mut batched);
    }
    lines.push("{\"kind\":\"checkpoint\"}".into());
    batch.push_line(&lines[3]);
    assert_eq!(batched, sealed);
    assert_eq!(batch.len(), 4);
    assert_eq!(batch.bytes(), (lines.join("\n") + "\n").as_bytes());
    assert_eq!(batch.lines().collect::<Vec<_>>(), lines);

    // The file's pending lines: earlier ones first, cut to a bound.
    let mut pending = batch.clone();
    pending.extend(&batch);
    pending.truncate(5);
    let kept: Vec<&str> = pending.lines().collect();
    assert_eq!(kept, [&lines[..], &lines[..1]].concat());
    assert_eq!(pending.bytes(), (kept.join("\n") + "\n").as_bytes());
    pending.clear();
    assert!(pending.is_empty() && pending.bytes().is_empty());
}

#[test]
fn the_writers_json_is_serde_jsons() {
    let mut r = full_record(1);
    r.hash = Some("ab".repeat(32));
    r.approval = Some(record::AuditApproval {
        approver: Some("User::\"bob\"".into()),
        id: "ap-1".into(),
        outcome: "approved",
        reason: None,
        requester: "User::\"iss|alice\"".into(),
    });
    r.tool_integrity = vec![record::IntegrityFinding {
        action: "blocked",
        kind: "poisoned",
        rule: Some("injection.ignore_previous".into()),
        tool: "search".into(),
    }];
    r.path = "/a\u{1}\tb\u{7f}é\"\\/".into();
    r.duration_ms = 1e-7;
    let mut out = Vec::new();
    let method_at = line::write(&r, &mut out);
    assert_eq!(out, serde_json::to_vec(&r).unwrap());
    assert!(out[method_at..].starts_with(b",\"method\":"));
}

proptest! {
    #[test]
    fn any_text_is_escaped_as_serde_json_escapes_it(text in any::<String>(), ms in any::<f64>()) {
        let mut r = record(1);
        r.path = text.clone();
        r.route = Some(text);
        r.duration_ms = ms;
        let mut out = Vec::new();
        line::write(&r, &mut out);
        prop_assert_eq!(out, serde_json::to_vec(&r).unwrap());
    }
}

#[test]
fn an_unfinished_last_line_is_dropped_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_chain(&path, 3);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"request_id\":\"torn\",\"sta");
    std::fs::write(&path, &text).unwrap();
    let (mut sink, mut head) = FileSink::open(&path, 1 << 20, Duration::from_secs(3600)).unwrap();
    assert_eq!(head.seq, 3);
    let line = head.seal(obj(json!({"request_id": "after"}))) + "\n";
    sink.write(line.as_bytes(), head.seq).unwrap();
    let v = chain::verify(&[&path]).unwrap();
    assert_eq!(v.records, 4);
}
