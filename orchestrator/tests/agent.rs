//! `POST /agent` and `GET /healthz` over real HTTP on port 0.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use palisade_orchestrator::{
    serve, ActiveRuns, IdentityConfig, Orchestrator, OrchestratorConfig, GREETING,
};
use palisade_wire::agui::Event;
use palisade_wire::sse::{SseItem, SseParser};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An orchestrator served on 127.0.0.1:0 through [`serve`], stopped gracefully by [`stop`].
struct Server {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(word_delay_ms: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let cfg = OrchestratorConfig {
            word_delay: std::time::Duration::from_millis(word_delay_ms),
            ..unasserted()
        };
        let task = tokio::spawn(serve(listener, cfg, async {
            let _ = signal.await;
        }));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers graceful shutdown and checks `serve` returns `Ok`.
    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown");
        result.unwrap().unwrap();
    }
}

/// These scenarios are about streaming, not identity: no proxy in front, so no assertion is
/// required, and sessions stay in memory.
fn unasserted() -> OrchestratorConfig {
    OrchestratorConfig {
        identity: IdentityConfig {
            require_assertion: false,
            ..IdentityConfig::default()
        },
        store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
        ..OrchestratorConfig::default()
    }
}

fn run_input(messages: Value) -> Value {
    json!({
        "threadId": "thread-42",
        "runId": "run-7",
        "state": {},
        "messages": messages,
        "tools": [],
        "context": [],
        "forwardedProps": {}
    })
}

/// Reads a whole SSE response, timestamping each AG-UI event as it arrives.
async fn read_events(mut response: reqwest::Response) -> Vec<(Instant, Event)> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        let now = Instant::now();
        for item in parser.feed(&chunk) {
            let SseItem::Event(sse) = item.unwrap() else {
                continue;
            };
            assert_eq!(sse.event, None, "AG-UI frames are data-only");
            let event = Event::from_sse_data(sse.data.as_deref().unwrap()).unwrap();
            events.push((now, event));
        }
    }
    assert!(parser.finish().is_clean(), "stream ended mid-event");
    events
}

#[tokio::test]
async fn streams_the_run_in_order_as_it_is_produced() {
    const DELAY_MS: u64 = 60;
    let server = Server::start(DELAY_MS).await;
    let text = "one two three four five six";
    let input = run_input(json!([
        {"id": "s1", "role": "system", "content": "be brief"},
        {"id": "u1", "role": "user", "content": text}
    ]));
    let response = http()
        .post(server.url("/agent"))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let events = read_events(response).await;

    let types: Vec<&str> = events.iter().map(|(_, e)| e.type_name()).collect();
    let mut expected = vec!["RUN_STARTED", "TEXT_MESSAGE_START"];
    expected.extend(["TEXT_MESSAGE_CONTENT"; 6]);
    expected.extend(["TEXT_MESSAGE_END", "RUN_FINISHED"]);
    assert_eq!(types, expected);

    let Event::RunStarted {
        thread_id, run_id, ..
    } = &events[0].1
    else {
        unreachable!()
    };
    assert_eq!(
        (thread_id.as_str(), run_id.as_str()),
        ("thread-42", "run-7")
    );
    let Event::RunFinished {
        thread_id, run_id, ..
    } = &events[9].1
    else {
        unreachable!()
    };
    assert_eq!(
        (thread_id.as_str(), run_id.as_str()),
        ("thread-42", "run-7")
    );

    let Event::TextMessageStart { message_id, .. } = &events[1].1 else {
        unreachable!()
    };
    let mut answer = String::new();
    for (_, event) in &events[2..8] {
        let Event::TextMessageContent {
            message_id: id,
            delta,
        } = event
        else {
            unreachable!()
        };
        assert_eq!(id, message_id);
        answer.push_str(delta);
    }
    assert_eq!(answer, text);
    assert!(matches!(&events[8].1, Event::TextMessageEnd { message_id: id } if id == message_id));

    // Incremental: five more word delays pass between the first word and the end of the run, so
    // a server (or client) that buffered the stream would show them arriving together.
    let first_word = events[2].0;
    let finished = events[9].0;
    let spread = finished - first_word;
    assert!(
        spread >= Duration::from_millis(5 * DELAY_MS / 2),
        "first word arrived only {spread:?} before the end"
    );
    server.stop().await;
}

#[tokio::test]
async fn answers_a_greeting_without_a_user_message() {
    let server = Server::start(0).await;
    let response = http()
        .post(server.url("/agent"))
        .json(&run_input(json!([])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: String = read_events(response)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::TextMessageContent { delta, .. } => Some(delta),
            _ => None,
        })
        .collect();
    assert_eq!(answer, GREETING);
    server.stop().await;
}

#[tokio::test]
async fn rejects_invalid_bodies_with_a_json_error() {
    let server = Server::start(0).await;
    let client = http();
    for body in [
        "{not json",
        "",
        r#"{"runId":"r"}"#,
        r#"{"threadId":"t","runId":"r","messages":"nope"}"#,
    ] {
        let response = client
            .post(server.url("/agent"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body:?}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "INVALID_REQUEST", "{error}");
        assert!(error["error"]["message"].as_str().unwrap().len() > 10);
    }
    server.stop().await;
}

#[tokio::test]
async fn healthz_is_ok() {
    let server = Server::start(0).await;
    let response = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    server.stop().await;
}

#[tokio::test]
async fn client_disconnect_cancels_the_run() {
    const DELAY_MS: u64 = 200;
    let runs = ActiveRuns::default();
    let cfg = OrchestratorConfig {
        word_delay: std::time::Duration::from_millis(DELAY_MS),
        ..unasserted()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_runs = runs.clone();
    tokio::spawn(async move {
        let router = Orchestrator::new(cfg)
            .with_runs(server_runs)
            .router()
            .await
            .unwrap();
        axum::serve(listener, router).await.unwrap();
    });
    // Fifty words: the whole run would take ten seconds.
    let words = vec!["word"; 50].join(" ");
    let mut response = http()
        .post(format!("http://{addr}/agent"))
        .json(&run_input(
            json!([{"id": "u", "role": "user", "content": words}]),
        ))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {\"type\":\"RUN_STARTED\""));
    assert_eq!(runs.get(), 1);

    drop(response);
    let started = Instant::now();
    eventually(Duration::from_secs(5), || runs.get() == 0).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Polls `condition` until it holds, failing after `limit`.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_a_streaming_run_finish() {
    let server = Server::start(50).await;
    let ready = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let words = ["w"; 10].join(" ");
    let mut response = http()
        .post(server.url("/agent"))
        .json(&run_input(
            json!([{"id": "u", "role": "user", "content": words}]),
        ))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {\"type\":\"RUN_STARTED\""));
    // Shut down mid-run (about half a second of words left): the run still completes.
    let Server { shutdown, task, .. } = server;
    shutdown.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let rest = String::from_utf8(rest).unwrap();
    assert_eq!(rest.matches("TEXT_MESSAGE_CONTENT").count(), 10, "{rest}");
    assert!(rest.ends_with("\"runId\":\"run-7\"}\n\n") && rest.contains("RUN_FINISHED"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns once the run is done")
        .unwrap()
        .unwrap();
}

/// A client for the orchestrator under test (plain HTTP; rustls configured as the binaries do).
fn http() -> reqwest::Client {
    palisade_orchestrator::tls::Trust::default()
        .client_builder()
        .build()
        .unwrap()
}
