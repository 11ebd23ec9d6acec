//! [`AguiGuard`]: output guardrails over an AG-UI event stream.
//!
//! Text-bearing events are scanned per message / tool call id through a [`TextStream`], which
//! carries a normalized window over (phrases split across deltas and TCP chunks are caught) and
//! holds back the raw tail that may still grow into a secret. A rewritten delta replaces the
//! original; a delta held back entirely drops its event (AG-UI forbids empty deltas); the held
//! text is relayed before the message's `*_END` (or, for `*_CHUNK` streams, before the next
//! other event), and everything is flushed before `RUN_FINISHED` / `RUN_ERROR` and at the end.
//! `TOOL_CALL_RESULT` contents and `MESSAGES_SNAPSHOT` messages (every role, text or parts, tool
//! calls) are whole and scanned as such.
//!
//! Every other string an event carries is scanned too, whatever the event's type: the fields a
//! known type's handler does not take (ids, the type and the role aside) and, for a type the
//! guard does not know (`STATE_SNAPSHOT`, `STATE_DELTA`, `CUSTOM`, `RAW`, `ACTIVITY_*`, or one
//! newer than this code), the whole event, keys included. A `stop` there ends the run like
//! anywhere else — an event is never relayed unscanned because its type is unfamiliar.

use bytes::Bytes;
use regex_automata::hybrid::dfa::Cache;
use serde_json::{json, Value};

use super::Recorder;
use crate::guardrails::detect::RuleSet;
use crate::guardrails::scan::{Scanned, TextStream};
use crate::guardrails::spec::Location;
use crate::protocol::agui::run_error_event;
use crate::protocol::event::{Item, StreamEvent};
use crate::protocol::relay::{Reading, SseRelay};
use whole::known_kind;

mod whole;

/// Which streamed text an id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    TextChunk,
    Reasoning,
    ReasoningChunk,
    Thinking,
    Args,
    ArgsChunk,
}

impl Kind {
    /// The event type that carries this text, and its id field.
    fn event(self) -> (&'static str, &'static str) {
        match self {
            Self::Text => ("TEXT_MESSAGE_CONTENT", "messageId"),
            Self::TextChunk => ("TEXT_MESSAGE_CHUNK", "messageId"),
            Self::Reasoning => ("REASONING_MESSAGE_CONTENT", "messageId"),
            Self::ReasoningChunk => ("REASONING_MESSAGE_CHUNK", "messageId"),
            Self::Thinking => ("THINKING_TEXT_MESSAGE_CONTENT", "messageId"),
            Self::Args => ("TOOL_CALL_ARGS", "toolCallId"),
            Self::ArgsChunk => ("TOOL_CALL_CHUNK", "toolCallId"),
        }
    }

    fn location(self) -> Location {
        match self {
            Self::Args | Self::ArgsChunk => Location::ToolArguments,
            _ => Location::AssistantText,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Text => "response.TEXT_MESSAGE_CONTENT",
            Self::TextChunk => "response.TEXT_MESSAGE_CHUNK",
            Self::Reasoning => "response.REASONING_MESSAGE_CONTENT",
            Self::ReasoningChunk => "response.REASONING_MESSAGE_CHUNK",
            Self::Thinking => "response.THINKING_TEXT_MESSAGE_CONTENT",
            Self::Args => "response.TOOL_CALL_ARGS",
            Self::ArgsChunk => "response.TOOL_CALL_CHUNK",
        }
    }

    fn chunked(self) -> bool {
        matches!(
            self,
            Self::TextChunk | Self::ReasoningChunk | Self::ArgsChunk
        )
    }
}

/// Open messages, reasoning streams and tool calls tracked per response. An upstream that opens
/// one after another without ending them would otherwise grow the state (and the per-delta
/// lookup) without bound; past this the oldest is forgotten and what it held is dropped, never
/// relayed.
pub const MAX_OPEN_TEXTS: usize = 256;

/// State of one AG-UI response.
pub struct AguiGuard {
    texts: Vec<(Kind, String, TextStream)>,
    /// The id of the `*_CHUNK` stream last seen (chunks without an id continue it).
    last_chunk: Option<(Kind, String)>,
    open_text: Vec<String>,
    open_reasoning: Vec<String>,
    open_tools: Vec<String>,
    /// Open `THINKING_TEXT_MESSAGE_*` texts (their id, `""` when they have none) and whether a
    /// `THINKING_START` step is open: closed before the frames of a stop.
    open_thinking: Vec<String>,
    thinking: bool,
    cache: Option<Cache>,
    stop_id: String,
    stopped: bool,
}

