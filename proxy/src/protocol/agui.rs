//! AG-UI: the wire types (`palisade-wire`), and the events the proxy itself writes into a
//! stream — `RUN_ERROR` with the documented error code ends a run the proxy stopped.

pub use palisade_wire::agui::*;

use serde_json::json;

use super::event::StreamEvent;

/// The `RUN_ERROR` event that ends a run with `code` (a documented error code) and `message`.
pub fn run_error_event(code: &str, message: &str) -> StreamEvent {
    StreamEvent::json(json!({"type": "RUN_ERROR", "message": message, "code": code}))
}
