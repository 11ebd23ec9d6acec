//! Through the proxy, with the offline model: a run's status after the fact, an idempotent repeat
//! (replayed, never run twice; `409` while the first still runs), and an A2A delegation to a real
//! a2a-sdk agent behind a proxy route, retried after a gateway's `503`.

use std::time::Duration;

use palisade_e2e::orchestrator::Listener;
use palisade_e2e::upstream::{self, Upstream};
use palisade_e2e::{client, sse_client, Proxy, TestProxy};
use serde_json::{json, Value};

use super::peers::{flaky_gateway, Agent};

/// The proxy, the orchestrator behind it, and the remote agent behind a flaky gateway behind the
/// proxy's `/a2a` route.
struct Stack {
    proxy: Proxy,
    agent: Agent,
    gateway: Upstream,
    _dir: tempfile::TempDir,
}

async fn stack(word_delay_ms: u64) -> Stack {
    let agent = tokio::task::spawn_blocking(|| Agent::start(false))
        .await
        .unwrap();
    let gateway = flaky_gateway(&agent, 1).await;
    let stuck = upstream::silent().await;
    let listener = Listener::bind().await;
    let proxy = TestProxy::new()
        .upstream("orchestrator", listener.addr)
        .upstream("agent", gateway.addr)
        .upstream("stuck", stuck.addr);
    let proxy = agent_and_runs_routes(proxy)
        .route("threads", "/threads/", "orchestrator", "")
        .route("a2a", "/a2a", "agent", "protocol: a2a")
        .route("a2a-stuck", "/stuck/a2a", "stuck", "protocol: a2a")
        .start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = listener.config(word_delay_ms, &proxy);
    cfg.store = palisade_orchestrator::store::StoreConfig::sqlite(dir.path().join("sessions.db"));
    cfg.a2a.agents.insert("helper".into(), proxy.url("/a2a"));
    cfg.a2a
        .agents
        .insert("stuck".into(), proxy.url("/stuck/a2a"));
    cfg.a2a.initial_backoff = std::time::Duration::from_millis(50);
    cfg.a2a.max_retries = 1;
    cfg.a2a.attempt_timeout = std::time::Duration::from_millis(1_500);
    listener.serve(cfg);
    Stack {
        proxy,
        agent,
        gateway,
        _dir: dir,
    }
}

/// Routes POSTs to `/agent` (AG-UI) and `/runs/` to the upstream `orchestrator`.
fn agent_and_runs_routes(proxy: TestProxy) -> TestProxy {
    proxy
        .route_matching(
            "agent",
            "path_prefix: /agent, methods: [POST]",
            "orchestrator",
            "protocol: agui",
        )
        .route("runs", "/runs/", "orchestrator", "")
}

/// 60 words: at 50 ms a word, a run answering it streams for about three seconds.
fn long_prompt() -> String {
    vec!["word"; 60].join(" ")
}

/// Starts a run of [`long_prompt`] under idempotency `key` and returns its response while it
/// still streams.
async fn start_long_run(stack: &Stack, key: &str, thread: &str, run: &str) -> reqwest::Response {
    client()
        .post(stack.proxy.url("/agent"))
        .header("idempotency-key", key)
        .json(&input(thread, run, &long_prompt()))
        .send()
        .await
        .unwrap()
}

/// A run input. A retry of the same request differs only in `runId` (the message keeps its id),
/// which is what an idempotent repeat must look like: any other difference is a different
/// request (`422 IDEMPOTENCY_KEY_REUSED`).
fn input(thread: &str, run: &str, text: &str) -> Value {
    json!({
        "threadId": thread, "runId": run, "state": {}, "tools": [], "context": [],
        "forwardedProps": {},
        "messages": [{"id": format!("m-{thread}"), "role": "user", "content": text}]
    })
}

/// Posts a run and reads its whole SSE answer: (status, events, replayed header).
async fn post_run(
    stack: &Stack,
    body: &Value,
    key: Option<&str>,
) -> (u16, Vec<Value>, Option<String>) {
    let mut request = client()
        .post(stack.proxy.url("/agent"))
        .header("accept", "text/event-stream")
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    if status != 200 {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        return (status, vec![body], replayed);
    }
    let got = sse_client::read(resp, None, Duration::from_secs(20)).await;
    (status, got.json(), replayed)
}

