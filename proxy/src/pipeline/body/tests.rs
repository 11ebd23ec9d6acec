//! The event chain reads each event once: every inspector works on the relay's one parse.

use std::sync::Arc;

use super::*;
use crate::config::stages::{Core, Generation, Services, States};
use crate::config::Config;
use crate::protocol::json::PARSES;
use crate::protocol::relay::Reading;
use crate::stage::{Exchange, Stage};
use crate::telemetry::Metrics;

/// An AG-UI route with the repository's policies, the default guardrails and an audit file,
/// in front of nothing: its whole [`Stages`], built as a configuration builds them.
fn stages(runtime: &tokio::runtime::Runtime, audit: &std::path::Path) -> (Config, Stages) {
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    let yaml = format!(
        "listeners: [{{name: p, address: '127.0.0.1:0'}}]\n\
         upstreams: {{agent: {{address: '127.0.0.1:9'}}}}\n\
         routes:\n  - name: agent\n    match: {{path_prefix: /agent}}\n    upstream: agent\n    \
         protocol: agui\n    authorization: {{agent: assistant}}\n\
         authorization:\n  policy_sets: [{{name: main, path: '{policies}', mode: enforce}}]\n\
         guardrails: {{default_rule_set: default}}\n\
         audit: {{file: {{path: '{}'}}}}\n",
        audit.display()
    );
    let config = Config::from_yaml(&yaml, Vec::new()).expect("valid config");
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let core = Core {
        metrics: metrics.clone(),
        lifecycle: crate::lifecycle::Lifecycle::new(),
        authn: Arc::new(crate::authn::Authenticator::new(&config.authentication).unwrap()),
        authz: config.authz.clone(),
        audit: Arc::new(
            crate::audit::Auditor::start(&config.audit, metrics.audit.clone()).unwrap(),
        ),
        tracing: Arc::new(crate::telemetry::otel::Tracing::start(None, runtime.handle()).unwrap()),
    };
    let services = Services::start(core, &config.stages, runtime.handle()).unwrap();
    let limiter = crate::ratelimit::RateLimiter::new(config.rate_limits.clone(), metrics).unwrap();
    let generation = Generation {
        routes: &config.routes,
        stages: &config.stages,
        edge: &config.edge,
        hash: "test",
    };
    let stages = Stages::build(generation, &services, Arc::new(limiter));
    (config, stages)
}

#[test]
fn each_event_is_parsed_once_through_the_whole_chain() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, stages) = stages(&runtime, &dir.path().join("audit.jsonl"));
    let route = config.routes.routes()[0].clone();
    let mut principal = crate::principal::Principal::new(
        crate::principal::PrincipalKind::User,
        "https://idp.test|alice",
        crate::principal::AuthMethod::Jwt,
    );
    principal.roles = vec!["developer".into()];
    let x = Exchange {
        request_id: "r",
        trace_id: "",
        route: &route,
        principal: Some(&principal),
        client_ip: None,
        forwarded: false,
        tls: false,
        method: &http::Method::POST,
        path: "/agent",
    };
    let mut states = States::default();
    let req = pingora_http::RequestHeader::build("POST", b"/agent", None).unwrap();
    runtime
        .block_on(stages.authz.on_request(&x, &mut states.authz, &req))
        .expect("a developer may run the agent");
    let head = ResponseHead {
        status: 200,
        is_sse: true,
    };
    let mut resp = ResponseHeader::build(200, None).unwrap();
    stages
        .on_response(&x, &mut states, &head, &mut resp)
        .unwrap();
    assert!(
        states.guard.inspects_response(),
        "the stream is under guardrails"
    );

    // Text (scanned by guardrails), a tool call (decided by authorization, noted by audit), a
    // snapshot (both), pretty-printed and escaped events among them: 7 events, 7 parses.
    let stream = concat!(
        "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n",
        "data: {\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\",\"role\":\"assistant\"}\n\n",
        "data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\n",
        "data:  \"messageId\":\"m\",\"delta\":\"hello there\"}\n\n",
        "data: {\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"m\"}\n\n",
        "data: {\"type\":\"TOOL\\u005fCALL\\u005fSTART\",\n",
        "data:  \"toolCallId\":\"c1\",\"toolCallName\":\"search_docs\"}\n\n",
        "data: {\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":\"u\",\"role\":\"assistant\",\"content\":\"hi\"}]}\n\n",
        ": heartbeat\n\n",
        "data: {\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n",
    );
    let mut relay = SseRelay::new(Reading::Json, true);
    PARSES.with(|n| n.set(0));
    let mut items = relay.parse(stream.as_bytes()).unwrap();
    stages.on_events(&x, &mut states, &mut items, true).unwrap();
    let out = relay.encode(&items);
    assert_eq!(relay.events(), 7);
    assert_eq!(
        PARSES.with(|n| n.get()),
        7,
        "one parse per event, none in the filters"
    );
    assert_eq!(relay.parses(), 7);
    // The chain did its work on that one parse.
    assert_eq!(
        states.audit.0,
        [("c1".to_string(), "search_docs".to_string())]
    );
    assert!(
        !states.authz.body_decisions.is_empty(),
        "the tool call was decided"
    );
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        text.contains("\"type\":\"TOOL_CALL_START\""),
        "re-encoded: {text}"
    );
    assert!(relay.terminal_seen());
}
