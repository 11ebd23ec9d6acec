//! Response-side guardrails: AG-UI streams event by event ([`agui`]), other SSE streams (MCP,
//! A2A, plain) event by event, and JSON answers on MCP/A2A routes (held whole, bounded).
//!
//! The filter runs after the pipeline's SSE relay, so it reads complete LF-framed events only
//! and holds nothing but the raw tail of a message that may still grow into a secret.
//!
//! A `stop` ends the client's stream: the frames (on AG-UI: `CUSTOM` `GUARDRAIL_VIOLATION`, a
//! short assistant message, `RUN_ERROR` `GUARDRAIL_VIOLATION`) are kept in the context and the
//! filter fails, which makes pingora drop the upstream connection; `fail_to_proxy` then calls
//! [`finish_stop`] to write the frames and end the response cleanly.

pub mod agui;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::detect::{RuleSet, Side};
use super::scan::{scan_text, Fired};
use super::spec::Location;
use crate::config::spec::RouteProtocol;
use crate::error::ProxyError;
use crate::pipeline::context::RequestCtx;
use crate::protocol::sse::rewrite_events;
use crate::telemetry::Metrics;

/// Largest JSON answer the output guardrails inspect; a larger one ends the response.
pub const MAX_JSON_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// What the output filter does for one response.
pub enum ResponseGuard {
    /// AG-UI SSE: per message / tool call, with carry-over.
    Agui(Box<agui::AguiGuard>),
    /// Other SSE: each event's JSON string fields (or its raw data).
    Sse {
        /// Where its text counts as.
        location: Location,
        /// Whether a stop answers in JSON-RPC (MCP, A2A).
        jsonrpc: bool,
    },
    /// A JSON answer held whole.
    Json {
        /// The answer so far.
        held: BytesMut,
        /// Where its text counts as.
        location: Location,
    },
}

/// Response header hook: picks the filter. Returns whether `Content-Length` must be dropped
/// (a JSON answer that may change length).
pub fn on_response_header(ctx: &mut RequestCtx, is_sse: bool, content_type: &str) -> bool {
    let Some(route) = ctx.route.as_ref() else {
        return false;
    };
    let Some(rs) = route
        .guardrails
        .as_ref()
        .filter(|rs| rs.has_side(Side::Output))
    else {
        return false;
    };
    let location = match route.protocol {
        RouteProtocol::Mcp => Location::ToolResult,
        _ => Location::AssistantText,
    };
    let jsonrpc = matches!(route.protocol, RouteProtocol::Mcp | RouteProtocol::A2a);
    ctx.guardrail_state.response = match route.protocol {
        RouteProtocol::Agui if is_sse => Some(ResponseGuard::Agui(Box::new(agui::AguiGuard::new(
            rs,
            &ctx.request_id,
        )))),
        _ if is_sse => Some(ResponseGuard::Sse { location, jsonrpc }),
        RouteProtocol::Mcp | RouteProtocol::A2a if content_type.starts_with("application/json") => {
            Some(ResponseGuard::Json {
                held: BytesMut::new(),
                location,
            })
        }
        _ => None,
    };
    matches!(
        ctx.guardrail_state.response,
        Some(ResponseGuard::Json { .. })
    )
}

/// Where response-side findings go: the metrics and the request's findings.
pub struct Recorder<'a> {
    /// `palisade_guardrail_findings_total`.
    pub metrics: &'a Metrics,
    /// The request's findings (for the audit record).
    pub findings: &'a mut super::Findings,
}

impl Recorder<'_> {
    pub(crate) fn fired(&mut self, rs: &RuleSet, location: &str, fired: &[Fired]) {
        super::record(self.metrics, self.findings, rs, location, fired);
    }

    pub(crate) fn overflow(&mut self, location: &str) {
        self.metrics
            .guardrail_findings
            .with_label_values(&[super::scan::HOLD_LIMIT_RULE, "redact"])
            .inc();
        self.findings.record(super::Finding {
            rule: super::scan::HOLD_LIMIT_RULE.into(),
            location: location.into(),
            action: super::FindingAction::Redact,
            count: 1,
        });
    }
}

