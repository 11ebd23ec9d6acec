//! The bundled orchestrator behind the proxy with the offline model: real JWTs from a test
//! issuer, the seed policies, the orchestrator verifying the proxy's signed assertion (JWKS
//! fetched from the admin listener), built-in tools, MCP tools of a real MCP server
//! (`examples/mcp-server`, the `mcp` package from PyPI) reached back through the proxy with the
//! caller's own credential, tools the proxy denies, and one trace across proxy → orchestrator →
//! proxy → MCP server.

mod approvals;

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_e2e::issuer::Issuer;
use palisade_e2e::otlp::{self, hex};
use palisade_e2e::peers::{python, workspace};
use palisade_e2e::{client, error_code, sse_client, Proxy, TestProxy};
use palisade_orchestrator::McpServerConfig;
use serde_json::{json, Value};

/// The env var the e2e `mock_weather` reads its credential from.
const WEATHER_KEY_ENV: &str = "PALISADE_E2E_WEATHER_KEY";
const WEATHER_KEY: &str = "wk-e2e-5f1c9a";

/// `examples/mcp-server` on a free port (stateful sessions, SSE answers); killed on drop.
struct McpServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl McpServer {
    fn start() -> Self {
        let script = workspace().join("examples/mcp-server/server.py");
        let mut child = std::process::Command::new(python())
            .arg(script)
            .args(["--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the MCP server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // `ready http://127.0.0.1:PORT/mcp (...)`
        let addr = line
            .split_whitespace()
            .nth(1)
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|u| u.strip_suffix("/mcp"))
            .unwrap_or_else(|| panic!("the MCP server did not report ready: {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Proxy (JWT auth, seed policies) → orchestrator → (MCP through the proxy's `/mcp` route).
struct Stack {
    proxy: Proxy,
    orchestrator: SocketAddr,
    issuer: Issuer,
    _mcp: Option<McpServer>,
}

async fn stack(with_mcp: bool) -> Stack {
    stack_traced(with_mcp, None).await
}

/// Like [`stack`], the proxy and the orchestrator exporting spans to `collector` when given.
async fn stack_traced(with_mcp: bool, collector: Option<&str>) -> Stack {
    let issuer = Issuer::new();
    let mcp = if with_mcp {
        Some(tokio::task::spawn_blocking(McpServer::start).await.unwrap())
    } else {
        None
    };
    let listener = palisade_e2e::orchestrator::Listener::bind().await;
    let orchestrator = listener.addr;
    let mut proxy = TestProxy::new()
        .upstream("orchestrator", orchestrator)
        // The orchestrator gets the caller's credential, to present it on its MCP calls.
        .route_matching(
            "agent",
            "path_prefix: /agent, methods: [POST]",
            "orchestrator",
            "protocol: agui\nauth: required\nforward_credentials: true",
        );
    if let Some(mcp) = &mcp {
        proxy = proxy.upstream("mcp", mcp.addr).route(
            "mcp",
            "/mcp",
            "mcp",
            "protocol: mcp\nauth: required",
        );
    }
    if let Some(collector) = collector {
        proxy = proxy.top_yaml(&format!(
            "tracing:\n  enabled: true\n  endpoint: {collector}\n  protocol: http_protobuf\n  \
             sampling_ratio: 1.0\n"
        ));
    }
    let proxy = proxy.top_yaml(&issuer.yaml()).start();
    let mut cfg = listener.config(0, &proxy);
    // Only assertions the proxy minted for its `agent` route.
    cfg.identity.audiences = vec!["agent".into()];
    cfg.store = palisade_orchestrator::store::StoreConfig::sqlite(":memory:");
    cfg.tools.weather_api_key_env = WEATHER_KEY_ENV.into();
    if let Some(collector) = collector {
        cfg.tracing.otlp_endpoint = Some(collector.to_owned());
        cfg.tracing.export_interval = std::time::Duration::from_millis(50);
    }
    if mcp.is_some() {
        cfg.mcp_servers = vec![McpServerConfig {
            name: "docs".into(),
            url: proxy.url("/mcp"),
            tools_cache: std::time::Duration::from_millis(30_000),
        }];
    }
    listener.serve(cfg);
    Stack {
        proxy,
        orchestrator,
        issuer,
        _mcp: mcp,
    }
}

fn input(text: &str) -> Value {
    json!({
        "threadId": "t1", "runId": uuid_like(), "state": {}, "tools": [], "context": [],
        "forwardedProps": {},
        "messages": [{"id": "m1", "role": "user", "content": text}]
    })
}

fn uuid_like() -> String {
    format!(
        "run-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Runs `text` as `token` through the proxy; the run's events.
async fn run(stack: &Stack, token: &str, text: &str) -> Vec<Value> {
    let resp = client()
        .post(stack.proxy.url("/agent"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .json(&input(text))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{text}");
    let events = sse_client::read(resp, None, Duration::from_secs(20))
        .await
        .json();
    assert_eq!(events.first().unwrap()["type"], "RUN_STARTED", "{events:?}");
    events
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

fn text(events: &[Value]) -> String {
    of_type(events, "TEXT_MESSAGE_CONTENT")
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect()
}

fn last_type(events: &[Value]) -> &str {
    events.last().unwrap()["type"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tool_runs_stream_through_the_proxy() {
    let s = stack(false).await;
    let user = s.issuer.token("alice", &["user"], json!({}));

    let events = run(&s, &user, "hello from behind palisade").await;
    assert_eq!(text(&events), "hello from behind palisade");
    assert_eq!(last_type(&events), "RUN_FINISHED");

    let events = run(&s, &user, "use calculator 2+3*4").await;
    let start = of_type(&events, "TOOL_CALL_START");
    assert_eq!(start.len(), 1, "{events:?}");
    assert_eq!(start[0]["toolCallName"], "calculator");
    assert_eq!(
        of_type(&events, "TOOL_CALL_ARGS")[0]["delta"],
        r#"{"expression":"2+3*4"}"#
    );
    assert_eq!(of_type(&events, "TOOL_CALL_RESULT")[0]["content"], "14");
    assert_eq!(text(&events), "calculator returned: 14");
    assert_eq!(last_type(&events), "RUN_FINISHED");

    // A tool whose credential the orchestrator injects: the answer never carries it.
    std::env::set_var(WEATHER_KEY_ENV, WEATHER_KEY);
    let events = run(&s, &user, "what is the weather in Paris?").await;
    let result = of_type(&events, "TOOL_CALL_RESULT")[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(result.starts_with("Paris: "), "{result}");
    let whole = serde_json::to_string(&events).unwrap();
    assert!(
        !whole.contains(WEATHER_KEY),
        "the credential leaked: {whole}"
    );

    // A plan: steps in order between STEP_STARTED/FINISHED, state snapshots, one summary.
    let events = run(&s, &user, "plan: use get_time; use calculator 1+1").await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..3],
        ["RUN_STARTED", "STATE_SNAPSHOT", "STEP_STARTED"],
        "{types:?}"
    );
    assert_eq!(of_type(&events, "STEP_FINISHED").len(), 2);
    let names: Vec<&str> = of_type(&events, "TOOL_CALL_START")
        .iter()
        .map(|e| e["toolCallName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_time", "calculator"]);
    assert!(text(&events).contains("Plan complete: 1. get_time returned: "));
    assert_eq!(last_type(&events), "RUN_FINISHED");

    // The failure path and the runaway loop end in RUN_ERROR.
    let events = run(&s, &user, "fail").await;
    assert_eq!(last_type(&events), "RUN_ERROR");
    assert_eq!(events.last().unwrap()["code"], "MODEL_ERROR");
    let events = run(&s, &user, "loop").await;
    assert_eq!(events.last().unwrap()["code"], "MAX_ITERATIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_run_through_the_proxy_and_denied_tools_are_filtered() {
    let s = stack(true).await;
    let user = s.issuer.token("alice", &["user"], json!({}));
    let dev = s.issuer.token("dana", &["developer"], json!({}));

    // A real MCP server, listed and called through the proxy as the caller.
    let events = run(&s, &user, "mcp search_docs cedar policies").await;
    let start = of_type(&events, "TOOL_CALL_START");
    assert_eq!(start.len(), 1, "{events:?}");
    assert_eq!(start[0]["toolCallName"], "search_docs");
    assert_eq!(
        of_type(&events, "TOOL_CALL_RESULT")[0]["content"],
        "results for cedar policies"
    );
    assert_eq!(
        text(&events),
        "search_docs returned: results for cedar policies"
    );

    // `write_file` is high risk: the proxy lists it to no one here and drops the call from the
    // AG-UI stream (use_tool denied), so the user never sees it; the run still finishes.
    let events = run(
        &s,
        &user,
        r#"mcp write_file {"path": "/tmp/x", "content": "hi"}"#,
    )
    .await;
    assert!(of_type(&events, "TOOL_CALL_START").is_empty(), "{events:?}");
    assert!(
        of_type(&events, "TOOL_CALL_RESULT").is_empty(),
        "{events:?}"
    );
    assert_eq!(last_type(&events), "RUN_FINISHED");

    // A developer may use read_file, but the proxy refuses the MCP call for a system path
    // (ABAC no-system-paths); the refusal goes back to the model as a tool error.
    let events = run(&s, &dev, r#"mcp read_file {"path": "/srv/a.txt"}"#).await;
    assert_eq!(
        of_type(&events, "TOOL_CALL_RESULT")[0]["content"],
        "contents of /srv/a.txt"
    );
    let events = run(&s, &dev, r#"mcp read_file {"path": "/etc/shadow"}"#).await;
    assert_eq!(
        of_type(&events, "TOOL_CALL_START")[0]["toolCallName"],
        "read_file"
    );
    let refused = of_type(&events, "TOOL_CALL_RESULT")[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        refused.starts_with("error: ")
            && (refused.contains("-32030") || refused.contains("FORBIDDEN")),
        "{refused}"
    );
    assert!(text(&events).starts_with("The tool read_file failed"));
    assert_eq!(last_type(&events), "RUN_FINISHED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_calls_without_the_proxys_assertion_are_refused() {
    let s = stack(false).await;
    let direct = format!("http://{}/agent", s.orchestrator);
    let user_token = s.issuer.token("alice", &["user"], json!({}));
    for assertion in [None, Some("garbage"), Some(user_token.as_str())] {
        let mut req = client().post(&direct).json(&input("hi"));
        if let Some(a) = assertion {
            req = req.header("x-palisade-assertion", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "assertion {assertion:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UNAUTHENTICATED", "{body}");
    }
    // Through the proxy without a token: the proxy refuses first.
    let resp = client()
        .post(s.proxy.url("/agent"))
        .json(&input("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "UNAUTHENTICATED");
    // The orchestrator is ready (it fetched the proxy's keys) and counts the refusals.
    let ready = client()
        .get(format!("http://{}/readyz", s.orchestrator))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = client()
        .get(format!("http://{}/metrics", s.orchestrator))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("palisade_orchestrator_requests_refused_total{reason=\"unauthenticated\"} 3"),
        "{metrics}"
    );
}

// ---- one trace across the hops ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_proxy_orchestrator_and_the_mcp_call() {
    const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
    let (collector, spans) = otlp::http_receiver().await;
    let collector = format!("http://{collector}");
    let s = stack_traced(true, Some(&collector)).await;
    let user = s.issuer.token("alice", &["user"], json!({}));
    let resp = client()
        .post(s.proxy.url("/agent"))
        .bearer_auth(&user)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&input("mcp search_docs tracing"))
        .send()
        .await
        .unwrap();
    let events = sse_client::read(resp, None, Duration::from_secs(20))
        .await
        .json();
    assert_eq!(last_type(&events), "RUN_FINISHED", "{events:?}");
    // Stopping the proxy flushes its exporter; the orchestrator exports every 50 ms.
    let Stack { proxy, _mcp, .. } = s;
    proxy.stop().await;

    let find = |name: &str| -> Option<opentelemetry_proto::tonic::trace::v1::Span> {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name)
            .cloned()
    };
    let mut tool = None;
    for _ in 0..500 {
        tool = find("tool.call");
        if tool.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tool = tool.expect("the orchestrator exported its tool span");
    let run = find("agent.run").expect("and its run span");
    let all = spans.lock().unwrap().clone();
    for span in [&run, &tool] {
        assert_eq!(hex(&span.trace_id), TRACE, "{}", span.name);
    }
    assert_eq!(tool.parent_span_id, run.span_id);
    // The run's parent is a span of the proxy (the /agent request) in the same trace…
    let parent = all
        .iter()
        .find(|p| p.span_id == run.parent_span_id)
        .expect("the run's parent span was exported by the proxy");
    assert_eq!(hex(&parent.trace_id), TRACE);
    // …and the proxy's span for the MCP call back through it has the tool call as its parent.
    let mcp_hop = all
        .iter()
        .find(|p| p.parent_span_id == tool.span_id)
        .expect("the proxy continued the tool call's traceparent on /mcp");
    assert_eq!(hex(&mcp_hop.trace_id), TRACE);
}
