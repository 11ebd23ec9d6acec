//! Fuzzes the event chain of an AG-UI response as the pipeline runs it (`pipeline::body`):
//! each upstream chunk parsed once by the relay, then authorization's stream filter (denied tool
//! calls dropped, or the run ended with `RUN_ERROR` `FORBIDDEN`), then the guardrails' AG-UI
//! filter (the built-in `default` rule set), then encoded for the client; an `Err` of the chain
//! ends the stream after the items it left.
//!
//! The stages are built once from a configuration (the repository's built-in policies, two
//! `agui` routes — `denied_tool_call: drop` and `run_error` — and `default` guardrails); the
//! caller is a `developer`, who may use low- and medium-risk catalogued tools only.
//!
//! Input layout: 8 header bytes, then an SSE stream of AG-UI events. The target reads the
//! stream, takes every uppercase `K` out of its strings (so the fuzzer cannot write an AWS key
//! itself), and writes a fresh AWS access key id ("AKIA" + 16 characters from the header) into
//! one text-bearing event (a delta, split over up to three consecutive events, or a tool
//! result). The stream is then fed through the chain twice: cut into chunks at fuzzed offsets,
//! and whole. Beyond "never panics":
//! - "AKIA" never reaches the client, whatever the chunking and the split of the deltas (a
//!   secret in the output stops the stream before any of it is relayed);
//! - no `TOOL_CALL_START` / `TOOL_CALL_CHUNK` and no `MESSAGES_SNAPSHOT` tool call the client
//!   receives names a tool the policies deny the caller;
//! - a guardrail stop ends the output with its closing items and nothing after them
//!   (`CUSTOM` `GUARDRAIL_VIOLATION`, the stop message, `RUN_ERROR` `GUARDRAIL_VIOLATION`); a
//!   `run_error` denial ends it with `RUN_ERROR` `FORBIDDEN`;
//! - the chunking does not change what the client receives, byte for byte.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_proxy::authz::stage::{facts, AuthzStage, State as AuthzState};
use palisade_proxy::authz::{AuthzRequest, RequestFacts, Resource, ResourceKind};
use palisade_proxy::config::Config;
use palisade_proxy::error::ProxyError;
use palisade_proxy::guardrails::{GuardrailsStage, State as GuardState};
use palisade_proxy::principal::{AuthMethod, Principal, PrincipalKind};
use palisade_proxy::protocol::event::{Item, StreamEvent};
use palisade_proxy::protocol::relay::{Reading, SseRelay};
use palisade_proxy::stage::{Exchange, ResponseHead, Stage};
use palisade_proxy::telemetry::Metrics;
use serde_json::{Map, Value};

const CONFIG: &str = "\
listeners: [{name: p, address: '127.0.0.1:0'}]
upstreams: {agent: {address: '127.0.0.1:9'}}
routes:
  - name: drop
    match: {path_prefix: /drop}
    upstream: agent
    protocol: agui
    authorization: {agent: assistant}
  - name: run_error
    match: {path_prefix: /run-error}
    upstream: agent
    protocol: agui
    authorization: {agent: assistant, denied_tool_call: run_error}
authorization:
  policy_sets: [{name: main, path: builtin, mode: enforce}]
guardrails: {default_rule_set: default}
";

/// The stop's closing frames are numbered by request id.
const REQUEST_ID: &str = "fuzz";

/// AG-UI event types that carry streamed text, with their id field.
const TEXT_EVENTS: [(&str, &str); 6] = [
    ("TEXT_MESSAGE_CONTENT", "messageId"),
    ("REASONING_MESSAGE_CONTENT", "messageId"),
    ("TOOL_CALL_ARGS", "toolCallId"),
    ("TEXT_MESSAGE_CHUNK", "messageId"),
    ("REASONING_MESSAGE_CHUNK", "messageId"),
    ("TOOL_CALL_CHUNK", "toolCallId"),
];

struct Fixture {
    config: Config,
    authz: AuthzStage,
    guard: GuardrailsStage,
    principal: Principal,
    /// The request facts of each route, at a fixed time (decisions do not depend on the clock).
    facts: Vec<RequestFacts>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = Config::from_yaml(CONFIG, Vec::new()).expect("the fuzz config is valid");
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        let authz = AuthzStage::new(
            config.authz.clone(),
            config.stages.per_route.authz.clone(),
            metrics.clone(),
        );
        let guard = GuardrailsStage::new(config.stages.per_route.guardrails.clone(), metrics);
        let mut principal = Principal::new(
            PrincipalKind::User,
            "https://idp.test|fuzz",
            AuthMethod::Jwt,
        );
        principal.roles = vec!["developer".into()];
        let facts = config
            .routes
            .routes()
            .iter()
            .map(|route| {
                let mut f = facts(&exchange(route, &principal), 0);
                // A Tuesday, 10:00 UTC.
                f.time = time::OffsetDateTime::from_unix_timestamp(1_700_042_400).expect("a time");
                f
            })
            .collect();
        Fixture {
            config,
            authz,
            guard,
            principal,
            facts,
        }
    })
}

