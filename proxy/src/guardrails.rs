//! Guardrails: request validation, prompt-injection and PII detection, and streaming output
//! filtering (see `docs/guardrails.md`).
//!
//! Every rule that fires leaves a [`Finding`] in the request context (`RequestCtx::guardrails`);
//! findings carry the rule id, where it fired and what was done — never the matched content — so
//! the audit record and metrics can list them safely.
//!
//! The pipeline calls in four places:
//!
//! - [`start`] once the request is admitted: decides whether the body is held for inspection;
//! - [`on_request_body`] in `request_body_filter`, *before* body-aware authorization, so
//!   authorization sees the redacted body; a refusal is answered by [`write_refusal`];
//! - [`stream::on_response_header`] / [`stream::on_response_body`] on the response, after the
//!   SSE relay re-framed it into complete events;
//! - [`stream::finish_stop`] in `fail_to_proxy`, which writes the closing frames of a `stop`.

pub mod builtin;
pub mod compile;
pub mod detect;
pub mod finding;
pub mod normalize;
pub mod request;
pub mod scan;
pub mod spec;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::config::spec::RouteProtocol;
use crate::config::FieldError;
use crate::pipeline::context::RequestCtx;
use crate::telemetry::Metrics;
pub use detect::{RuleSet, Side};
pub use finding::{Finding, FindingAction, Findings};
use request::{DepthScanner, Refusal};
use scan::Fired;
use spec::{Action, GuardrailsSpec, RouteGuardrailsSpec};

/// Compiled rule sets by name (the built-in `default` always included unless redefined).
pub type RuleSets = BTreeMap<String, Arc<RuleSet>>;

/// Compiles `guardrails.rule_sets`; problems are pushed with their field paths.
pub fn compile_sets(spec: &GuardrailsSpec, errors: &mut Vec<FieldError>) -> RuleSets {
    let mut out = RuleSets::new();
    for (name, set) in &spec.rule_sets {
        match RuleSet::compile(name, set) {
            Ok(rs) => {
                out.insert(name.clone(), Arc::new(rs));
            }
            Err(errs) => errors.extend(errs.into_iter().map(|(path, message)| FieldError {
                path: if path.is_empty() {
                    format!("guardrails.rule_sets.{name}")
                } else {
                    format!("guardrails.rule_sets.{name}.{path}")
                },
                message,
            })),
        }
    }
    if !spec.rule_sets.contains_key("default") {
        out.insert("default".into(), Arc::new(RuleSet::builtin_default()));
    }
    if let Some(name) = &spec.default_rule_set {
        if !out.contains_key(name) && !spec.rule_sets.contains_key(name) {
            errors.push(FieldError {
                path: "guardrails.default_rule_set".into(),
                message: format!("no rule set named `{name}`"),
            });
        }
    }
    out
}