/// Response body hook, after SSE re-framing. `Err` means a `stop`: the frames wait in the
/// context for [`finish_stop`], and the caller fails the filter so the upstream is closed.
pub fn on_response_body(
    metrics: &Metrics,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) -> Result<(), &'static str> {
    let Some(mut guard) = ctx.guardrail_state.response.take() else {
        return Ok(());
    };
    let Some(rs) = ctx.route.as_ref().and_then(|r| r.guardrails.clone()) else {
        return Ok(());
    };
    let mut rec = Recorder {
        metrics,
        findings: &mut ctx.guardrails,
    };
    let outcome = match &mut guard {
        ResponseGuard::Agui(g) => {
            let chunk = body.take().unwrap_or_default();
            g.process(&rs, &mut rec, &chunk, end_of_stream)
        }
        ResponseGuard::Sse { location, jsonrpc } => match body.take() {
            Some(chunk) => sse_events(&rs, &mut rec, &chunk, *location, *jsonrpc),
            None => Ok(Bytes::new()),
        },
        ResponseGuard::Json { held, location } => {
            if let Some(chunk) = body.take() {
                held.extend_from_slice(&chunk);
            }
            if held.len() > MAX_JSON_RESPONSE_BYTES {
                *body = None;
                ctx.error = Some(ProxyError::UpstreamUnavailable);
                return Err("JSON answer too large to inspect");
            }
            if end_of_stream {
                let whole = std::mem::take(held).freeze();
                json_answer(&rs, &mut rec, whole, *location)
            } else {
                Ok(Bytes::new())
            }
        }
    };
    match outcome {
        Ok(out) => {
            *body = Some(out);
            ctx.guardrail_state.response = Some(guard);
            Ok(())
        }
        Err(frames) => {
            *body = None;
            ctx.guardrail_state.stop_frames = Some(frames);
            ctx.error = Some(ProxyError::GuardrailViolation);
            Err("stopped by guardrail")
        }
    }
}

/// In `fail_to_proxy`: when a `stop` ended the response, writes its frames and ends the
/// response; returns the status to log. `None` when no stop happened.
pub async fn finish_stop(
    session: &mut pingora_proxy::Session,
    ctx: &mut RequestCtx,
) -> Option<u16> {
    let frames = ctx.guardrail_state.stop_frames.take()?;
    let status = match session.response_written() {
        Some(resp) => resp.status.as_u16(),
        None => {
            // The header was still queued with the stopped chunk: send a fresh one.
            let sse = ctx.stream.is_some();
            let mut resp = pingora_http::ResponseHeader::build(200, Some(4)).ok()?;
            let kind = if sse {
                "text/event-stream"
            } else {
                "application/json"
            };
            resp.insert_header("content-type", kind).ok()?;
            resp.insert_header("cache-control", "no-cache").ok()?;
            resp.insert_header("x-request-id", ctx.request_id.as_str())
                .ok()?;
            if !sse {
                resp.insert_header("content-length", frames.len().to_string())
                    .ok()?;
            }
            if let Err(e) = session.write_response_header(Box::new(resp), false).await {
                tracing::debug!(request_id = %ctx.request_id, error = %e, "stop header not written");
                return Some(200);
            }
            200
        }
    };
    ctx.response_bytes += frames.len() as u64;
    if let Err(e) = session.write_response_body(Some(frames), true).await {
        tracing::debug!(request_id = %ctx.request_id, error = %e, "stop frames not written");
    }
    Some(status)
}