fn exchange<'a>(route: &'a palisade_proxy::route::Route, principal: &'a Principal) -> Exchange<'a> {
    Exchange {
        request_id: REQUEST_ID,
        trace_id: "",
        route,
        principal: Some(principal),
        client_ip: None,
        forwarded: false,
        tls: false,
        method: &http::Method::POST,
        path: "/agent",
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<8>() else {
        return;
    };
    let f = fixture();
    let route = usize::from(head[0] & 1);
    let Ok(mut items) = SseRelay::new(Reading::Json, true).parse(stream) else {
        return;
    };
    items.iter_mut().for_each(without_uppercase_k);
    let secret = secret(head[1]);
    plant(&mut items, &secret, head[2], head[3], [head[4], head[5]]);
    let upstream = SseRelay::new(Reading::Json, true).encode(&items);

    let mut at: Vec<usize> = (0..head[6] % 8)
        .scan(u32::from(head[7]) + 1, |seed, _| {
            *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            Some(*seed as usize % (upstream.len() + 1))
        })
        .chain([0, upstream.len()])
        .collect();
    at.sort_unstable();
    let chunks: Vec<&[u8]> = at.windows(2).map(|w| &upstream[w[0]..w[1]]).collect();

    let (out, end) = chain(f, route, &chunks);
    let (whole, whole_end) = chain(f, route, &[&upstream[..]]);
    assert_eq!(
        (String::from_utf8_lossy(&out), &end),
        (String::from_utf8_lossy(&whole), &whole_end),
        "chunked at {at:?} / whole"
    );

    assert!(
        !out.windows(4).any(|w| w == b"AKIA"),
        "the secret {secret} reached the client: {}",
        String::from_utf8_lossy(&out)
    );
    let items = SseRelay::new(Reading::Json, true)
        .parse(&out)
        .expect("the client's stream parses");
    let events: Vec<&StreamEvent> = items.iter().filter_map(Item::event).collect();
    for e in &events {
        for name in tools_named(e) {
            assert!(allowed(f, route, name), "denied tool {name:?} relayed");
        }
    }
    match end {
        Ok(()) => {}
        Err(ProxyError::GuardrailViolation) => {
            let kinds: Vec<&str> = items
                .iter()
                .rev()
                .take(5)
                .map(|i| i.event().map_or("comment", StreamEvent::kind))
                .collect();
            assert_eq!(
                kinds,
                [
                    "RUN_ERROR",
                    "TEXT_MESSAGE_END",
                    "TEXT_MESSAGE_CONTENT",
                    "TEXT_MESSAGE_START",
                    "CUSTOM"
                ],
                "a stop ends with its closing items"
            );
            let [custom, start, .., run_error] = &events[events.len() - 5..] else {
                unreachable!()
            };
            assert_eq!(custom.str_field("name"), Some("GUARDRAIL_VIOLATION"));
            assert_eq!(
                start.str_field("messageId"),
                Some(format!("guardrail-{REQUEST_ID}").as_str())
            );
            assert_eq!(run_error.str_field("code"), Some("GUARDRAIL_VIOLATION"));
        }
        Err(ProxyError::Forbidden) => {
            assert_eq!(
                route, 1,
                "only a run_error route ends the run on a denied call"
            );
            let last = events.last().expect("the RUN_ERROR");
            assert_eq!(last.kind(), "RUN_ERROR");
            assert_eq!(last.str_field("code"), Some("FORBIDDEN"));
        }
        Err(other) => panic!("the chain ended with {other:?}"),
    }
});

/// The event chain over `chunks` of one response: what the client receives, and how the chain
/// ended the stream (`Err`: after the items it left).
fn chain(f: &Fixture, route: usize, chunks: &[&[u8]]) -> (Vec<u8>, Result<(), ProxyError>) {
    let x = exchange(&f.config.routes.routes()[route], &f.principal);
    let mut authz_state = AuthzState::default();
    authz_state.facts = Some(f.facts[route].clone());
    let mut guard_state = GuardState::default();
    let mut resp = pingora_http::ResponseHeader::build(200, None).expect("a head");
    let head = ResponseHead {
        status: 200,
        is_sse: true,
    };
    f.guard
        .on_response(&x, &mut guard_state, &head, &mut resp)
        .expect("guardrails accept the head");
    assert!(guard_state.inspects_response());
    let mut relay = SseRelay::new(Reading::Json, true);
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let end = i + 1 == chunks.len();
        let mut items = relay.parse(chunk).expect("the upstream stream parses");
        let authz_end = f.authz.on_events(&x, &mut authz_state, &mut items, end);
        let guard_end =
            f.guard
                .on_events(&x, &mut guard_state, &mut items, end || authz_end.is_err());
        out.extend_from_slice(&relay.encode(&items));
        let ended = guard_end.and(authz_end);
        if ended.is_err() {
            return (out, ended);
        }
    }
    (out, Ok(()))
}

