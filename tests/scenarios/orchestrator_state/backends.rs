//! One conformance suite for the [`SessionStore`] trait, run on a SQLite file and on a real
//! PostgreSQL; idempotency keys in a real Redis.

use std::sync::Arc;
use std::time::Duration;

use palisade_e2e::postgres::PostgresServer;
use palisade_e2e::redis::{redis_cli, RedisCluster, RedisServer};
use palisade_orchestrator::idempotency::{Claim, IdempotencyStore, RedisIdempotency};
use palisade_orchestrator::store::{
    self, RunRecord, RunStatus, SessionStore, StoreConfig, ToolCallRecord,
};

/// Everything the runtime relies on, against any backend.
async fn conformance(store: Arc<dyn SessionStore>) {
    // Unknown ids are None (the HTTP layer's 404), not errors.
    assert!(store.run("missing").await.unwrap().is_none());
    assert!(store.thread("missing").await.unwrap().is_none());

    // A started run is visible at once, running, and creates its thread.
    let mut first = RunRecord::started("run-a", "thread-1", Some("alice".into()));
    store.start_run(&first).await.unwrap();
    let read = store.run("run-a").await.unwrap().unwrap();
    assert_eq!(read, first);
    assert_eq!(read.status, RunStatus::Running);
    let thread = store.thread("thread-1").await.unwrap().unwrap();
    assert_eq!(thread.runs.len(), 1);
    assert_eq!(thread.created_at, first.started_at);

    // Finishing records everything, round-tripping exactly (timestamps to the microsecond).
    first.tool_calls = vec![
        ToolCallRecord {
            id: "call-1".into(),
            name: "get_time".into(),
            arguments: "{}".into(),
            result: Some("2026-01-01T00:00:00Z".into()),
            error: None,
        },
        ToolCallRecord {
            id: "call-2".into(),
            name: "mock_weather".into(),
            arguments: r#"{"city":"Zürich"}"#.into(),
            result: None,
            error: Some("credential missing".into()),
        },
    ];
    first.events = vec![
        r#"{"type":"RUN_STARTED","threadId":"thread-1","runId":"run-a"}"#.into(),
        r#"{"type":"RUN_FINISHED","threadId":"thread-1","runId":"run-a"}"#.into(),
    ];
    first.finish_with_message("Il est midi — 🕛");
    store.finish_run(&first).await.unwrap();
    let read = store.run("run-a").await.unwrap().unwrap();
    assert_eq!(read, first);
    assert_eq!(read.status, RunStatus::Finished);
    assert!(read.finished_at.unwrap() >= read.started_at);

    // A second run in the same thread; a failed run keeps its error.
    let mut second = RunRecord::started("run-b", "thread-1", Some("alice".into()));
    store.start_run(&second).await.unwrap();
    second.error = Some("MAX_ITERATIONS: the model kept calling tools".into());
    second.end(RunStatus::Error);
    store.finish_run(&second).await.unwrap();
    assert_eq!(store.run("run-b").await.unwrap().unwrap(), second);

    let thread = store.thread("thread-1").await.unwrap().unwrap();
    let ids: Vec<_> = thread.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["run-a", "run-b"], "oldest first");
    assert_eq!(thread.runs[1].status, RunStatus::Error);
    assert_eq!(thread.created_at, first.started_at);
    assert_eq!(thread.updated_at, second.finished_at.unwrap());

    // finish_run without start_run (the start write was lost) still records the run and thread.
    let mut orphan = RunRecord::started("run-c", "thread-2", None);
    orphan.end(RunStatus::Cancelled);
    store.finish_run(&orphan).await.unwrap();
    assert_eq!(store.run("run-c").await.unwrap().unwrap(), orphan);
    assert_eq!(
        store.thread("thread-2").await.unwrap().unwrap().runs.len(),
        1
    );

    // Concurrent writers (many runs at once) all land.
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut run = RunRecord::started(&format!("par-{i}"), "thread-par", None);
                store.start_run(&run).await.unwrap();
                run.finish_with_message(&format!("answer {i}"));
                store.finish_run(&run).await.unwrap();
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap();
    }
    let thread = store.thread("thread-par").await.unwrap().unwrap();
    assert_eq!(thread.runs.len(), 20);
    assert!(thread.runs.iter().all(|r| r.status == RunStatus::Finished));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_store_conforms_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::sqlite(dir.path().join("sessions.db"));
    conformance(
        store::open(&cfg, &palisade_orchestrator::tls::Trust::default())
            .await
            .unwrap(),
    )
    .await;
    // A new process (a restart) reads what the last one wrote.
    let reopened = store::open(&cfg, &palisade_orchestrator::tls::Trust::default())
        .await
        .unwrap();
    assert_eq!(
        reopened
            .run("run-a")
            .await
            .unwrap()
            .unwrap()
            .final_message
            .as_deref(),
        Some("Il est midi — 🕛")
    );
    assert_eq!(
        reopened
            .thread("thread-1")
            .await
            .unwrap()
            .unwrap()
            .runs
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms_and_reconnects_after_a_restart() {
    let mut pg = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap();
    let cfg = StoreConfig::postgres(pg.url());
    let sessions = store::open(&cfg, &palisade_orchestrator::tls::Trust::default())
        .await
        .unwrap();
    conformance(Arc::clone(&sessions)).await;

    // A second replica opening the same database (tables exist) sees the same sessions.
    let replica = store::open(&cfg, &palisade_orchestrator::tls::Trust::default())
        .await
        .unwrap();
    assert!(replica.run("run-a").await.unwrap().is_some());

    // Database down: an error (the HTTP layer's 500), never "not found".
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let err = sessions.run("run-a").await;
    assert!(err.is_err(), "a stopped database must be an error: {err:?}");
    assert!(sessions.thread("thread-1").await.is_err());

    // Back up: the same store object reconnects, and nothing was lost.
    pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    let run = sessions.run("run-a").await.unwrap().unwrap();
    assert_eq!(run.tool_calls.len(), 2);

    // A replica starting while the database is down starts anyway, and serves once it is back.
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let late = store::open(&cfg, &palisade_orchestrator::tls::Trust::default())
        .await
        .expect("opens while the database is down");
    assert!(late.run("run-a").await.is_err());
    pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    assert!(late.run("run-a").await.unwrap().is_some());

    // A malformed URL is refused at once.
    let bad = StoreConfig::postgres("postgres://x:notaport/db");
    assert!(
        store::open(&bad, &palisade_orchestrator::tls::Trust::default())
            .await
            .is_err()
    );
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_idempotency_keys_are_shared_expire_and_release() {
    let mut redis = RedisServer::start();
    // Two clients: two orchestrator replicas sharing one Redis.
    let a = RedisIdempotency::new(&redis.url(), "test:idem:").unwrap();
    let b = RedisIdempotency::new(&redis.url(), "test:idem:").unwrap();
    let ttl = Duration::from_secs(60);
    assert_eq!(a.claim("k1", "run-1", ttl).await.unwrap(), Claim::New);
    assert_eq!(
        b.claim("k1", "run-2", ttl).await.unwrap(),
        Claim::Existing {
            run_id: "run-1".into()
        }
    );
    // The key is really in Redis, with a TTL.
    let pttl = palisade_e2e::redis::redis_cli(redis.port, &["PTTL", "test:idem:k1"]).unwrap();
    let pttl: i64 = pttl.parse().unwrap();
    assert!(pttl > 50_000 && pttl <= 60_000, "PTTL {pttl}");

    // Release by a non-holder does nothing; by the holder frees the key.
    b.release("k1", "run-2").await.unwrap();
    assert!(matches!(
        a.claim("k1", "run-3", ttl).await.unwrap(),
        Claim::Existing { .. }
    ));
    a.release("k1", "run-1").await.unwrap();
    assert_eq!(b.claim("k1", "run-4", ttl).await.unwrap(), Claim::New);

    // A short TTL expires in Redis.
    assert_eq!(
        a.claim("short", "run-5", Duration::from_millis(50))
            .await
            .unwrap(),
        Claim::New
    );
    let mut freed = false;
    for _ in 0..100 {
        if b.claim("short", "run-6", ttl).await.unwrap() == Claim::New {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the 50 ms key never expired");

    // Racing replicas: exactly one wins.
    let a = Arc::new(a);
    let b = Arc::new(b);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let c = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tokio::spawn(async move { c.claim("race", &format!("run-{i}"), ttl).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == Claim::New {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);

    // Redis down: an error (the HTTP layer's 503), not a silent second run.
    redis.kill();
    assert!(a.claim("k2", "run-7", ttl).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_idempotency_keys_spread_over_slots() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let seeds = cluster.urls();
    let a = RedisIdempotency::cluster(&seeds, "test:idem:").unwrap();
    let b = RedisIdempotency::cluster(&seeds[1..], "test:idem:").unwrap();
    let ttl = Duration::from_secs(60);
    // 30 keys land on all three masters; every one is claimed once and seen by the other replica.
    for i in 0..30 {
        let key = format!("key-{i}");
        assert_eq!(
            a.claim(&key, &format!("run-{i}"), ttl).await.unwrap(),
            Claim::New
        );
        assert_eq!(
            b.claim(&key, "other", ttl).await.unwrap(),
            Claim::Existing {
                run_id: format!("run-{i}")
            }
        );
    }
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| redis_cli(n.port, &["DBSIZE"]).unwrap().parse().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 30);
    assert!(
        per_node.iter().all(|&n| n > 0),
        "keys on every master: {per_node:?}"
    );
    // Release runs its script on the key's node.
    b.release("key-7", "run-7").await.unwrap();
    assert_eq!(
        a.claim("key-7", "run-again", ttl).await.unwrap(),
        Claim::New
    );
}