impl AguiGuard {
    /// A filter for one response of request `request_id`.
    pub fn new(rs: &RuleSet, request_id: &str) -> Self {
        Self {
            texts: Vec::new(),
            last_chunk: None,
            open_text: Vec::new(),
            open_reasoning: Vec::new(),
            open_tools: Vec::new(),
            open_thinking: Vec::new(),
            thinking: false,
            cache: rs.live_cache(),
            stop_id: format!("guardrail-{request_id}"),
            stopped: false,
        }
    }

    /// Bytes held back over all open texts.
    pub fn held(&self) -> usize {
        self.texts.iter().map(|(_, _, t)| t.held()).sum()
    }

    /// Filters the parsed items of one chunk. `Err` carries the items that end a stopped run.
    pub fn filter(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        items: Vec<Item>,
        end_of_stream: bool,
    ) -> Result<Vec<Item>, Vec<Item>> {
        let mut out = Vec::with_capacity(items.len() + 2);
        if self.stopped {
            return Ok(out);
        }
        for item in items {
            let outcome = match item {
                Item::Event(event) => self.event(rs, rec, event, &mut out),
                comment => {
                    out.push(comment);
                    Ok(())
                }
            };
            if let Err(rule) = outcome {
                return Err(self.stop(rs, rule, out));
            }
        }
        if end_of_stream {
            if let Err(rule) = self.flush_all(rs, rec, &mut out) {
                return Err(self.stop(rs, rule, out));
            }
        }
        Ok(out)
    }