/// The rule set a route uses (`None`: not inspected). `at` is the route's path (`routes[3]`).
pub fn route_rule_set(
    sets: &RuleSets,
    spec: &GuardrailsSpec,
    route: Option<&RouteGuardrailsSpec>,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Arc<RuleSet>> {
    if route.is_some_and(|r| !r.enabled) {
        return None;
    }
    let name = route
        .and_then(|r| r.rule_set.as_ref())
        .or(spec.default_rule_set.as_ref())?;
    let found = sets.get(name).cloned();
    if found.is_none() && !spec.rule_sets.contains_key(name) {
        errors.push(FieldError {
            path: format!("{at}.guardrails.rule_set"),
            message: format!("no rule set named `{name}`"),
        });
    }
    found
}

/// Per-request guardrail state.
#[derive(Default)]
pub struct Exchange {
    /// The request body held for inspection (protocol routes).
    held: Option<BytesMut>,
    /// Incremental depth check of other JSON bodies.
    depth: Option<DepthScanner>,
    /// Whether the body goes upstream rewritten (so chunked).
    rewrites_body: bool,
    /// Response filtering, once the response header said what it is.
    pub(crate) response: Option<stream::ResponseGuard>,
    /// The frames a `stop` still has to write (`fail_to_proxy`).
    pub(crate) stop_frames: Option<Bytes>,
}

/// Records what fired in the context and in `palisade_guardrail_findings_total`.
pub(crate) fn record(
    metrics: &Metrics,
    findings: &mut Findings,
    rs: &RuleSet,
    location: &str,
    fired: &[Fired],
) {
    for f in fired {
        let rule = rs.rules[f.rule].id.as_str();
        let action = finding_action(f.action);
        metrics
            .guardrail_findings
            .with_label_values(&[rule, action.as_str()])
            .inc_by(u64::from(f.count));
        findings.record(Finding {
            rule: rule.to_string(),
            location: location.to_string(),
            action,
            count: f.count,
        });
    }
}

/// The finding action of a rule action.
pub fn finding_action(a: Action) -> FindingAction {
    match a {
        Action::Block => FindingAction::Block,
        Action::Flag => FindingAction::Flag,
        Action::Redact => FindingAction::Redact,
        Action::Stop => FindingAction::Stop,
    }
}

/// After admission: hold the body of protocol `POST`s whose route has guardrails; depth-check
/// other JSON bodies as they stream.
pub fn start(ctx: &mut RequestCtx, req: &pingora_http::RequestHeader) {
    let Some(route) = ctx.route.as_ref() else {
        return;
    };
    if route.guardrails.is_none() {
        return;
    }
    let protocol_post = req.method == http::Method::POST
        && matches!(
            route.protocol,
            RouteProtocol::Agui | RouteProtocol::Mcp | RouteProtocol::A2a
        );
    if protocol_post {
        ctx.guardrail_state.held = Some(BytesMut::new());
        ctx.guardrail_state.rewrites_body = true;
    } else if req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
    {
        ctx.guardrail_state.depth = Some(DepthScanner::default());
    }
}

/// Makes a body that guardrails may rewrite go upstream chunked (its length may change).
pub fn prepare_upstream(
    upstream: &mut pingora_http::RequestHeader,
    ctx: &RequestCtx,
) -> pingora_core::Result<()> {
    if ctx.guardrail_state.rewrites_body {
        upstream.remove_header(&http::header::CONTENT_LENGTH);
        upstream.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

/// Request body hook: holds protocol bodies until whole, then inspects them and puts the
/// (possibly redacted) body in `body`. `Err` carries the refusal to answer with.
pub fn on_request_body(
    metrics: &Metrics,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let Some(rs) = ctx.route.as_ref().and_then(|r| r.guardrails.clone()) else {
        return Ok(());
    };
    if let Some(depth) = ctx.guardrail_state.depth.as_mut() {
        if let Some(chunk) = body.as_ref() {
            if depth.feed(chunk) > rs.checks.max_json_depth {
                return Err(Refusal::Invalid(format!(
                    "body: JSON nested deeper than {} levels",
                    rs.checks.max_json_depth
                )));
            }
        }
        return Ok(());
    }
    let Some(held) = ctx.guardrail_state.held.as_mut() else {
        return Ok(());
    };
    if let Some(chunk) = body.take() {
        held.extend_from_slice(&chunk);
    }
    if !end_of_stream {
        *body = Some(Bytes::new());
        return Ok(());
    }
    let whole = std::mem::take(held).freeze();
    ctx.guardrail_state.held = None;
    if whole.is_empty() {
        return Ok(());
    }
    let protocol = ctx
        .route
        .as_ref()
        .map_or(RouteProtocol::Http, |r| r.protocol);
    let (result, found) = match request::inspect(&rs, protocol, &whole) {
        Ok(found) => (Ok(()), found),
        Err((refusal, found)) => (Err(refusal), found),
    };
    for (location, fired) in &found.fired {
        record(metrics, &mut ctx.guardrails, &rs, location, fired);
    }
    result?;
    *body = Some(found.body.map_or(whole, Bytes::from));
    Ok(())
}

/// JSON-RPC error code of a guardrail refusal (server-defined range, clear of MCP's and A2A's).
pub const JSONRPC_GUARDRAIL: i64 = -32031;

/// Writes a refusal: the documented error body (400), or on MCP/A2A a JSON-RPC error with the
/// request's `id` (HTTP 400 too, `error.data.code` = `GUARDRAIL_VIOLATION`).
pub async fn write_refusal(
    session: &mut pingora_proxy::Session,
    ctx: &mut RequestCtx,
    refusal: Refusal,
) -> pingora_core::Result<()> {
    let err = refusal.error();
    let Refusal::Violation {
        jsonrpc_id: Some(id),
    } = refusal
    else {
        return crate::pipeline::respond::error_response(session, ctx, err).await;
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": JSONRPC_GUARDRAIL,
            "message": "blocked by guardrail",
            "data": {"code": err.kind().code, "request_id": ctx.request_id},
        }
    });
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut resp = pingora_http::ResponseHeader::build(400, Some(4))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", bytes.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    ctx.error = Some(err);
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(bytes), true).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
