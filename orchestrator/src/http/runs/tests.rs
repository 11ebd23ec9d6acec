//! `GET /runs/{id}`, `GET /threads/{id}` and the idempotent-repeat answer: 200, 404 and 500.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tower::ServiceExt;

use super::{answer_repeat, repeat, routes, REPLAYED_HEADER};
use crate::idempotency::{Claim, Holder, IdempotencyStore, InProcess};
use crate::store::sqlite::SqliteStore;
use crate::store::{RunRecord, RunStatus, SessionStore, StoreError, ThreadRecord, ToolCallRecord};

/// A store whose every call fails, as a database that is down does.
struct Broken;

#[async_trait::async_trait]
impl SessionStore for Broken {
    async fn start_run(&self, _: &RunRecord) -> Result<(), StoreError> {
        Err(StoreError::Corrupt("down".into()))
    }
    async fn finish_run(&self, _: &RunRecord) -> Result<(), StoreError> {
        Err(StoreError::Corrupt("down".into()))
    }
    async fn run(&self, _: &str) -> Result<Option<RunRecord>, StoreError> {
        Err(StoreError::Corrupt("down".into()))
    }
    async fn thread(&self, _: &str) -> Result<Option<ThreadRecord>, StoreError> {
        Err(StoreError::Corrupt("down".into()))
    }
    async fn sweep(
        &self,
        _: &crate::store::RetentionConfig,
        _: time::OffsetDateTime,
    ) -> Result<crate::store::Swept, StoreError> {
        Err(StoreError::Corrupt("down".into()))
    }
    fn max_events_per_run(&self) -> usize {
        usize::MAX
    }
}

async fn memory() -> Arc<dyn SessionStore> {
    Arc::new(
        SqliteStore::open(":memory:".as_ref(), 10_000)
            .await
            .unwrap(),
    )
}

async fn get(store: Arc<dyn SessionStore>, path: &str) -> (StatusCode, Value) {
    let response = routes(store)
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (status, json_body(response).await)
}

