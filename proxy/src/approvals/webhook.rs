//! [`Webhook`]: announces each new pending approval with a JSON `POST` to
//! `approvals.webhook.url` — fire and forget, with a per-attempt timeout and a bounded number
//! of retries, so a slow or dead receiver never delays the held request or the proxy.
//!
//! The body (`docs/approvals.md`, "Webhook"):
//!
//! ```json
//! {"id": "…", "status": "pending", "principal": "User::\"…\"", "action": "call_tool",
//!  "resource": "Tool::\"run_shell\"", "tool": "run_shell", "arguments_digest": "…",
//!  "request_id": "…", "route": "mcp", "created_at": "RFC 3339", "expires_at": "RFC 3339"}
//! ```

use std::time::Duration;

use serde_json::{json, Value};

use super::record::Approval;
use super::spec::WebhookSpec;

/// The announcer.
pub struct Webhook {
    url: String,
    retries: u32,
    client: reqwest::Client,
}

impl Webhook {
    /// An announcer for `spec` (its client trusts the process's CAs).
    pub fn new(spec: &WebhookSpec) -> anyhow::Result<Self> {
        let client = crate::outbound::http_client(spec.timeout, "approvals.webhook", None)?;
        Ok(Self {
            url: spec.url.clone(),
            retries: spec.retries,
            client,
        })
    }

    /// POSTs the announcement of `a` in the background.
    pub fn announce(&self, a: &Approval) {
        let body = payload(a);
        let (client, url, retries) = (self.client.clone(), self.url.clone(), self.retries);
        let id = a.id.clone();
        tokio::spawn(async move {
            for attempt in 0..=retries {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                match client.post(&url).json(&body).send().await {
                    Ok(resp) if resp.status().is_success() => return,
                    Ok(resp) => {
                        tracing::warn!(approval.id = %id, status = %resp.status(), attempt,
                            "approval webhook refused the announcement");
                    }
                    Err(e) => {
                        tracing::warn!(approval.id = %id, error = %e, attempt,
                            "approval webhook unreachable");
                    }
                }
            }
        });
    }
}

/// The JSON body announcing `a`.
pub fn payload(a: &Approval) -> Value {
    json!({
        "id": a.id,
        "status": a.status.as_str(),
        "principal": a.principal,
        "action": a.action,
        "resource": a.resource,
        "tool": a.resource_name(),
        "arguments_digest": a.arguments_digest,
        "request_id": a.request_id,
        "route": a.route,
        "created_at": rfc3339(a.created_at),
        "expires_at": rfc3339(a.expires_at),
    })
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