/// Scans every string leaf of a JSON value in place (output side). Returns the refusing rule.
fn scan_leaves(
    rs: &RuleSet,
    rec: &mut Recorder<'_>,
    value: &mut Value,
    location: Location,
    label: &str,
    changed: &mut bool,
) -> Option<usize> {
    match value {
        Value::String(s) => {
            let scanned = scan_text(rs, s, Side::Output, location);
            rec.fired(rs, label, &scanned.fired);
            if let Some(text) = scanned.text {
                *s = text;
                *changed = true;
            }
            scanned.refused
        }
        Value::Array(list) => list.iter_mut().fold(None, |r, v| {
            r.or(scan_leaves(rs, rec, v, location, label, changed))
        }),
        Value::Object(map) => map.iter_mut().fold(None, |r, (_, v)| {
            r.or(scan_leaves(rs, rec, v, location, label, changed))
        }),
        _ => None,
    }
}

/// The JSON-RPC error that replaces a stopped MCP/A2A answer.
fn jsonrpc_stop(id: &Value, rule: &str) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": super::JSONRPC_GUARDRAIL,
            "message": "blocked by guardrail",
            "data": {"code": "GUARDRAIL_VIOLATION", "rule": rule}
        }
    })
}

fn sse_events(
    rs: &RuleSet,
    rec: &mut Recorder<'_>,
    chunk: &[u8],
    location: Location,
    jsonrpc: bool,
) -> Result<Bytes, Bytes> {
    let mut out = BytesMut::with_capacity(chunk.len());
    let rewritten = rewrite_events(chunk, &mut out, |mut event, out| {
        let Some(data) = event.data.take() else {
            event.encode(out);
            return Ok(());
        };
        let mut changed = false;
        let (data, refused) = match serde_json::from_str::<Value>(&data) {
            Ok(mut json) => {
                let refused =
                    scan_leaves(rs, rec, &mut json, location, "response.sse", &mut changed);
                if let Some(rule) = refused {
                    let id = json.get("id").cloned().unwrap_or(Value::Null);
                    let stop = if jsonrpc {
                        jsonrpc_stop(&id, &rs.rules[rule].id)
                    } else {
                        serde_json::json!({"error": {"code": "GUARDRAIL_VIOLATION", "rule": rs.rules[rule].id}})
                    };
                    (stop.to_string(), Some(rule))
                } else if changed {
                    (json.to_string(), None)
                } else {
                    (data, None)
                }
            }
            Err(_) => {
                let scanned = scan_text(rs, &data, Side::Output, location);
                rec.fired(rs, "response.sse", &scanned.fired);
                match scanned.refused {
                    Some(rule) => (
                        serde_json::json!({"error": {"code": "GUARDRAIL_VIOLATION", "rule": rs.rules[rule].id}})
                            .to_string(),
                        Some(rule),
                    ),
                    None => (scanned.text.unwrap_or(data), None),
                }
            }
        };
        event.data = Some(data);
        event.encode(out);
        // A refusal ends the stream after its stop frame.
        refused.map_or(Ok(()), |_| Err(()))
    });
    match rewritten {
        Ok(()) => Ok(out.freeze()),
        Err(()) => Err(out.freeze()),
    }
}

fn json_answer(
    rs: &RuleSet,
    rec: &mut Recorder<'_>,
    whole: Bytes,
    location: Location,
) -> Result<Bytes, Bytes> {
    let Ok(mut json) = serde_json::from_slice::<Value>(&whole) else {
        return Ok(whole);
    };
    let mut changed = false;
    if let Some(rule) = scan_leaves(rs, rec, &mut json, location, "response.json", &mut changed) {
        let id = json.get("id").cloned().unwrap_or(Value::Null);
        // Ends normally (the upstream is done): the stop is the answer itself.
        return Ok(Bytes::from(
            jsonrpc_stop(&id, &rs.rules[rule].id).to_string(),
        ));
    }
    if changed {
        Ok(Bytes::from(serde_json::to_vec(&json).unwrap_or_default()))
    } else {
        Ok(whole)
    }
}
