//! Human approvals seen from a run (`docs/approvals.md`, "The orchestrator"): when the proxy
//! holds one of the run's MCP tool calls for an approver, the run's AG-UI stream shows it — a
//! `CUSTOM` event `palisade.approval` with `status: "pending"` — and then the outcome
//! (`approved`, `denied` or `timeout`) when the call returns.
//!
//! How the orchestrator learns of it: each tool call carries its own `X-Request-Id` (the
//! [`crate::tools::ToolContext::request_id`]), which the proxy's approval webhook repeats in its
//! announcement; point `approvals.webhook.url` at this orchestrator's `POST /approvals/events`.
//! An announcement is accepted only for a request id of a call in flight (random, never shown
//! to anyone else), and can only add the `pending` event to that call's run: it approves
//! nothing.

use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::mpsc;

/// The `CUSTOM` event's name.
pub const EVENT_NAME: &str = "palisade.approval";

/// The tool calls in flight that an announcement may concern, by request id.
#[derive(Debug, Default)]
pub struct ApprovalWatch {
    waiting: DashMap<String, mpsc::Sender<Value>>,
}

/// A call's registration: announcements for its request id arrive on `notices`; dropping it
/// unregisters the call.
pub struct Registration<'a> {
    watch: &'a ApprovalWatch,
    request_id: String,
    /// The announcements (the proxy's webhook payloads).
    pub notices: mpsc::Receiver<Value>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.watch.waiting.remove(&self.request_id);
    }
}

impl ApprovalWatch {
    /// Registers the call that carries `request_id`.
    pub fn register(&self, request_id: &str) -> Registration<'_> {
        let (tx, notices) = mpsc::channel(4);
        self.waiting.insert(request_id.to_string(), tx);
        Registration {
            watch: self,
            request_id: request_id.to_string(),
            notices,
        }
    }

    /// Hands an announcement to the call it names; `false` when no call in flight has its
    /// `request_id`.
    pub fn notify(&self, announcement: Value) -> bool {
        let Some(id) = announcement.get("request_id").and_then(Value::as_str) else {
            return false;
        };
        match self.waiting.get(id) {
            Some(tx) => tx.try_send(announcement.clone()).is_ok(),
            None => false,
        }
    }
}

/// The outcome of a held call from the tool's result: an error naming the proxy's
/// `APPROVAL_DENIED` / `APPROVAL_TIMEOUT` refusal, else `approved`.
pub fn outcome(result: &Result<String, crate::tools::ToolError>) -> &'static str {
    match result {
        Ok(_) => "approved",
        Err(e) if e.0.contains("APPROVAL_TIMEOUT") => "timeout",
        Err(_) => "denied",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_calls_in_flight_get_announcements() {
        let watch = ApprovalWatch::default();
        assert!(!watch.notify(json!({"request_id": "r1", "id": "a"})));
        let mut reg = watch.register("r1");
        assert!(!watch.notify(json!({"request_id": "r2"})));
        assert!(!watch.notify(json!({"id": "no request id"})));
        assert!(watch.notify(json!({"request_id": "r1", "id": "a"})));
        assert_eq!(reg.notices.try_recv().unwrap()["id"], "a");
        drop(reg);
        assert!(!watch.notify(json!({"request_id": "r1"})));
    }
}