/// Whether the policies let the caller use the tool `name` (the oracle: the same decision the
/// stage asks for, made here independently of the stream).
fn allowed(f: &Fixture, route: usize, name: &str) -> bool {
    let authz = f.authz.policies().expect("policies are configured");
    !authz
        .decide(&AuthzRequest {
            principal: Some(&f.principal),
            action: "use_tool",
            resource: &Resource::new(ResourceKind::Tool, name),
            facts: &f.facts[route],
            arguments: None,
        })
        .blocks()
}

/// The tool names an event shows the client: a started call's, or a snapshot's tool calls'.
fn tools_named<'a>(e: &'a StreamEvent) -> Vec<&'a str> {
    match e.kind() {
        "TOOL_CALL_START" | "TOOL_CALL_CHUNK" => e.str_field("toolCallName").into_iter().collect(),
        "MESSAGES_SNAPSHOT" => e
            .value()
            .and_then(|v| v.get("messages"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("toolCalls").and_then(Value::as_array))
            .flatten()
            .filter_map(|c| c.pointer("/function/name").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    }
}

/// An AWS access key id the built-in `secret.aws_access_key` rule matches.
fn secret(seed: u8) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = u32::from(seed) | 0x9e37_7900;
    let body: String = (0..16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from(ALPHABET[state as usize % ALPHABET.len()])
        })
        .collect();
    format!("AKIA{body}")
}

/// Writes ` secret ` into one text-bearing event (the `pick`th): inside its delta at `offset`,
/// the delta then split at `cuts` over consecutive events of the same message or call; or into
/// a tool result's content.
fn plant(items: &mut Vec<Item>, secret: &str, pick: u8, offset: u8, cuts: [u8; 2]) {
    let carriers: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            item.event().is_some_and(|e| {
                e.kind() == "TOOL_CALL_RESULT" || TEXT_EVENTS.iter().any(|(t, _)| *t == e.kind())
            })
        })
        .map(|(at, _)| at)
        .collect();
    if carriers.is_empty() {
        return;
    }
    let at = carriers[usize::from(pick) % carriers.len()];
    let Item::Event(event) = &items[at] else {
        return;
    };
    let mut event = event.clone();
    let Some(json) = event.value_mut().and_then(Value::as_object_mut) else {
        return;
    };
    let kind = json["type"].as_str().unwrap_or_default().to_string();
    let field = if kind == "TOOL_CALL_RESULT" {
        "content"
    } else {
        "delta"
    };
    let text = json.get(field).and_then(Value::as_str).unwrap_or_default();
    let text = insert_at(text, usize::from(offset), &format!(" {secret} "));
    if kind == "TOOL_CALL_RESULT" {
        json.insert(field.into(), Value::String(text));
        items[at] = Item::Event(event);
        return;
    }
    let id_field = TEXT_EVENTS
        .iter()
        .find(|(t, _)| *t == kind)
        .map_or("messageId", |(_, id)| id);
    if !json.get(id_field).is_some_and(Value::is_string) {
        json.insert(id_field.into(), Value::from("carrier"));
    }
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|c| floor_char_boundary(&text, usize::from(*c) % (text.len() + 1)))
        .chain([0, text.len()])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let pieces: Vec<Item> = bounds
        .windows(2)
        .map(|w| {
            let mut piece = event.clone();
            if let Some(Value::Object(json)) = piece.value_mut() {
                json.insert("delta".into(), Value::from(&text[w[0]..w[1]]));
            }
            Item::Event(piece)
        })
        .collect();
    items.splice(at..=at, pieces);
}

fn insert_at(text: &str, offset: usize, what: &str) -> String {
    let at = floor_char_boundary(text, offset % (text.len() + 1));
    format!("{}{what}{}", &text[..at], &text[at..])
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Lower-cases every `K` in an item's strings, except in the AG-UI event types that have one
/// (`*_CHUNK`): then only the target writes "AKIA" into the stream.
fn without_uppercase_k(item: &mut Item) {
    let clean = |s: &mut String| {
        if s.contains('K') {
            *s = s.replace('K', "k");
        }
    };
    match item {
        Item::Comment(text) => clean(text),
        Item::Event(event) => {
            for field in [&mut event.name, &mut event.id].into_iter().flatten() {
                clean(field);
            }
            if let Some(json) = event.value_mut() {
                clean_value(json, &clean);
            }
        }
    }
}

fn clean_value(value: &mut Value, clean: &impl Fn(&mut String)) {
    match value {
        Value::String(s) => clean(s),
        Value::Array(list) => list.iter_mut().for_each(|v| clean_value(v, clean)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            let mut cleaned = Map::new();
            for (mut key, mut v) in entries {
                let known_type = key == "type"
                    && v.as_str()
                        .is_some_and(|t| TEXT_EVENTS.iter().any(|(k, _)| *k == t));
                if !known_type {
                    clean_value(&mut v, clean);
                }
                clean(&mut key);
                cleaned.insert(key, v);
            }
            *map = cleaned;
        }
        _ => {}
    }
}