    /// [`AguiGuard::filter`] over raw SSE bytes (tests and benchmarks): parses the chunk with a
    /// relay of its own and encodes the result.
    pub fn process(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Bytes, Bytes> {
        let mut relay = SseRelay::new(Reading::Json, false);
        let items = relay.parse(chunk).unwrap_or_default();
        match self.filter(rs, rec, items, end_of_stream) {
            Ok(items) => Ok(relay.encode(&items)),
            Err(items) => Err(relay.encode(&items)),
        }
    }

    fn event(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        mut event: StreamEvent,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        if event.value().is_none() {
            out.push(Item::Event(event));
            return Ok(());
        }
        let (kind, label) = known_kind(event.kind()).unwrap_or(("", "response.other"));
        // Everything the handlers below do not take is scanned whole first.
        let takes = self.takes(kind, &event);
        self.scan_rest(rs, rec, &mut event, kind, label, takes)?;
        let delta = event.str_field("delta").map(str::to_string);
        let chunk_kind = match kind {
            "TEXT_MESSAGE_CHUNK" => Some(Kind::TextChunk),
            "REASONING_MESSAGE_CHUNK" => Some(Kind::ReasoningChunk),
            "TOOL_CALL_CHUNK" => Some(Kind::ArgsChunk),
            _ => None,
        };
        // The client closes a chunk stream at any other event: relay what it holds first.
        if chunk_kind.is_none() {
            self.flush_chunks(rs, rec, out)?;
        }
        let msg_id = event.str_field("messageId").map(str::to_string);
        let call_id = event.str_field("toolCallId").map(str::to_string);
        match kind {
            "TEXT_MESSAGE_START" => self.open_text.extend(msg_id.clone()),
            "REASONING_MESSAGE_START" => self.open_reasoning.extend(msg_id.clone()),
            "TOOL_CALL_START" => self.open_tools.extend(call_id.clone()),
            "THINKING_START" => self.thinking = true,
            "THINKING_END" => self.thinking = false,
            "THINKING_TEXT_MESSAGE_START" => {
                self.open_thinking.push(msg_id.clone().unwrap_or_default());
            }
            "THINKING_TEXT_MESSAGE_END" => {
                let id = msg_id.clone().unwrap_or_default();
                self.open_thinking.retain(|o| *o != id);
                self.flush(rs, rec, Kind::Thinking, &id, out)?;
            }
            "TEXT_MESSAGE_CONTENT"
            | "REASONING_MESSAGE_CONTENT"
            | "THINKING_TEXT_MESSAGE_CONTENT"
            | "TOOL_CALL_ARGS" => {
                let (k, id) = match kind {
                    "TEXT_MESSAGE_CONTENT" => (Kind::Text, msg_id.clone()),
                    "REASONING_MESSAGE_CONTENT" => (Kind::Reasoning, msg_id.clone()),
                    // Thinking texts may have no id: one stream per id, `""` included.
                    "THINKING_TEXT_MESSAGE_CONTENT" => {
                        (Kind::Thinking, Some(msg_id.clone().unwrap_or_default()))
                    }
                    _ => (Kind::Args, call_id.clone()),
                };
                let (Some(id), Some(delta)) = (id, delta.as_deref()) else {
                    out.push(Item::Event(event));
                    return Ok(());
                };
                let scanned = self.push(rs, k, &id, delta);
                let same = scanned.text.as_deref() == Some(delta);
                return self.relay_delta(rs, rec, k, scanned, same, event, out);
            }
            "TEXT_MESSAGE_END" | "REASONING_MESSAGE_END" | "TOOL_CALL_END" => {
                let (k, id, open) = match kind {
                    "TEXT_MESSAGE_END" => (Kind::Text, msg_id.clone(), &mut self.open_text),
                    "REASONING_MESSAGE_END" => {
                        (Kind::Reasoning, msg_id.clone(), &mut self.open_reasoning)
                    }
                    _ => (Kind::Args, call_id.clone(), &mut self.open_tools),
                };
                if let Some(id) = id {
                    open.retain(|o| *o != id);
                    self.flush(rs, rec, k, &id, out)?;
                }
            }
            "TOOL_CALL_RESULT" => return self.tool_result(rs, rec, event, out),
            "MESSAGES_SNAPSHOT" => return self.snapshot(rs, rec, event, out),
            "RUN_FINISHED" | "RUN_ERROR" => self.flush_all(rs, rec, out)?,
            _ => {}
        }
        if let Some(k) = chunk_kind {
            let id = match k {
                Kind::ArgsChunk => call_id,
                _ => msg_id,
            }
            .or_else(|| {
                self.last_chunk
                    .as_ref()
                    .filter(|(lk, _)| *lk == k)
                    .map(|(_, id)| id.clone())
            });
            let Some(id) = id else {
                out.push(Item::Event(event));
                return Ok(());
            };
            if self
                .last_chunk
                .as_ref()
                .is_some_and(|(lk, lid)| *lk != k || *lid != id)
            {
                self.flush_chunks(rs, rec, out)?;
            }
            self.last_chunk = Some((k, id.clone()));
            let Some(delta) = delta.as_deref() else {
                out.push(Item::Event(event));
                return Ok(());
            };
            let scanned = self.push(rs, k, &id, delta);
            let same = scanned.text.as_deref() == Some(delta);
            return self.relay_delta(rs, rec, k, scanned, same, event, out);
        }
        out.push(Item::Event(event));
        Ok(())
    }

    fn stream_mut(&mut self, k: Kind, id: &str) -> &mut TextStream {
        let at = match self
            .texts
            .iter()
            .position(|(tk, tid, _)| *tk == k && tid == id)
        {
            Some(at) => at,
            None => {
                if self.texts.len() >= MAX_OPEN_TEXTS {
                    self.texts.remove(0);
                }
                self.texts.push((k, id.to_string(), TextStream::default()));
                self.texts.len() - 1
            }
        };
        &mut self.texts[at].2
    }

    fn push(&mut self, rs: &RuleSet, k: Kind, id: &str, delta: &str) -> Scanned {
        let mut cache = self.cache.take();
        let scanned = self
            .stream_mut(k, id)
            .push(rs, cache.as_mut(), delta, k.location());
        self.cache = cache;
        scanned
    }

    /// Relays a content event with its delta replaced by what may go out now.
    #[allow(clippy::too_many_arguments)]
    fn relay_delta(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        k: Kind,
        scanned: Scanned,
        unchanged: bool,
        mut event: StreamEvent,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        rec.fired(rs, k.label(), &scanned.fired);
        if scanned.overflowed {
            rec.overflow(k.label());
        }
        if let Some(rule) = scanned.refused {
            return Err(rule);
        }
        if unchanged {
            out.push(Item::Event(event));
            return Ok(());
        }
        let text = scanned.text.unwrap_or_default();
        let Some(json) = event.value_mut() else {
            return Ok(());
        };
        if text.is_empty() {
            if !k.chunked() {
                return Ok(()); // held back entirely: AG-UI forbids empty deltas
            }
            if let Some(obj) = json.as_object_mut() {
                obj.remove("delta");
            }
        } else {
            json["delta"] = Value::String(text);
        }
        out.push(Item::Event(event));
        Ok(())
    }

    /// Relays what one text still holds, as a content event of its kind.
    fn flush(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        k: Kind,
        id: &str,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        let Some(at) = self
            .texts
            .iter()
            .position(|(tk, tid, _)| *tk == k && tid == id)
        else {
            return Ok(());
        };
        let (_, _, mut text) = self.texts.swap_remove(at);
        let scanned = text.finish(rs, k.location());
        rec.fired(rs, k.label(), &scanned.fired);
        if let Some(rule) = scanned.refused {
            return Err(rule);
        }
        let rest = scanned.text.unwrap_or_default();
        if !rest.is_empty() {
            let (kind, id_field) = k.event();
            let mut frame = json!({"type": kind, "delta": rest});
            if !id.is_empty() {
                frame[id_field] = Value::String(id.to_string());
            }
            out.push(Item::Event(StreamEvent::json(frame)));
        }
        Ok(())
    }

    fn flush_chunks(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        self.flush_where(rs, rec, out, |k| k.chunked())
    }

    fn flush_all(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        out: &mut Vec<Item>,
    ) -> Result<(), usize> {
        self.flush_where(rs, rec, out, |_| true)
    }

    /// Relays what every open text of a kind `which` accepts still holds.
    fn flush_where(
        &mut self,
        rs: &RuleSet,
        rec: &mut Recorder<'_>,
        out: &mut Vec<Item>,
        which: impl Fn(&Kind) -> bool,
    ) -> Result<(), usize> {
        self.last_chunk = None;
        let keys: Vec<(Kind, String)> = self
            .texts
            .iter()
            .filter(|(k, _, _)| which(k))
            .map(|(k, id, _)| (*k, id.clone()))
            .collect();
        for (k, id) in keys {
            self.flush(rs, rec, k, &id, out)?;
        }
        Ok(())
    }

    /// The frames that end a stopped run: what was already filtered in this chunk, the open
    /// messages and tool calls closed, `CUSTOM` `GUARDRAIL_VIOLATION`, a short assistant
    /// message, `RUN_ERROR` `GUARDRAIL_VIOLATION`.
    fn stop(&mut self, rs: &RuleSet, rule: usize, mut out: Vec<Item>) -> Vec<Item> {
        self.stopped = true;
        self.texts.clear();
        let mut frame = |v: Value| out.push(Item::Event(StreamEvent::json(v)));
        for id in self.open_tools.drain(..) {
            frame(json!({"type": "TOOL_CALL_END", "toolCallId": id}));
        }
        for id in self.open_reasoning.drain(..) {
            frame(json!({"type": "REASONING_MESSAGE_END", "messageId": id}));
        }
        for id in self.open_text.drain(..) {
            frame(json!({"type": "TEXT_MESSAGE_END", "messageId": id}));
        }
        for id in self.open_thinking.drain(..) {
            let mut end = json!({"type": "THINKING_TEXT_MESSAGE_END"});
            if !id.is_empty() {
                end["messageId"] = Value::String(id);
            }
            frame(end);
        }
        if std::mem::take(&mut self.thinking) {
            frame(json!({"type": "THINKING_END"}));
        }
        frame(json!({
            "type": "CUSTOM",
            "name": "GUARDRAIL_VIOLATION",
            "value": {"rule": rs.rules[rule].id, "action": "stop"}
        }));
        let id = self.stop_id.clone();
        frame(json!({"type": "TEXT_MESSAGE_START", "messageId": id, "role": "assistant"}));
        frame(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": id, "delta": rs.stop_message}));
        frame(json!({"type": "TEXT_MESSAGE_END", "messageId": id}));
        out.push(Item::Event(run_error_event(
            "GUARDRAIL_VIOLATION",
            "the response was stopped by a guardrail",
        )));
        out
    }
}
