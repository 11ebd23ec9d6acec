//! In-process idempotency keys: claim, repeat, expiry (injected clock), release, scoping; holders
//! and request fingerprints.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{fingerprint, scoped_key, Claim, Holder, IdempotencyStore, InProcess};

/// A clock the test moves by hand.
fn manual_clock() -> (Arc<Mutex<Instant>>, InProcess) {
    let now = Arc::new(Mutex::new(Instant::now()));
    let read = Arc::clone(&now);
    let keys = InProcess::with_clock(Arc::new(move || *read.lock().unwrap()));
    (now, keys)
}

const TTL: Duration = Duration::from_secs(10);

#[tokio::test]
async fn first_claim_is_new_and_a_repeat_sees_the_first_run() {
    let (_, keys) = manual_clock();
    assert_eq!(keys.claim("k", "run-1", TTL).await.unwrap(), Claim::New);
    for other in ["run-2", "run-3"] {
        assert_eq!(
            keys.claim("k", other, TTL).await.unwrap(),
            Claim::Existing {
                run_id: "run-1".into()
            }
        );
    }
    assert_eq!(keys.claim("other", "run-4", TTL).await.unwrap(), Claim::New);
}

#[tokio::test]
async fn a_key_is_free_again_once_its_ttl_has_passed() {
    let (now, keys) = manual_clock();
    assert_eq!(keys.claim("k", "run-1", TTL).await.unwrap(), Claim::New);
    *now.lock().unwrap() += TTL - Duration::from_millis(1);
    assert!(matches!(
        keys.claim("k", "run-2", TTL).await.unwrap(),
        Claim::Existing { .. }
    ));
    *now.lock().unwrap() += Duration::from_millis(1);
    assert_eq!(keys.claim("k", "run-2", TTL).await.unwrap(), Claim::New);
    assert_eq!(
        keys.claim("k", "run-3", TTL).await.unwrap(),
        Claim::Existing {
            run_id: "run-2".into()
        }
    );
}

#[tokio::test]
async fn expired_keys_are_swept() {
    let (now, keys) = manual_clock();
    for i in 0..200 {
        keys.claim(&format!("k{i}"), "r", TTL).await.unwrap();
    }
    *now.lock().unwrap() += TTL * 2;
    for i in 0..56 {
        keys.claim(&format!("fresh{i}"), "r", TTL).await.unwrap();
    }
    // The 256th claim swept the 200 expired keys before inserting.
    assert_eq!(keys.len(), 56);
}

#[tokio::test]
async fn release_frees_only_the_holders_key() {
    let (_, keys) = manual_clock();
    assert_eq!(keys.claim("k", "run-1", TTL).await.unwrap(), Claim::New);
    keys.release("k", "run-9").await.unwrap();
    assert!(matches!(
        keys.claim("k", "run-2", TTL).await.unwrap(),
        Claim::Existing { .. }
    ));
    keys.release("k", "run-1").await.unwrap();
    assert_eq!(keys.claim("k", "run-2", TTL).await.unwrap(), Claim::New);
}

#[tokio::test]
async fn concurrent_claims_have_exactly_one_winner() {
    let keys = Arc::new(InProcess::default());
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move { keys.claim("k", &format!("run-{i}"), TTL).await.unwrap() })
        })
        .collect();
    let mut new = 0;
    for task in tasks {
        if task.await.unwrap() == Claim::New {
            new += 1;
        }
    }
    assert_eq!(new, 1);
}

#[test]
fn scoped_keys_never_collide_across_principals() {
    assert_ne!(scoped_key(Some("alice"), "k"), scoped_key(Some("bob"), "k"));
    assert_ne!(scoped_key(None, "k"), scoped_key(Some("alice"), "k"));
    // A principal containing the separator cannot impersonate another principal's key.
    assert_ne!(scoped_key(Some("a|b"), "c"), scoped_key(Some("a"), "b|c"));
    assert_eq!(
        scoped_key(Some("alice"), "k"),
        scoped_key(Some("alice"), "k")
    );
}

#[test]
fn redis_url_and_cluster_are_exclusive_and_default_is_in_process() {
    use super::{open, IdempotencyConfig, IdempotencyError};
    let both = IdempotencyConfig {
        redis_url: Some("redis://127.0.0.1:1".into()),
        redis_cluster: vec!["redis://127.0.0.1:2".into()],
        ..IdempotencyConfig::default()
    };
    assert!(matches!(open(&both), Err(IdempotencyError::Config)));
    let d = IdempotencyConfig::default();
    assert_eq!(d.ttl, Duration::from_secs(86_400));
    assert_eq!(d.key_prefix, "palisade:idem:");
    assert!(open(&d).is_ok());
}

#[test]
fn holders_round_trip_and_bare_run_ids_decode_without_a_fingerprint() {
    let fp = "0123456789abcdef".repeat(4);
    for run_id in ["r-1", "a:b", "", "ünïcode run"] {
        let holder = Holder::new(run_id, &fp);
        assert_eq!(Holder::decode(&holder.encode()), holder);
    }
    // Values stored before fingerprints were kept: a bare run id, even one with a colon.
    for value in ["r-1", "abc:def", &format!("{}:r", &fp[..63])] {
        let holder = Holder::decode(value);
        assert_eq!(holder.run_id, value);
        assert_eq!(holder.fingerprint, None);
        assert!(holder.same_request(&fp), "an unknown fingerprint matches");
    }
    assert!(Holder::new("r", &fp).same_request(&fp));
    assert!(!Holder::new("r", &fp).same_request(&"f".repeat(64)));
}

#[test]
fn the_fingerprint_ignores_the_run_id_and_layout_but_nothing_else() {
    let parse =
        |body: &str| -> palisade_wire::agui::RunAgentInput { serde_json::from_str(body).unwrap() };
    let first = parse(
        r#"{"threadId":"t","runId":"r1","state":{},"tools":[],"context":[],
            "forwardedProps":{},"messages":[{"id":"m1","role":"user","content":"hi"}]}"#,
    );
    let retry = parse(
        r#"{ "messages": [ {"content": "hi", "role": "user", "id": "m1"} ],
             "forwardedProps": {}, "context": [], "tools": [], "state": {},
             "runId": "r2", "threadId": "t" }"#,
    );
    assert_eq!(fingerprint(&first), fingerprint(&retry));
    assert_eq!(fingerprint(&first).len(), 64);
    let changed = [
        r#"{"threadId":"t2","runId":"r1","messages":[{"id":"m1","role":"user","content":"hi"}]}"#,
        r#"{"threadId":"t","runId":"r1","messages":[{"id":"m1","role":"user","content":"hi!"}]}"#,
        r#"{"threadId":"t","runId":"r1","messages":[{"id":"m2","role":"user","content":"hi"}]}"#,
        r#"{"threadId":"t","runId":"r1","state":{"a":1},
            "messages":[{"id":"m1","role":"user","content":"hi"}]}"#,
        r#"{"threadId":"t","runId":"r1","forwardedProps":{"x":true},
            "messages":[{"id":"m1","role":"user","content":"hi"}]}"#,
    ];
    for body in changed {
        assert_ne!(fingerprint(&parse(body)), fingerprint(&first), "{body}");
    }
}