async fn json_body(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn finished_run() -> RunRecord {
    let mut run = RunRecord::started("r1", "t1", Some("alice".into()));
    run.tool_calls.push(ToolCallRecord {
        id: "c1".into(),
        name: "get_time".into(),
        arguments: "{}".into(),
        result: Some("12:00".into()),
        error: None,
    });
    run.events = vec![
        r#"{"type":"RUN_STARTED","threadId":"t1","runId":"r1"}"#.into(),
        r#"{"type":"RUN_FINISHED","threadId":"t1","runId":"r1"}"#.into(),
    ];
    run.finish_with_message("It is 12:00.");
    run
}

#[tokio::test]
async fn a_recorded_run_and_thread_are_shown() {
    let store = memory().await;
    store.start_run(&finished_run()).await.unwrap();
    let (status, run) = get(Arc::clone(&store), "/runs/r1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "finished");
    assert_eq!(run["thread_id"], "t1");
    assert_eq!(run["final_message"], "It is 12:00.");
    assert_eq!(run["tool_calls"][0]["name"], "get_time");
    assert_eq!(run["tool_calls"][0]["result"], "12:00");
    assert!(run["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(run.get("events").is_none(), "stored events are not shown");

    let (status, thread) = get(store, "/threads/t1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(thread["runs"][0]["run_id"], "r1");
    assert_eq!(thread["runs"][0]["status"], "finished");
}

#[tokio::test]
async fn unknown_ids_are_404_and_a_failing_store_is_500() {
    for path in ["/runs/nope", "/threads/nope"] {
        let (status, body) = get(memory().await, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        let (status, body) = get(Arc::new(Broken), path).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE");
        assert!(
            !body.to_string().contains("down"),
            "the cause stays in the log"
        );
    }
}

#[tokio::test]
async fn a_repeat_of_a_finished_run_replays_its_events() {
    let store = memory().await;
    store.finish_run(&finished_run()).await.unwrap();
    let response = answer_repeat(store.as_ref(), "r1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[REPLAYED_HEADER], "true");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t1\",\"runId\":\"r1\"}\n\n\
         data: {\"type\":\"RUN_FINISHED\",\"threadId\":\"t1\",\"runId\":\"r1\"}\n\n"
    );
}

#[tokio::test]
async fn a_repeat_of_a_truncated_run_replays_what_was_stored_then_says_so() {
    // The store keeps one event per run: the second is dropped and the run flagged.
    let store: Arc<dyn SessionStore> =
        Arc::new(SqliteStore::open(":memory:".as_ref(), 1).await.unwrap());
    store.finish_run(&finished_run()).await.unwrap();
    let (status, run) = get(store.clone(), "/runs/r1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["events_truncated"], true);
    let response = answer_repeat(store.as_ref(), "r1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[REPLAYED_HEADER], "true");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), 2, "{text}");
    assert_eq!(
        frames[0],
        "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t1\",\"runId\":\"r1\"}"
    );
    let last: Value = serde_json::from_str(frames[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["type"], "RUN_ERROR");
    assert_eq!(last["code"], "EVENTS_TRUNCATED");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("only the first 1 events"),
        "{last}"
    );
}

#[tokio::test]
async fn a_repeat_of_a_running_or_unrecorded_run_is_409_and_a_failing_store_500() {
    let store = memory().await;
    let running = RunRecord::started("r2", "t1", None);
    store.start_run(&running).await.unwrap();
    assert_eq!(running.status, RunStatus::Running);
    for run_id in ["r2", "not-yet-recorded"] {
        let response = answer_repeat(store.as_ref(), run_id).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{run_id}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body = json_body(response).await;
        assert_eq!(body["error"]["code"], "RUN_IN_PROGRESS");
        assert_eq!(body["error"]["runId"], run_id);
    }
    let response = answer_repeat(&Broken, "r2").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

async fn get_as(store: Arc<dyn SessionStore>, path: &str, principal: &str) -> (StatusCode, Value) {
    let mut request = Request::get(path).body(Body::empty()).unwrap();
    request.extensions_mut().insert(crate::identity::Caller {
        principal: principal.into(),
        ..Default::default()
    });
    let response = routes(store).oneshot(request).await.unwrap();
    let status = response.status();
    (status, json_body(response).await)
}

#[tokio::test]
async fn callers_see_only_their_own_runs() {
    let store = memory().await;
    store.finish_run(&finished_run()).await.unwrap(); // alice's, in t1
    let mut bobs = RunRecord::started("r-bob", "t1", Some("bob".into()));
    bobs.finish_with_message("hi bob");
    store.finish_run(&bobs).await.unwrap();
    let mut anon = RunRecord::started("r-anon", "t1", None);
    anon.finish_with_message("hi");
    store.finish_run(&anon).await.unwrap();

    assert_eq!(
        get_as(Arc::clone(&store), "/runs/r1", "alice").await.0,
        StatusCode::OK
    );
    let (status, body) = get_as(Arc::clone(&store), "/runs/r1", "bob").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another principal's run looks missing"
    );
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    assert_eq!(
        get_as(Arc::clone(&store), "/runs/r-anon", "bob").await.0,
        StatusCode::OK
    );

    let (status, thread) = get_as(Arc::clone(&store), "/threads/t1", "bob").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = thread["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["r-anon", "r-bob"], "alice's r1 is left out");
    let mut carols = RunRecord::started("r-carol", "t-carol", Some("carol".into()));
    carols.end(RunStatus::Finished);
    store.finish_run(&carols).await.unwrap();
    assert_eq!(
        get_as(store, "/threads/t-carol", "bob").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_repeat_of_a_cancelled_run_takes_the_key_over_and_runs() {
    let store = memory().await;
    let keys = InProcess::default();
    let ttl = std::time::Duration::from_secs(60);
    assert_eq!(
        keys.claim("k", "r-cancelled", ttl).await.unwrap(),
        Claim::New
    );
    let mut cancelled = RunRecord::started("r-cancelled", "t1", None);
    cancelled.end(RunStatus::Cancelled);
    store.finish_run(&cancelled).await.unwrap();

    // A cancelled run is not replayed (its events stop mid-stream).
    let response = answer_repeat(store.as_ref(), "r-cancelled").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);

    // The retry runs, and now holds the key: a further repeat is about the retry. (The key
    // was claimed without a fingerprint, as before fingerprints were kept: any request matches.)
    let fp = "a".repeat(64);
    let retry = Holder::new("r-retry", &fp);
    assert!(
        repeat(store.as_ref(), &keys, "k", "r-cancelled", &retry, ttl)
            .await
            .is_none()
    );
    let held = match keys.claim("k", "r-third", ttl).await.unwrap() {
        Claim::Existing { run_id } => run_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(Holder::decode(&held), retry);
    let third = Holder::new("r-third", &fp);
    let answer = repeat(store.as_ref(), &keys, "k", &held, &third, ttl)
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::CONFLICT,
        "r-retry is not recorded yet"
    );

    // The same key with a different request: 422, naming the run that holds the key.
    let other = Holder::new("r-other", &"b".repeat(64));
    let answer = repeat(store.as_ref(), &keys, "k", &held, &other, ttl)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(body["error"]["runId"], "r-retry");

    // Finished and running runs are answered, never run again.
    store.finish_run(&finished_run()).await.unwrap();
    keys.claim("k2", "r1", ttl).await.unwrap();
    let new = Holder::new("r-new", &fp);
    let answer = repeat(store.as_ref(), &keys, "k2", "r1", &new, ttl)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[REPLAYED_HEADER], "true");
    let answer = repeat(&Broken, &keys, "k2", "r1", &new, ttl).await.unwrap();
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
