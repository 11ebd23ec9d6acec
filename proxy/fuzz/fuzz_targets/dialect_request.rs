//! Fuzzes the one reading of a request body that every inspector shares: strict JSON
//! (`protocol::json::parse`), the body of each dialect (`protocol::message::Message::parse` for
//! AG-UI, MCP and A2A), MCP classification and `Mcp-*` headers, and A2A method → action, in the
//! JSON-RPC and the HTTP+JSON (REST) bindings.
//!
//! Input layout: one byte picks the HTTP method of the REST request, then the request path up to
//! the first `\n`, then the body. Beyond "never panics":
//! - strict JSON accepts a document exactly when a plain `serde_json` parse does and no object in
//!   it repeats a key (at any depth), and then reads the same value;
//! - what a dialect accepts re-encodes (`Message::encode`, what goes upstream) to bytes that
//!   parse again to the same message — so the upstream reads what the stages decided on — and
//!   encoding is idempotent, floats included (`support/floats.rs`: this target found that
//!   `serde_json` without `float_roundtrip` reads them back an ULP off);
//! - every JSON-RPC message classifies (MCP) and maps to an A2A action the same before and after
//!   re-encoding, `classify` names the tool `params.name` names, and the `Mcp-Method` /
//!   `Mcp-Name` headers that describe a single-message body are accepted when they are text
//!   (visible ASCII), a different method refused;
//! - the REST action only exists for GET/POST/DELETE, ignores a trailing `/` and any prefix the
//!   route adds in front of the path.

#![no_main]

use std::fmt;

#[path = "support/floats.rs"]
mod floats;

use libfuzzer_sys::fuzz_target;
use palisade_proxy::protocol::message::Message;
use palisade_proxy::protocol::{a2a, json, jsonrpc, mcp, RouteProtocol};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let [method, rest @ ..] = data else {
        return;
    };
    let (path, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b""[..], rest),
    };
    strict_json_is_the_one_reading(body);
    for protocol in [RouteProtocol::Agui, RouteProtocol::Mcp, RouteProtocol::A2a] {
        body_round_trips(protocol, body);
    }
    if let Ok(path) = std::str::from_utf8(path) {
        rest_binding(*method, path);
    }
});

fn strict_json_is_the_one_reading(body: &[u8]) {
    let strict = json::parse(body);
    let lenient = serde_json::from_slice::<Value>(body);
    let tree = serde_json::from_slice::<Tree>(body);
    match (&strict, &lenient, &tree) {
        (Ok(s), Ok(l), Ok(t)) => {
            assert_eq!(s, l, "strict and plain readings differ");
            assert!(!t.repeats_a_key(), "a repeated key was accepted");
        }
        (Ok(_), _, _) => panic!("strict JSON accepted what serde_json refuses: {lenient:?}"),
        (Err(e), Ok(_), Ok(t)) => assert!(
            t.repeats_a_key(),
            "strict JSON refused a document without a repeated key: {e}"
        ),
        (Err(_), _, _) => {}
    }
}

