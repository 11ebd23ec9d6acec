//! [`Item`]: one SSE item of a response on its way to the client, parsed once by the relay.
//!
//! On inspected routes an event's `data` is parsed into JSON once ([`super::json::parse`]) and
//! every filter of the chain reads and edits that value; the relay encodes each item once, from
//! the value, when the chain is done. A filter never sees bytes and never re-parses.

use bytes::BytesMut;
use serde_json::Value;

use super::sse::{SseEvent, SseItem};

/// The payload of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// No `data` field.
    None,
    /// `data` parsed as JSON (inspected routes).
    Json(Value),
    /// `data` as text (routes whose events are not JSON).
    Text(String),
}

/// One SSE event: its fields and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// `event:` name.
    pub name: Option<String>,
    /// `id:`.
    pub id: Option<String>,
    /// `retry:`.
    pub retry: Option<u64>,
    /// `data:`.
    pub data: Data,
}

impl StreamEvent {
    /// An event whose data is `json`.
    pub fn json(json: Value) -> Self {
        Self {
            name: None,
            id: None,
            retry: None,
            data: Data::Json(json),
        }
    }

    /// The JSON payload, when there is one.
    pub fn value(&self) -> Option<&Value> {
        match &self.data {
            Data::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The JSON payload, mutable.
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        match &mut self.data {
            Data::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The event's `type` (AG-UI), after JSON unescaping; `""` when none.
    pub fn kind(&self) -> &str {
        self.value()
            .and_then(|v| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A string field of the payload.
    pub fn str_field(&self, field: &str) -> Option<&str> {
        self.value()?.get(field)?.as_str()
    }
}

/// One item of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An event.
    Event(StreamEvent),
    /// A `:` comment (heartbeats), relayed as is.
    Comment(String),
}

impl Item {
    /// The event, when this is one.
    pub fn event(&self) -> Option<&StreamEvent> {
        match self {
            Self::Event(e) => Some(e),
            Self::Comment(_) => None,
        }
    }

    /// Encodes the item as LF-framed SSE.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Comment(text) => SseItem::Comment(text.clone()).encode(out),
            Self::Event(e) => {
                let data = match &e.data {
                    Data::None => None,
                    // Serializing a `Value` cannot fail.
                    Data::Json(v) => Some(serde_json::to_string(v).unwrap_or_default()),
                    Data::Text(t) => Some(t.clone()),
                };
                SseEvent {
                    event: e.name.clone(),
                    data,
                    id: e.id.clone(),
                    retry: e.retry,
                }
                .encode(out)
            }
        }
    }
}