async fn get_json(stack: &Stack, path: &str) -> (u16, Value) {
    let resp = client().get(stack.proxy.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_status_and_thread_after_the_fact() {
    let stack = stack(1).await;
    let (status, events, _) = post_run(
        &stack,
        &input("t-status", "r-tool", "please use get_time"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"), "{events:?}");
    let (status, events, _) =
        post_run(&stack, &input("t-status", "r-fail", "fail now"), None).await;
    assert_eq!(status, 200);
    assert_eq!(types(&events).last(), Some(&"RUN_ERROR"), "{events:?}");

    let (status, run) = get_json(&stack, "/runs/r-tool").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "finished");
    assert_eq!(run["thread_id"], "t-status");
    assert_eq!(run["tool_calls"][0]["name"], "get_time");
    assert!(run["tool_calls"][0]["result"].is_string(), "{run}");
    assert!(
        !run["final_message"].as_str().unwrap_or("").is_empty(),
        "{run}"
    );
    assert!(run["finished_at"].as_str().unwrap() >= run["started_at"].as_str().unwrap());

    let (status, failed) = get_json(&stack, "/runs/r-fail").await;
    assert_eq!(status, 200);
    assert_eq!(failed["status"], "error");
    assert!(failed["error"].is_string(), "{failed}");

    let (status, thread) = get_json(&stack, "/threads/t-status").await;
    assert_eq!(status, 200);
    let ids: Vec<_> = thread["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r-tool", "r-fail"]);

    let (status, body) = get_json(&stack, "/runs/never-ran").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    assert_eq!(get_json(&stack, "/threads/never").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_repeat_replays_the_first_run_instead_of_running_again() {
    let stack = stack(1).await;
    let (status, first, replayed) = post_run(
        &stack,
        &input("t-idem", "r-first", "please use get_time"),
        Some("order-42"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replayed, None);
    assert_eq!(types(&first).last(), Some(&"RUN_FINISHED"));

    // Same key, a new runId (a client retrying after a lost response): the first run comes back.
    let (status, again, replayed) = post_run(
        &stack,
        &input("t-idem", "r-retry", "please use get_time"),
        Some("order-42"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(
        again, first,
        "the replay is the first run's events, unchanged"
    );
    assert!(again
        .iter()
        .all(|e| e.get("runId").is_none_or(|id| id == "r-first")));
    assert_eq!(
        get_json(&stack, "/runs/r-retry").await.0,
        404,
        "no second run happened"
    );
    let (_, thread) = get_json(&stack, "/threads/t-idem").await;
    assert_eq!(thread["runs"].as_array().unwrap().len(), 1);

    // The same key on a different request (another prompt; then the same prompt, other state) is
    // refused, not answered with the first run's result.
    for body in [input("t-idem", "r-changed", "please use get_time now"), {
        let mut body = input("t-idem", "r-changed", "please use get_time");
        body["state"] = json!({"cart": 1});
        body
    }] {
        let (status, answer, replayed) = post_run(&stack, &body, Some("order-42")).await;
        assert_eq!(status, 422, "{answer:?}");
        assert_eq!(answer[0]["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(answer[0]["error"]["runId"], "r-first");
        assert_eq!(replayed, None);
    }
    assert_eq!(get_json(&stack, "/runs/r-changed").await.0, 404);
    // Key order and whitespace are not a difference: the body is compared as parsed.
    let reordered = r#"{"runId":"r-reorder","forwardedProps":{},"context":[],"tools":[],
        "state":{},"threadId":"t-idem","messages":[{"content":"please use get_time",
        "role":"user","id":"m-t-idem"}]}"#;
    let resp = client()
        .post(stack.proxy.url("/agent"))
        .header("idempotency-key", "order-42")
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");

    // Another key runs normally.
    let (status, _, replayed) = post_run(
        &stack,
        &input("t-idem", "r-other", "hello"),
        Some("order-43"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replayed, None);
    assert_eq!(
        get_json(&stack, "/runs/r-other").await.1["status"],
        "finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_the_first_run_streams_is_409() {
    // The first run streams for about three seconds.
    let stack = stack(50).await;
    let long = long_prompt();
    let first = start_long_run(&stack, "slow-1", "t-busy", "r-busy").await;
    assert_eq!(first.status(), 200);
    let (status, body, _) =
        post_run(&stack, &input("t-busy", "r-busy-2", &long), Some("slow-1")).await;
    assert_eq!(status, 409, "{body:?}");
    assert_eq!(body[0]["error"]["code"], "RUN_IN_PROGRESS");
    assert_eq!(body[0]["error"]["runId"], "r-busy");
    let got = sse_client::read(first, None, Duration::from_secs(20)).await;
    assert_eq!(got.types().last().map(String::as_str), Some("RUN_FINISHED"));
    // Once finished, the repeat is a replay.
    let (status, _, replayed) =
        post_run(&stack, &input("t-busy", "r-busy-3", &long), Some("slow-1")).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_delegation_through_the_proxy_retries_after_a_503() {
    let stack = stack(1).await;
    let (status, events, _) = post_run(
        &stack,
        &input("t-a2a", "r-a2a", "delegate check the deploy logs to helper"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let kinds = types(&events);
    assert_eq!(kinds.last(), Some(&"RUN_FINISHED"), "{events:?}");
    let start = events
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_START")
        .expect("a tool call");
    assert_eq!(start["toolCallName"], "delegate_to_agent");
    let result = events
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_RESULT")
        .expect("a tool result");
    let content: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["status"], "completed", "{content}");
    assert_eq!(content["text"], "Delegated: check the deploy logs");
    assert_eq!(content["attempts"], 2, "one 503, then through");

    // The gateway saw the 503'd attempt and the retry (both through the proxy); the agent ran once.
    assert_eq!(stack.gateway.requests().len(), 2);
    assert_eq!(stack.agent.served().await, 1);

    let (_, run) = get_json(&stack, "/runs/r-a2a").await;
    assert_eq!(run["tool_calls"][0]["name"], "delegate_to_agent");
    assert!(
        run["tool_calls"][0]["result"]
            .as_str()
            .unwrap()
            .contains("Delegated: check the deploy logs"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_client_dropped_the_stream_runs_again() {
    // The run streams for about three seconds: the client hangs up well before the end.
    let stack = stack(50).await;
    let first = start_long_run(&stack, "dropped-1", "t-drop", "r-dropped").await;
    let got = sse_client::read(first, Some(3), Duration::from_secs(10)).await;
    assert_eq!(got.types().first().map(String::as_str), Some("RUN_STARTED"));
    drop(got);
    // The orchestrator notices the disconnect and records the run cancelled.
    let mut status = Value::Null;
    for _ in 0..300 {
        status = get_json(&stack, "/runs/r-dropped").await.1["status"].clone();
        if status == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "cancelled");
    // The retry (same request, new runId) runs to the end (not a truncated replay).
    let (code, events, replayed) = post_run(
        &stack,
        &input("t-drop", "r-again", &long_prompt()),
        Some("dropped-1"),
    )
    .await;
    assert_eq!((code, replayed), (200, None));
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"));
    assert_eq!(
        get_json(&stack, "/runs/r-again").await.1["status"],
        "finished"
    );
    // And from now on the key answers with the retry's result.
    let (code, again, replayed) = post_run(
        &stack,
        &input("t-drop", "r-third", &long_prompt()),
        Some("dropped-1"),
    )
    .await;
    assert_eq!((code, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again, events);
}

/// One orchestrator replica behind its own proxy, sharing `store` and `redis_url` with others.
async fn replica(store: &palisade_orchestrator::store::StoreConfig, redis_url: &str) -> Proxy {
    let listener = Listener::bind().await;
    let proxy =
        agent_and_runs_routes(TestProxy::new().upstream("orchestrator", listener.addr)).start();
    let mut cfg = listener.config(1, &proxy);
    cfg.store = store.clone();
    cfg.idempotency.redis_url = Some(redis_url.to_owned());
    listener.serve(cfg);
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgres_and_redis_answer_a_repeat_from_either() {
    let pg = tokio::task::spawn_blocking(palisade_e2e::postgres::PostgresServer::start)
        .await
        .unwrap();
    let redis = palisade_e2e::redis::RedisServer::start();
    let store = palisade_orchestrator::store::StoreConfig::postgres(pg.url());
    let a = replica(&store, &redis.url()).await;
    let b = replica(&store, &redis.url()).await;

    let post = |proxy: &Proxy, run: &str| {
        client()
            .post(proxy.url("/agent"))
            .header("idempotency-key", "shared-1")
            .json(&input("t-shared", run, "please use get_time"))
            .send()
    };
    let first = post(&a, "r-on-a").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = sse_client::read(first, None, Duration::from_secs(20))
        .await
        .json();
    assert_eq!(types(&first).last(), Some(&"RUN_FINISHED"));

    // The client retries against the other replica: Redis knows the key, Postgres the run.
    let again = post(&b, "r-on-b").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = sse_client::read(again, None, Duration::from_secs(20))
        .await
        .json();
    assert_eq!(again, first);

    let run: Value = client()
        .get(b.url("/runs/r-on-a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], "finished", "replica B reads replica A's run");
    let missing = client().get(a.url("/runs/r-on-b")).send().await.unwrap();
    assert_eq!(missing.status(), 404, "the repeat never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_delegation_to_an_agent_that_never_answers_ends_in_error_timeout() {
    let stack = stack(1).await;
    let (status, events, _) = post_run(
        &stack,
        &input(
            "t-stuck",
            "r-stuck",
            "delegate summarise the incident to stuck",
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // The tool's failure goes back to the model, which answers; the run itself finishes.
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"), "{events:?}");
    let result = events
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_RESULT")
        .expect("a tool result");
    let content = result["content"].as_str().unwrap();
    assert!(content.contains("ERROR_TIMEOUT"), "{content}");
    let (_, run) = get_json(&stack, "/runs/r-stuck").await;
    let call = &run["tool_calls"][0];
    assert_eq!(call["name"], "delegate_to_agent");
    assert!(
        call["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ERROR_TIMEOUT"),
        "{run}"
    );
}
