//! Signed checkpoints: written by the writer, checked by `audit verify --public-key`, and what a
//! rewrite, a forged key and a cut tail look like.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::*;
use crate::audit::chain::{BreakKind, ChainHead, VerifyError};
use crate::audit::{
    Auditor, CheckpointSettings, FileSettings, FsyncPolicy, OnFull, OnSinkFailure, Settings,
};

fn settings(dir: &Path, every_records: u64, every: Duration, max_bytes: u64) -> Settings {
    Settings {
        file: Some(FileSettings {
            path: dir.join("audit.jsonl"),
            max_bytes,
            max_age: Duration::from_secs(3600),
            fsync: FsyncPolicy::Batch,
        }),
        stdout: false,
        redis: None,
        queue_capacity: 64,
        on_full: OnFull::Block,
        on_sink_failure: OnSinkFailure::FailClosed,
        batch_max: 16,
        checkpoint: Some(CheckpointSettings {
            key_file: dir.join("keys/audit.key"),
            generate: true,
            every_records,
            every,
        }),
    }
}

fn record(i: usize) -> crate::audit::AuditRecord {
    let mut r = crate::audit::tests::record(i);
    r.path = format!("/agent/{i}");
    r
}

fn metrics() -> crate::telemetry::audit::AuditMetrics {
    crate::telemetry::audit::AuditMetrics::new(&prometheus::Registry::new()).unwrap()
}

/// Writes `n` records through a real writer with checkpoints every 50 records and a flush at
/// the end; returns the active file and the public key file.
async fn signed_trail(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let s = settings(dir, 50, Duration::from_secs(3600), 1 << 30);
    let auditor = Auditor::start(&s, metrics()).unwrap();
    for i in 0..n {
        auditor.submit(record(i)).await;
    }
    auditor.flush().await;
    (dir.join("audit.jsonl"), dir.join("keys/audit.key.pub"))
}

