//! [`IntegrityStage`] as a pipeline stage: `tools/call` requests refused (or flagged) on the
//! parsed body, `tools/list` answers filtered on the parsed events and JSON answers, its
//! findings in the audit record and `palisade_tool_integrity_findings_total`.

use std::sync::Arc;

use prometheus::IntCounterVec;
use serde_json::Value;

use super::verdict::{bounded, finding, Finding, Kind};
use super::RouteIntegrity;
use crate::audit::record::AuditRecord;
use crate::error::ProxyError;
use crate::protocol::event::Item;
use crate::protocol::message::Message;
use crate::protocol::{jsonrpc, mcp};
use crate::stage::{Exchange, Refusal, Stage};

/// Most findings one request keeps for its audit record (the counter counts them all).
const MAX_FINDINGS: usize = 64;

/// Tool-definition integrity for every route; routes without `tool_integrity` are not checked.
pub struct IntegrityStage {
    /// Each route's pins and settings, by route id.
    routes: Vec<Option<Arc<RouteIntegrity>>>,
    findings: IntCounterVec,
}

/// Per-request integrity state.
#[derive(Debug, Default)]
pub struct State {
    /// Ids of `tools/list` requests, whose answers are checked.
    list_ids: Vec<Value>,
    /// Tools that were not as pinned, for the audit record.
    findings: Vec<Finding>,
}

/// Registers `palisade_tool_integrity_findings_total` in `registry` (once per process: the
/// counter outlives config reloads).
pub fn register_metrics(registry: &prometheus::Registry) -> prometheus::Result<IntCounterVec> {
    let findings = IntCounterVec::new(
        prometheus::Opts::new(
            "palisade_tool_integrity_findings_total",
            "MCP tools not as pinned in the route's tool lock, by kind (changed, new, poisoned, \
             collision) and action (blocked, flagged).",
        ),
        &["route", "kind", "action"],
    )?;
    registry.register(Box::new(findings.clone()))?;
    Ok(findings)
}

impl IntegrityStage {
    /// The stage over each route's integrity state (indexed by route id), counting findings in
    /// `findings` (from [`register_metrics`], once per process).
    pub fn new(routes: Vec<Option<Arc<RouteIntegrity>>>, findings: IntCounterVec) -> Self {
        Self { routes, findings }
    }

    /// Takes over what `before` (the previous configuration's stage) saw of tools that are
    /// pinned alike in both: a config reload does not make a changed tool callable again until
    /// the next list. A tool re-pinned since starts afresh.
    pub fn carry_over(&self, before: &IntegrityStage) {
        for r in self.routes.iter().flatten() {
            let old = before.routes.iter().flatten().find(|o| o.route == r.route);
            if let Some(old) = old {
                r.carry_over(old);
            }
        }
    }

    fn route(&self, x: &Exchange<'_>) -> Option<&RouteIntegrity> {
        self.routes.get(x.route.id)?.as_deref()
    }

    /// Counts, logs and keeps one finding.
    fn note(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        r: &RouteIntegrity,
        tool: &str,
        kind: &Kind,
    ) {
        let finding = finding(tool, kind, r.mode);
        self.findings
            .with_label_values(&[r.route.as_str(), finding.kind, finding.action])
            .inc();
        tracing::warn!(
            request_id = %x.request_id,
            route = %r.route,
            integrity.tool = %finding.tool,
            integrity.kind = finding.kind,
            integrity.action = finding.action,
            integrity.rule = finding.rule.as_deref().unwrap_or(""),
            "tool not as pinned"
        );
        if state.findings.len() < MAX_FINDINGS && !state.findings.contains(&finding) {
            state.findings.push(finding);
        }
    }

    /// Removes blocked tools from the `tools/list` answers among `answer` (one or a batch).
    fn filter_answer(&self, x: &Exchange<'_>, state: &mut State, answer: &mut Value) {
        let Some(r) = self.route(x) else {
            return;
        };
        if state.list_ids.is_empty() {
            return;
        }
        let list_ids = std::mem::take(&mut state.list_ids);
        let mut one = |msg: &mut Value| {
            let Some(tools) = mcp::listed_tools(msg, &list_ids) else {
                return;
            };
            let verdicts = r.check_list(tools);
            let mut keep = Vec::with_capacity(verdicts.len());
            for (name, kind) in &verdicts {
                keep.push(match kind {
                    None => true,
                    Some(kind) => {
                        self.note(x, state, r, name, kind);
                        !kind.blocks(r.mode)
                    }
                });
            }
            let mut kept = keep.into_iter();
            tools.retain(|_| kept.next().unwrap_or(false));
        };
        match answer {
            Value::Array(list) => list.iter_mut().for_each(&mut one),
            msg => one(msg),
        }
        state.list_ids = list_ids;
    }
}

#[async_trait::async_trait]
impl Stage for IntegrityStage {
    type State = State;

    /// `tools/call` of a tool that is not as pinned: refused under `block` (and for poisoning
    /// or a name collision), noted under `flag`; `tools/list` ids remembered for the answer.
    fn on_message(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        message: &mut Message,
    ) -> Result<(), Refusal> {
        let (Some(r), Some(batch)) = (self.route(x), message.jsonrpc()) else {
            return Ok(());
        };
        let mut culprits = Vec::new();
        let mut refusal = None;
        for m in &batch.messages {
            match mcp::classify(m) {
                Ok(mcp::Call::ListTools) => state.list_ids.push(jsonrpc::id(m)),
                Ok(mcp::Call::Tool { name, .. }) => {
                    let Some(kind) = r.check_call(name) else {
                        continue;
                    };
                    self.note(x, state, r, name, &kind);
                    if kind.blocks(r.mode) {
                        culprits.push(jsonrpc::id(m));
                        refusal.get_or_insert(ProxyError::ToolNotApproved {
                            tool: bounded(name),
                            reason: kind.reason(),
                        });
                    }
                }
                // A malformed call is authorization's to refuse (it runs next).
                Ok(mcp::Call::Other) | Err(_) => {}
            }
        }
        match refusal {
            Some(error) => Err(Refusal { error, culprits }),
            None => Ok(()),
        }
    }

    fn on_events(
        &self,
        x: &Exchange<'_>,
        state: &mut State,
        items: &mut Vec<Item>,
        _end: bool,
    ) -> Result<(), ProxyError> {
        if state.list_ids.is_empty() {
            return Ok(());
        }
        for item in items.iter_mut() {
            if let Item::Event(e) = item {
                if let Some(v) = e.value_mut() {
                    self.filter_answer(x, state, v);
                }
            }
        }
        Ok(())
    }

    fn on_answer(&self, x: &Exchange<'_>, state: &mut State, answer: &mut Value) {
        self.filter_answer(x, state, answer);
    }

    fn audit(&self, state: &State, record: &mut AuditRecord) {
        record.tool_integrity.extend(state.findings.iter().cloned());
    }
}
