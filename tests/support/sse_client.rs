//! An SSE client that timestamps each event as it arrives (parsed with `palisade-wire`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use palisade_wire::sse::{SseEvent, SseItem, SseParser};

/// One received event and when it was complete at the client.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When the bytes completing the event were read.
    pub at: Instant,
    /// The event.
    pub event: SseEvent,
}

/// What a stream delivered.
#[derive(Debug)]
pub struct Received {
    /// Events in arrival order.
    pub events: Vec<Arrival>,
    /// The raw bytes, for framing assertions.
    pub raw: Vec<u8>,
    /// Whether the body ended with an error instead of a clean end.
    pub errored: bool,
}

impl Received {
    /// The `data` of every event parsed as JSON.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.events
            .iter()
            .filter_map(|a| a.event.data.as_deref())
            .map(|d| serde_json::from_str(d).unwrap_or(serde_json::Value::String(d.into())))
            .collect()
    }

    /// The AG-UI `type` of every event.
    pub fn types(&self) -> Vec<String> {
        self.json()
            .iter()
            .map(|j| j["type"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// Reads `resp` to its end (or `limit`), timestamping events. `stop_after` ends early after that
/// many events (dropping the response, as a client that disconnects would).
pub async fn read(resp: reqwest::Response, stop_after: Option<usize>, limit: Duration) -> Received {
    let mut parser = SseParser::new();
    let mut out = Received {
        events: Vec::new(),
        raw: Vec::new(),
        errored: false,
    };
    let mut body = resp.bytes_stream();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(next) => next,
            Err(_) => panic!(
                "stream did not end within {limit:?}: got {} events",
                out.events.len()
            ),
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => {
                out.errored = true;
                break;
            }
        };
        let at = Instant::now();
        out.raw.extend_from_slice(&chunk);
        parser.push(&chunk);
        while let Some(item) = parser.next_item() {
            if let Ok(SseItem::Event(event)) = item {
                out.events.push(Arrival { at, event });
            }
        }
        if stop_after.is_some_and(|n| out.events.len() >= n) {
            break;
        }
    }
    out
}