fn public(path: &Path) -> VerifyingKey {
    parse_public_key(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn map(line: &str) -> Map<String, Value> {
    match serde_json::from_str(line).unwrap() {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Recomputes every hash of `lines` from the first `prev_hash` on: what someone who can write
/// the file but does not hold the key can do.
fn rechain(lines: &[String]) -> Vec<String> {
    let first = map(&lines[0]);
    let mut head = ChainHead {
        seq: first["seq"].as_u64().unwrap() - 1,
        hash: first["prev_hash"].as_str().unwrap().to_string(),
    };
    lines
        .iter()
        .map(|l| {
            let mut m = map(l);
            for k in ["seq", "prev_hash", "hash"] {
                m.remove(k);
            }
            head.seal(m)
        })
        .collect()
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn broken(result: Result<SignedReport, VerifyError>) -> (usize, String) {
    match result {
        Err(VerifyError::Broken(b)) => match &b.kind {
            BreakKind::Checkpoint(why) => (b.line, why.clone()),
            other => panic!("expected a checkpoint break, got {other:?} ({b})"),
        },
        other => panic!("expected a break, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_signed_trail_verifies_to_its_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = signed_trail(dir.path(), 120).await;
    let report = verify(&[&file], &public(&key)).unwrap();
    // A `count` checkpoint once 50 records are uncovered (at the end of that batch), another
    // if 50 more arrive before the flush, and the flush one.
    assert!((2..=3).contains(&report.checkpoints), "{report:?}");
    assert_eq!(report.chain.records, 120 + report.checkpoints);
    assert!(report.fully_signed());
    // The last is the flush's, unless the writer's last batch brought a `count` checkpoint that
    // already covered everything (batches follow timing; `a_stopped_proxy_leaves_a_fully_signed_trail`
    // checks the flush alone).
    let last = &report.last.as_ref().unwrap().reason;
    assert!(matches!(last.as_str(), "flush" | "count"), "{last}");
    let text = report.render(1);
    let signed = format!(
        "signed: {} checkpoint(s) valid under key",
        report.checkpoints
    );
    assert!(text.contains(&signed), "{text}");
    assert!(text.contains("ok: every record is covered"), "{text}");
    // The plain chain check still passes and still counts every line.
    assert_eq!(
        chain::verify(&[&file]).unwrap().records,
        report.chain.records
    );
    // The private key file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/audit.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_full_rewrite_passes_the_chain_but_not_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = signed_trail(dir.path(), 120).await;
    let key = public(&key);
    let original = lines(&file);

    // Forge record 10's content and recompute every hash: the bare chain cannot tell.
    let mut forged = original.clone();
    forged[9] = forged[9].replace("\"status\":200", "\"status\":403");
    let forged = rechain(&forged);
    write(&file, &forged);
    assert_eq!(
        chain::verify(&[&file]).unwrap().records,
        original.len() as u64
    );
    // The first checkpoint after the forged record no longer matches the chain it sits in.
    let first_checkpoint = 1 + forged.iter().position(|l| is_checkpoint(&map(l))).unwrap();
    let (line, why) = broken(verify(&[&file], &key));
    assert_eq!(line, first_checkpoint);
    assert!(
        why.contains("the records it vouched for were rewritten"),
        "{why}"
    );

    // Adjusting the checkpoint's `covers_*` to the new chain breaks its signature instead.
    let mut adjusted = forged.clone();
    let at = first_checkpoint - 1;
    let before = map(&adjusted[at - 1]);
    adjusted[at] = adjusted[at].replace(
        map(&adjusted[at])["checkpoint"]["covers_hash"]
            .as_str()
            .unwrap(),
        before["hash"].as_str().unwrap(),
    );
    let adjusted = rechain(&adjusted);
    write(&file, &adjusted);
    let (line, why) = broken(verify(&[&file], &key));
    assert_eq!(line, first_checkpoint);
    assert!(why.contains("signature does not verify"), "{why}");

    // Dropping every checkpoint leaves nothing signed.
    let bare: Vec<String> = original
        .iter()
        .filter(|l| !is_checkpoint(&map(l)))
        .cloned()
        .collect();
    write(&file, &rechain(&bare));
    assert!(chain::verify(&[&file]).is_ok());
    match verify(&[&file], &key) {
        Err(e @ VerifyError::Unsigned { records: 120, .. }) => {
            assert!(e.to_string().contains("no signed checkpoint"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    // Re-signing with another key is named as such.
    let other = CheckpointKey::generate();
    let mut head = ChainHead::default();
    let mut resigned: Vec<String> = bare
        .iter()
        .map(|l| {
            let mut m = map(l);
            for k in ["seq", "prev_hash", "hash"] {
                m.remove(k);
            }
            head.seal(m)
        })
        .collect();
    resigned.push(other.seal(&mut head, Reason::Flush, "2026-01-01T00:00:00.000Z"));
    write(&file, &resigned);
    let (_, why) = broken(verify(&[&file], &key));
    assert!(why.contains("not by the given public key"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tail_is_reported_as_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key_file) = signed_trail(dir.path(), 120).await;
    let mut kept = lines(&file);
    kept.truncate(kept.len() - 5);
    // Where checkpoints fall depends on how records were batched: when the cut ends on one,
    // drop it too, so some records always follow the last checkpoint kept.
    if is_checkpoint(&map(kept.last().unwrap())) {
        kept.pop();
    }
    write(&file, &kept);
    // The hash chain alone sees nothing wrong with a shorter file.
    assert!(chain::verify(&[&file]).is_ok());
    let report = verify(&[&file], &public(&key_file)).unwrap();
    assert!(!report.fully_signed());
    let last_checkpoint = 1 + kept.iter().rposition(|l| is_checkpoint(&map(l))).unwrap();
    let tail = kept.len() - last_checkpoint;
    assert!(tail > 0);
    assert_eq!(report.unsigned_tail, tail as u64);
    assert_eq!(report.last.as_ref().unwrap().seq, last_checkpoint as u64);
    let text = report.render(1);
    let expected = format!(
        "UNSIGNED TAIL: {tail} record(s) after the last checkpoint (seq {}-{}, from {}:{})",
        last_checkpoint + 1,
        kept.len(),
        file.display(),
        last_checkpoint + 1
    );
    assert!(text.contains(&expected), "{text}\nexpected: {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rotated_file_ends_with_a_checkpoint_and_the_set_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1000, Duration::from_secs(3600), 4000);
    let auditor = Auditor::start(&s, metrics()).unwrap();
    for i in 0..60 {
        auditor.submit(record(i)).await;
    }
    auditor.flush().await;
    let files = crate::audit::file::chain_files(&dir.path().join("audit.jsonl")).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        // The active file may be empty right after a rotation.
        if let Some(last) = lines(f).pop() {
            assert!(is_checkpoint(&map(&last)), "{} ends unsigned", f.display());
        }
    }
    let report = verify(&files, &public(&dir.path().join("keys/audit.key.pub"))).unwrap();
    assert!(report.fully_signed());
    let non_empty = files.iter().filter(|f| !lines(f).is_empty()).count();
    assert!(report.checkpoints as usize >= non_empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_trail_is_signed_after_the_interval_and_restarts_keep_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1000, Duration::from_millis(100), 1 << 30);
    let auditor = Auditor::start(&s, metrics()).unwrap();
    auditor.submit(record(1)).await;
    let file = dir.path().join("audit.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&file).map_or(0, |t| t.lines().count()) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no interval checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = map(&lines(&file)[1]);
    assert_eq!(last["checkpoint"]["reason"], "interval");
    drop(auditor);

    // A second start loads the same key (no new one generated) and continues the chain.
    let again = Auditor::start(&s, metrics()).unwrap();
    again.submit(record(2)).await;
    again.flush().await;
    let report = verify(&[&file], &public(&dir.path().join("keys/audit.key.pub"))).unwrap();
    assert!(report.fully_signed());
    assert_eq!(report.chain.records, 4);
}

#[test]
fn keys_round_trip_and_validation_names_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let key = CheckpointKey::generate_to(&path).unwrap();
    assert!(
        CheckpointKey::generate_to(&path).is_err(),
        "never overwrites"
    );
    let loaded = CheckpointKey::load_or_generate(&path, false).unwrap();
    assert_eq!(loaded.key_id(), key.key_id());
    let public = std::fs::read_to_string(public_key_path(&path)).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(key_id(&parse_public_key(&public).unwrap()), key.key_id());
    assert!(parse_public_key("nope").is_err());

    let spec: crate::audit::AuditSpec = yaml_serde::from_str(&format!(
        "checkpoint: {{key_file: '{}', every_records: 0, every: 0s}}",
        dir.path().join("missing.pem").display()
    ))
    .unwrap();
    let mut errors = Vec::new();
    crate::audit::validate(&spec, &mut crate::config::Secrets::required(), &mut errors);
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "audit.checkpoint.key_file",
            "audit.checkpoint.every_records",
            "audit.checkpoint.every"
        ]
    );
    assert!(errors[0].message.contains("palisade audit keygen"));
    assert!(
        !dir.path().join("missing.pem").exists(),
        "validation creates nothing"
    );
}
