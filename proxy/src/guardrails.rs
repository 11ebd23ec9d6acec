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
pub mod walk;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::error::FieldError;
use crate::error::ProxyError;
use crate::protocol::event::Item;
use crate::protocol::message::Message;
use crate::stage::{Exchange, Refusal as StageRefusal, ResponseHead, Stage};
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
        out.insert("default".into(), builtin_default());
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

/// The built-in `default` rule set, compiled once per process and shared by every configuration:
/// it depends on nothing but the binary, and every validation (startup, reload, `palisade
/// validate`) needs it — compiling it was most of the cost of validating a config without
/// policies.
fn builtin_default() -> Arc<RuleSet> {
    static DEFAULT: OnceLock<Arc<RuleSet>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(RuleSet::builtin_default()))
        .clone()
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

/// Guardrails as a pipeline stage: the rule set of each route (by route id; `None`: not
/// inspected).
pub struct GuardrailsStage {
    sets: Vec<Option<Arc<RuleSet>>>,
    metrics: Metrics,
}

/// Per-request guardrail state.
#[derive(Default)]
pub struct State {
    /// What fired (rule ids, locations, actions; never content).
    pub findings: Findings,
    /// Incremental depth check of JSON bodies on routes that speak no dialect.
    depth: Option<DepthScanner>,
    /// Response filtering, once the response head said what it is.
    response: Option<stream::ResponseGuard>,
}

impl State {
    /// Whether the response stream is scanned (its events are then read as JSON or text).
    pub fn inspects_response(&self) -> bool {
        self.response.is_some()
    }
}

impl GuardrailsStage {
    /// The stage with each route's rule set, indexed by route id.
    pub fn new(sets: Vec<Option<Arc<RuleSet>>>, metrics: Metrics) -> Self {
        Self { sets, metrics }
    }

    fn rules(&self, x: &Exchange<'_>) -> Option<&Arc<RuleSet>> {
        self.sets.get(x.route.id).and_then(Option::as_ref)
    }
}

#[async_trait::async_trait]
impl Stage for GuardrailsStage {
    type State = State;

    /// Last among the admission stages (a refused or limited request is never inspected):
    /// JSON bodies of plain routes are depth-checked as they stream.
    async fn on_request(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        req: &pingora_http::RequestHeader,
    ) -> Result<(), ProxyError> {
        if self.rules(x).is_some()
            && !x.route.protocol.is_inspected()
            && req
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
        {
            state.depth = Some(DepthScanner::default());
        }
        Ok(())
    }

    fn on_body_chunk(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        chunk: &[u8],
    ) -> Result<(), ProxyError> {
        let (Some(rs), Some(depth)) = (self.rules(x), state.depth.as_mut()) else {
            return Ok(());
        };
        if depth.feed(chunk) > rs.checks.max_json_depth {
            return Err(ProxyError::InvalidRequest(format!(
                "body: JSON nested deeper than {} levels",
                rs.checks.max_json_depth
            )));
        }
        Ok(())
    }

    /// Before body-aware authorization: a redaction edits the value authorization decides on
    /// and the pipeline forwards.
    fn on_message(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        message: &mut Message,
    ) -> Result<(), StageRefusal> {
        let Some(rs) = self.rules(x) else {
            return Ok(());
        };
        let protocol = x.route.protocol;
        let mut json = match message {
            Message::Agui(v) => std::mem::take(v),
            Message::JsonRpc(b) => b.to_value(),
        };
        let (result, found) = match request::inspect(rs, protocol, &mut json) {
            Ok(found) => (Ok(()), found),
            Err((refusal, found)) => (Err(refusal), found),
        };
        for (location, fired) in &found.fired {
            record(&self.metrics, &mut state.findings, rs, location, fired);
        }
        match message {
            Message::Agui(v) => *v = json,
            Message::JsonRpc(b) => {
                if found.changed {
                    if let Ok(batch) = crate::protocol::jsonrpc::Batch::from_value(json) {
                        *b = batch;
                    }
                }
            }
        }
        result.map_err(|refusal| StageRefusal {
            error: refusal.error(),
            culprits: match refusal {
                Refusal::Violation {
                    jsonrpc_id: Some(id),
                } => vec![id],
                _ => Vec::new(),
            },
        })
    }

    fn on_response(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        head: &ResponseHead,
        _resp: &mut pingora_http::ResponseHeader,
    ) -> Result<(), ProxyError> {
        state.response = self
            .rules(x)
            .and_then(|rs| stream::pick(rs, x.route.protocol, head, x.request_id));
        Ok(())
    }

    /// After tool filtering: only what the client may see is scanned. A `stop` leaves its
    /// closing items and ends the stream.
    fn on_events(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        items: &mut Vec<Item>,
        end: bool,
    ) -> Result<(), ProxyError> {
        let (Some(rs), Some(guard)) = (self.rules(x), state.response.as_mut()) else {
            return Ok(());
        };
        let mut rec = stream::Recorder {
            metrics: &self.metrics,
            findings: &mut state.findings,
        };
        let stopped = match guard {
            stream::ResponseGuard::Agui(g) => {
                match g.filter(rs, &mut rec, std::mem::take(items), end) {
                    Ok(kept) => {
                        *items = kept;
                        false
                    }
                    Err(closing) => {
                        *items = closing;
                        true
                    }
                }
            }
            stream::ResponseGuard::Sse { location, jsonrpc } => {
                stream::sse_items(rs, &mut rec, items, *location, *jsonrpc).is_err()
            }
        };
        if stopped {
            state.response = None;
            return Err(ProxyError::GuardrailViolation);
        }
        Ok(())
    }

    fn on_answer(&self, x: &Exchange<'_>, state: &mut State, answer: &mut serde_json::Value) {
        let Some(rs) = self.rules(x).filter(|rs| rs.has_side(Side::Output)) else {
            return;
        };
        let mut rec = stream::Recorder {
            metrics: &self.metrics,
            findings: &mut state.findings,
        };
        stream::json_answer(rs, &mut rec, answer, stream::location(x.route.protocol));
    }

    fn audit(&self, state: &State, record: &mut crate::audit::record::AuditRecord) {
        record.guardrails = state
            .findings
            .as_slice()
            .iter()
            .map(|f| crate::audit::record::AuditFinding {
                action: f.action.as_str(),
                count: f.count,
                location: f.location.clone(),
                rule: f.rule.clone(),
            })
            .collect();
    }
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

#[cfg(test)]
mod tests;