fn body_round_trips(protocol: RouteProtocol, body: &[u8]) {
    let message = match Message::parse(protocol, body) {
        Ok(Some(message)) => message,
        Ok(None) => {
            assert!(
                body.iter().all(u8::is_ascii_whitespace),
                "a body read as none"
            );
            return;
        }
        Err(_) => return,
    };
    let once = message.encode();
    let again = Message::parse(protocol, &once)
        .expect("the re-encoded body parses")
        .expect("the re-encoded body is not empty");
    let (value, forwarded_value) = (value_of(&message), value_of(&again));
    assert!(
        floats::same(&forwarded_value, &value),
        "re-encoded as {once:?}: {forwarded_value:?} is not {value:?}"
    );
    if floats::bytes_are_stable(&value) {
        assert_eq!(again, message, "re-encoded as {once:?}");
        assert_eq!(again.encode(), once, "encoding is not idempotent");
    }

    let (Some(batch), Some(forwarded)) = (message.jsonrpc(), again.jsonrpc()) else {
        assert_eq!(protocol, RouteProtocol::Agui);
        return;
    };
    assert_eq!(batch.batch, forwarded.batch);
    assert_eq!(batch.messages.len(), forwarded.messages.len());
    for (m, f) in batch.messages.iter().zip(&forwarded.messages) {
        let call = mcp::classify(m);
        let same_call = match (&call, &mcp::classify(f)) {
            (
                Ok(mcp::Call::Tool { name, arguments }),
                Ok(mcp::Call::Tool {
                    name: n,
                    arguments: a,
                }),
            ) => {
                name == n
                    && match (arguments, a) {
                        (Some(x), Some(y)) => floats::same(x, y),
                        (x, y) => x == y,
                    }
            }
            (c, d) => c == d,
        };
        assert!(same_call, "MCP reads the forwarded body otherwise");
        let method = jsonrpc::method(m);
        assert_eq!(a2a::action(method), a2a::action(jsonrpc::method(f)));
        let name = m.pointer("/params/name").and_then(Value::as_str);
        match call {
            Ok(mcp::Call::Tool {
                name: tool,
                arguments,
            }) => {
                assert_eq!(method, "tools/call");
                assert_eq!(Some(tool), name);
                assert_eq!(arguments, m.pointer("/params/arguments"));
            }
            Ok(mcp::Call::ListTools) => assert_eq!(method, "tools/list"),
            Ok(mcp::Call::Other) => assert!(!matches!(method, "tools/call" | "tools/list")),
            Err(_) => assert!(method == "tools/call" && name.is_none()),
        }
    }
    if !batch.batch {
        headers_describing_the_body_are_accepted(batch);
    }
}

/// The JSON a message holds (a batch as its array).
fn value_of(message: &Message) -> Value {
    match message {
        Message::Agui(v) => v.clone(),
        Message::JsonRpc(batch) => batch.to_value(),
    }
}

fn headers_describing_the_body_are_accepted(batch: &jsonrpc::Batch) {
    let m = &batch.messages[0];
    let method = jsonrpc::method(m);
    // Header values are visible ASCII: a client cannot describe other names in them (and
    // `check_headers` refuses a value that is not text).
    let text = |s: &str| {
        http::HeaderValue::from_str(s)
            .ok()
            .filter(|v| v.to_str().is_ok())
    };
    let mut headers = http::HeaderMap::new();
    if let Some(v) = m
        .pointer("/params/name")
        .and_then(Value::as_str)
        .and_then(text)
    {
        headers.insert("mcp-name", v);
    }
    if let Some(v) = text(method) {
        headers.insert("mcp-method", v);
    }
    assert_eq!(mcp::check_headers(&headers, batch), Ok(()));
    if let Some(other) = text(&format!("{method}x")) {
        headers.insert("mcp-method", other);
        assert!(mcp::check_headers(&headers, batch).is_err(), "{method:?}x");
    }
}

fn rest_binding(method: u8, path: &str) {
    let method = match method % 5 {
        0 => http::Method::GET,
        1 => http::Method::POST,
        2 => http::Method::DELETE,
        3 => http::Method::PUT,
        _ => http::Method::PATCH,
    };
    let action = a2a::rest_action(&method, path);
    if let Some(a) = action {
        assert!(
            matches!(a, "a2a_send" | "a2a_stream" | "a2a_cancel" | "a2a_get_task"),
            "{a}"
        );
        assert!(
            matches!(method.as_str(), "GET" | "POST" | "DELETE"),
            "{method} {path}"
        );
    }
    assert_eq!(
        a2a::rest_action(&method, &format!("{path}/")),
        action,
        "{path}/"
    );
    if path.starts_with('/') {
        let prefixed = format!("/api/agents{path}");
        assert_eq!(a2a::rest_action(&method, &prefixed), action, "{prefixed}");
    }
}

/// A JSON document with every object entry kept, in order (a duplicate key included): what a
/// reader that keeps the first — or the last — of two equal keys sees.
enum Tree {
    Leaf,
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    fn repeats_a_key(&self) -> bool {
        match self {
            Tree::Leaf => false,
            Tree::Array(items) => items.iter().any(Tree::repeats_a_key),
            Tree::Object(entries) => {
                entries
                    .iter()
                    .enumerate()
                    .any(|(i, (k, _))| entries[..i].iter().any(|(seen, _)| seen == k))
                    || entries.iter().any(|(_, v)| v.repeats_a_key())
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_str<E>(self, _: &str) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Tree::Object(entries))
    }
}
