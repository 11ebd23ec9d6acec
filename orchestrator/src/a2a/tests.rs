//! The A2A client against a scripted local JSON-RPC endpoint: retries and backoff, final
//! statuses, 0.3 fallback, answer parsing. (The real a2a-sdk agent is exercised by the e2e
//! scenarios in `tests/scenarios/orchestrator_state.rs`.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::wire::{parse_answer, Answer, Version};
use super::{
    A2aClient, A2aConfig, A2aOutcome, A2aProtocol, ERROR_MAX_RETRIES, ERROR_REMOTE, ERROR_TIMEOUT,
};

/// What the fake answers to one request.
#[derive(Clone)]
enum Step {
    Status(u16),
    /// 503 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    Hang,
    Json(Value),
    /// Answers 1.0 requests with -32601 and 0.3 requests with a completed task.
    Only03,
}

/// Requests seen: (method, A2A-Version header, messageId, arrival time).
type Seen = Arc<Mutex<Vec<(String, Option<String>, String, Instant)>>>;

#[derive(Clone)]
struct Fake {
    steps: Arc<Mutex<Vec<Step>>>,
    seen: Seen,
}

async fn handle(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let method = body["method"].as_str().unwrap_or_default().to_owned();
    let message_id = body["params"]["message"]["messageId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let version = headers
        .get("a2a-version")
        .map(|v| v.to_str().unwrap().to_owned());
    fake.seen
        .lock()
        .unwrap()
        .push((method.clone(), version, message_id, Instant::now()));
    let step = {
        let mut steps = fake.steps.lock().unwrap();
        if steps.len() > 1 {
            steps.remove(0)
        } else {
            steps[0].clone()
        }
    };
    let id = body["id"].clone();
    match step {
        Step::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Step::RetryAfter(secs) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Step::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        Step::Json(result) => Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response(),
        Step::Only03 if method == "message/send" => Json(json!({"jsonrpc": "2.0", "id": id, "result": {
            "kind": "task", "id": "t-03", "contextId": "c-03",
            "status": {"state": "completed"},
            "artifacts": [{"artifactId": "a", "parts": [{"kind": "text", "text": "old agent"}]}],
        }})).into_response(),
        Step::Only03 => Json(json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": "Method not found"}})).into_response(),
    }
}

async fn fake(steps: Vec<Step>) -> (reqwest::Url, Seen) {
    let seen: Seen = Arc::default();
    let state = Fake {
        steps: Arc::new(Mutex::new(steps)),
        seen: Arc::clone(&seen),
    };
    let app = Router::new().route("/", post(handle)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/").parse().unwrap(), seen)
}

fn completed_v1(text: &str) -> Value {
    json!({"task": {"id": "t-1", "contextId": "c-1",
        "status": {"state": "TASK_STATE_COMPLETED"},
        "artifacts": [{"artifactId": "a", "parts": [{"text": text}]}]}})
}

fn config(max_retries: u32) -> A2aConfig {
    A2aConfig {
        max_retries,
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(1_000),
        attempt_timeout: std::time::Duration::from_millis(300),
        ..A2aConfig::default()
    }
}

#[tokio::test]
async fn a_completed_task_returns_its_artifact_text() {
    let (url, seen) = fake(vec![Step::Json(completed_v1("done"))]).await;
    let outcome = A2aClient::new(&config(3), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert_eq!(
        outcome,
        A2aOutcome::Completed {
            task_id: Some("t-1".into()),
            context_id: Some("c-1".into()),
            state: "completed".into(),
            text: "done".into(),
            attempts: 1,
        }
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "SendMessage");
    assert_eq!(seen[0].1.as_deref(), Some("1.0"));
}

#[tokio::test]
async fn gateway_errors_are_retried_with_doubling_backoff_and_the_same_message_id() {
    let (url, seen) = fake(vec![
        Step::Status(503),
        Step::Status(502),
        Step::Status(504),
        Step::Json(completed_v1("ok")),
    ])
    .await;
    let outcome = A2aClient::new(&config(3), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(&outcome, A2aOutcome::Completed { attempts: 4, text, .. } if text == "ok"),
        "{outcome:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|s| s.2 == seen[0].2 && !s.2.is_empty()),
        "one messageId across retries"
    );
    // Backoff 20, 40, 80 ms with equal jitter: each gap at least half of its backoff.
    for (i, min) in [10u64, 20, 40].iter().enumerate() {
        let gap = seen[i + 1].3 - seen[i].3;
        assert!(gap >= Duration::from_millis(*min), "gap {i} was {gap:?}");
    }
}

/// The status, attempts and detail of a failed delegation (panics on success).
fn failure(outcome: A2aOutcome) -> (&'static str, u32, String) {
    match outcome {
        A2aOutcome::Failed {
            status,
            attempts,
            detail,
        } => (status, attempts, detail),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn exhausted_retries_on_503_end_in_error_max_retries() {
    let (url, seen) = fake(vec![Step::Status(503)]).await;
    let outcome = A2aClient::new(&config(2), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    let (status, attempts, detail) = failure(outcome);
    assert_eq!((status, attempts), (ERROR_MAX_RETRIES, 3));
    assert!(detail.contains("503"), "{detail}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn connect_errors_are_retried_then_error_max_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let outcome = A2aClient::new(&config(2), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    let (status, attempts, detail) = failure(outcome);
    assert_eq!((status, attempts), (ERROR_MAX_RETRIES, 3));
    assert!(detail.contains("connect"), "{detail}");
}

#[tokio::test]
async fn attempts_that_time_out_end_in_error_timeout() {
    let (url, seen) = fake(vec![Step::Hang]).await;
    let started = Instant::now();
    let outcome = A2aClient::new(&config(1), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(
            outcome,
            A2aOutcome::Failed {
                status: ERROR_TIMEOUT,
                attempts: 2,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_overall_deadline_ends_retries_with_error_timeout() {
    let (url, _) = fake(vec![Step::Status(503)]).await;
    let cfg = A2aConfig {
        total_timeout: std::time::Duration::from_millis(300),
        initial_backoff: std::time::Duration::from_millis(100),
        ..config(10)
    };
    let outcome = A2aClient::new(&cfg, &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    // 10 retries allowed, but the backoff (100, 200, …) crosses the 300 ms deadline first.
    assert!(
        matches!(
            outcome,
            A2aOutcome::Failed {
                status: ERROR_TIMEOUT,
                attempts: 1..=3,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_failed_task_or_a_500_is_not_retried() {
    let failed = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_FAILED",
        "message": {"role": "ROLE_AGENT", "parts": [{"text": "boom"}]}}}});
    let (url, seen) = fake(vec![Step::Json(failed)]).await;
    let outcome = A2aClient::new(&config(3), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(&outcome, A2aOutcome::Failed { status: ERROR_REMOTE, attempts: 1, detail } if detail.contains("boom")),
        "{outcome:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    let (url, seen) = fake(vec![Step::Status(500)]).await;
    let outcome = A2aClient::new(&config(3), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(
            outcome,
            A2aOutcome::Failed {
                status: ERROR_REMOTE,
                attempts: 1,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn auto_falls_back_to_0_3_and_remembers_it() {
    let (url, seen) = fake(vec![Step::Only03]).await;
    let client = A2aClient::new(&config(0), &crate::tls::Trust::default()).unwrap();
    for _ in 0..2 {
        let outcome = client.send(&url, "hi").await;
        assert!(
            matches!(&outcome, A2aOutcome::Completed { text, state, .. } if text == "old agent" && state == "completed"),
            "{outcome:?}"
        );
    }
    let methods: Vec<_> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
    assert_eq!(methods, ["SendMessage", "message/send", "message/send"]);
}

#[tokio::test]
async fn pinned_v1_does_not_fall_back() {
    let (url, _) = fake(vec![Step::Only03]).await;
    let cfg = A2aConfig {
        protocol: A2aProtocol::V1,
        ..config(0)
    };
    let outcome = A2aClient::new(&cfg, &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(&outcome, A2aOutcome::Failed { status: ERROR_REMOTE, detail, .. } if detail.contains("-32601")),
        "{outcome:?}"
    );
}

#[test]
fn agent_urls_are_validated() {
    let mut cfg = A2aConfig::default();
    cfg.agents
        .insert("good".into(), "http://127.0.0.1:1/a2a".into());
    assert!(A2aClient::new(&cfg, &crate::tls::Trust::default())
        .unwrap()
        .agent("good")
        .is_some());
    cfg.agents.insert("bad".into(), "ftp://x/".into());
    let err = A2aClient::new(&cfg, &crate::tls::Trust::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("a2a.agents.bad"), "{err}");
}

#[test]
fn answers_of_both_versions_are_read() {
    let message = json!({"jsonrpc": "2.0", "id": 1, "result": {"message": {
        "messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "a"}, {"text": "b"}]}}});
    assert_eq!(
        parse_answer(Version::V1, &message).unwrap(),
        Answer::Reply {
            task_id: None,
            context_id: None,
            state: "completed".into(),
            text: "ab".into(),
        }
    );
    let task03 = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t",
        "status": {"state": "input-required", "message": {"kind": "message", "parts": [{"kind": "text", "text": "which city?"}]}}}});
    assert_eq!(
        parse_answer(Version::V03, &task03).unwrap(),
        Answer::Reply {
            task_id: Some("t".into()),
            context_id: None,
            state: "input_required".into(),
            text: "which city?".into(),
        }
    );
    assert!(parse_answer(
        Version::V03,
        &json!({"jsonrpc": "2.0", "result": {"kind": "x"}})
    )
    .is_err());
    assert!(parse_answer(Version::V1, &json!({"jsonrpc": "2.0"})).is_err());
}

#[tokio::test]
async fn retry_after_stretches_the_wait_within_the_cap() {
    let (url, seen) = fake(vec![Step::RetryAfter(1), Step::Json(completed_v1("ok"))]).await;
    let outcome = A2aClient::new(&config(1), &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(outcome, A2aOutcome::Completed { attempts: 2, .. }),
        "{outcome:?}"
    );
    let gap = {
        let seen = seen.lock().unwrap();
        seen[1].3 - seen[0].3
    };
    assert!(
        gap >= Duration::from_secs(1),
        "waited {gap:?}, not the server's 1 s"
    );

    // Capped by max_backoff_ms: 300 ms instead of the asked 30 s.
    let (url, seen) = fake(vec![Step::RetryAfter(30), Step::Json(completed_v1("ok"))]).await;
    let cfg = A2aConfig {
        max_backoff: std::time::Duration::from_millis(300),
        ..config(1)
    };
    let outcome = A2aClient::new(&cfg, &crate::tls::Trust::default())
        .unwrap()
        .send(&url, "hi")
        .await;
    assert!(
        matches!(outcome, A2aOutcome::Completed { attempts: 2, .. }),
        "{outcome:?}"
    );
    let seen = seen.lock().unwrap();
    let gap = seen[1].3 - seen[0].3;
    assert!(
        gap >= Duration::from_millis(300) && gap < Duration::from_secs(10),
        "{gap:?}"
    );
}

#[test]
fn backoff_doubles_up_to_the_cap_and_jitters_within_its_upper_half() {
    let exact = A2aClient::new(
        &A2aConfig {
            jitter: false,
            ..config(3)
        },
        &crate::tls::Trust::default(),
    )
    .unwrap();
    let waits: Vec<u128> = (0..8).map(|r| exact.backoff(r).as_millis()).collect();
    assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1000, 1000]);
    let jittered = A2aClient::new(&config(3), &crate::tls::Trust::default()).unwrap();
    let samples: Vec<u128> = (0..200).map(|_| jittered.backoff(4).as_millis()).collect();
    assert!(
        samples.iter().all(|&w| (160..=320).contains(&w)),
        "{samples:?}"
    );
    let distinct: std::collections::HashSet<_> = samples.iter().collect();
    assert!(distinct.len() > 20, "the waits vary: {distinct:?}");
}
