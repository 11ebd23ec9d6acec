//! Scanning free-form JSON: every string of a value and every object key, at one location.
//!
//! Fields whose shape the guard does not know specifically — AG-UI `state`, `forwardedProps`,
//! `context` and tool definitions, A2A data parts and metadata, MCP argument objects, and on the
//! response side events of types it does not know — are walked whole, so text a model may read
//! is never relayed unscanned because of where it sits. Redactions edit the value in place; a
//! key whose redaction would collide with a key already there refuses (the value cannot be kept
//! without merging two fields). Depth is bounded by the parser and the request checks.

use serde_json::{Map, Value};

use super::detect::{RuleSet, Side};
use super::scan::{scan_text, Scanned};
use super::spec::Location;

/// Where walking a value lands its results.
pub struct Walk<'a> {
    /// The rule set.
    pub rs: &'a RuleSet,
    /// Which side of the exchange.
    pub side: Side,
    /// Where the text counts as.
    pub location: Location,
    /// What fired, and the first refusing rule (text stays `None`).
    pub found: Scanned,
    /// Whether something was redacted in place.
    pub changed: bool,
}

impl<'a> Walk<'a> {
    /// A walk over text at `location` on `side`.
    pub fn new(rs: &'a RuleSet, side: Side, location: Location) -> Self {
        Self {
            rs,
            side,
            location,
            found: Scanned::default(),
            changed: false,
        }
    }

    /// Scans one string in place.
    pub fn string(&mut self, s: &mut String) {
        let scanned = scan_text(self.rs, s, self.side, self.location);
        self.found.absorb(&scanned);
        if let Some(text) = scanned.text {
            *s = text;
            self.changed = true;
        }
    }

    /// Scans every string and key under `value`.
    pub fn value(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => self.string(s),
            Value::Array(list) => list.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => self.object(map, &[]),
            _ => {}
        }
    }

    /// Scans every key and value of `map` except the entries named in `skip` (structural
    /// fields: ids, types), whose values are left to the caller.
    pub fn object(&mut self, map: &mut Map<String, Value>, skip: &[&str]) {
        self.object_except(map, |k| skip.contains(&k));
    }

    /// [`Walk::object`] with the skipped entries chosen by `skip`.
    pub fn object_except(&mut self, map: &mut Map<String, Value>, skip: impl Fn(&str) -> bool) {
        let mut renamed = false;
        for (key, v) in map.iter_mut() {
            if skip(key) {
                continue;
            }
            renamed |= self.key(key);
            self.value(v);
        }
        if renamed {
            self.rename_keys(map, skip);
        }
    }

    /// Adds what another walk found.
    pub fn absorb(&mut self, other: Walk<'_>) {
        self.found.absorb(&other.found);
        self.changed |= other.changed;
    }

    /// An AG-UI content part: text parts whole, other parts (images, files) all but their
    /// inline `data`, a binary payload rather than text.
    pub fn content_part(&mut self, part: &mut Value) {
        match part {
            Value::Object(map) if map.get("type").and_then(Value::as_str) != Some("text") => {
                self.object(map, &["type", "data"]);
            }
            Value::Object(map) => self.object(map, &["type"]),
            other => self.value(other),
        }
    }

    /// Scans a key; whether it must be renamed (a redaction applies).
    fn key(&mut self, key: &str) -> bool {
        let scanned = scan_text(self.rs, key, self.side, self.location);
        self.found.absorb(&scanned);
        scanned.text.is_some()
    }

    /// Rebuilds `map` with its keys redacted (order kept). A redacted key that collides with
    /// another refuses, under the rule that redacted it.
    fn rename_keys(&mut self, map: &mut Map<String, Value>, skip: impl Fn(&str) -> bool) {
        let old = std::mem::take(map);
        let mut redacting = None;
        for (key, v) in old {
            let mut key = key;
            if !skip(&key) {
                let scanned = scan_text(self.rs, &key, self.side, self.location);
                if let Some(redacted) = scanned.text {
                    self.changed = true;
                    redacting = redacting.or(scanned.fired.first().map(|f| f.rule));
                    key = redacted;
                }
            }
            if map.contains_key(&key) {
                self.found.refused = self.found.refused.or(redacting);
            }
            map.insert(key, v);
        }
    }
}

/// What scanning one AG-UI message found, by part of the message.
pub struct MessageScan<'a> {
    /// Its `content` (text, or parts).
    pub content: Walk<'a>,
    /// Its `toolCalls`: arguments as tool arguments, names as the message's text.
    pub tool_calls: Walk<'a>,
    /// Every other field (keys too) but its ids and role.
    pub rest: Walk<'a>,
}

impl MessageScan<'_> {
    /// Whether a rule refuses.
    pub fn refused(&self) -> Option<usize> {
        self.content
            .found
            .refused
            .or(self.tool_calls.found.refused)
            .or(self.rest.found.refused)
    }
}

/// Fields of an AG-UI message scanned on their own, or (ids and the role) not at all.
const MESSAGE_FIELDS: &[&str] = &["id", "role", "toolCallId", "content", "toolCalls"];

/// Scans an AG-UI message — of a request's history or a `MESSAGES_SNAPSHOT` — whatever its
/// role, its text at `location`.
pub fn agui_message<'a>(
    rs: &'a RuleSet,
    side: Side,
    location: Location,
    m: &mut Value,
) -> MessageScan<'a> {
    let mut scan = MessageScan {
        content: Walk::new(rs, side, location),
        tool_calls: Walk::new(rs, side, location),
        rest: Walk::new(rs, side, location),
    };
    let Some(obj) = m.as_object_mut() else {
        scan.rest.value(m);
        return scan;
    };
    match obj.get_mut("content") {
        Some(Value::Array(parts)) => parts.iter_mut().for_each(|p| scan.content.content_part(p)),
        Some(other) => scan.content.value(other),
        None => {}
    }
    if let Some(calls) = obj.get_mut("toolCalls") {
        let mut args = Walk::new(rs, side, Location::ToolArguments);
        match calls {
            Value::Array(calls) => calls
                .iter_mut()
                .for_each(|c| tool_call(&mut args, &mut scan.tool_calls, c)),
            other => scan.tool_calls.value(other),
        }
        scan.tool_calls.absorb(args);
    }
    scan.rest.object(obj, MESSAGE_FIELDS);
    scan
}

/// A tool call: its arguments to `args`, its name and anything else to `rest`; the call id
/// and type are structural.
fn tool_call(args: &mut Walk<'_>, rest: &mut Walk<'_>, call: &mut Value) {
    let Some(map) = call.as_object_mut() else {
        return rest.value(call);
    };
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            ("id" | "type", _) => {}
            ("function", Value::Object(function)) => {
                if let Some(a) = function.get_mut("arguments") {
                    args.value(a);
                }
                rest.object(function, &["arguments"]);
            }
            (_, value) => rest.value(value),
        }
    }
}
