//! One agent run: the model/tool loop, as a lazy stream of AG-UI events.
//!
//! [`run_events`] returns a stream that drives the run as it is polled: the run future and the
//! channel its events go through are polled together by the response body, so when the client
//! disconnects and the server drops the body, the run stops at its next await point — no task
//! outlives it — and is recorded as `cancelled`. The channel is bounded: a slow reader slows the
//! run down instead of buffering it.
//!
//! Event order: `RUN_STARTED`; per model turn `TEXT_MESSAGE_START/CONTENT…/END` for its text
//! and, per tool call, `TOOL_CALL_START`, `TOOL_CALL_ARGS`, `TOOL_CALL_END`, `TOOL_CALL_RESULT`;
//! for a plan `STATE_SNAPSHOT` (the steps and their status) and `STEP_STARTED` /
//! `STEP_FINISHED` around each step; last `RUN_FINISHED`, or `RUN_ERROR` (codes `MODEL_ERROR`,
//! `MAX_ITERATIONS`). Tool errors are results the model sees, never run errors.

mod genai;
mod plan;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use opentelemetry::trace::SpanKind;
use palisade_wire::agui::{Event, Role, RunAgentInput};
use tracing::Instrument;

use crate::identity::Caller;
use crate::metrics::Metrics;
use crate::model::{
    from_agui, ChatMessage, ChatRole, Model, ModelChunk, ModelError, ToolCallRequest, ToolSpec,
    PLAN_TOOL,
};
use crate::otel::{RunSpan, Telemetry};
use crate::store::{RunRecord, RunStatus, SessionStore, ToolCallRecord};
use crate::tools::{ToolCatalog, ToolContext, Toolbox};
use crate::trace::TraceContext;

/// The number of runs alive. Cloning shares the counter.
#[derive(Debug, Clone, Default)]
pub struct ActiveRuns(Arc<AtomicUsize>);

impl ActiveRuns {
    /// Runs currently streaming.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn enter(&self) -> ActiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.clone())
    }
}

/// Counts a run as active until dropped.
#[derive(Debug)]
struct ActiveGuard(ActiveRuns);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every run shares.
pub struct Runtime {
    /// The model.
    pub model: Arc<dyn Model>,
    /// The tools.
    pub catalog: Arc<ToolCatalog>,
    /// Most model turns per run.
    pub max_iterations: u32,
    /// Where runs are recorded (none: not recorded).
    pub store: Option<Arc<dyn SessionStore>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Runs alive.
    pub runs: ActiveRuns,
    /// Span export (off by default).
    pub telemetry: Telemetry,
    /// Tool calls the proxy may announce as held for an approval.
    pub approvals: Arc<crate::approvals::ApprovalWatch>,
}

/// One run request, after identification.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The AG-UI input.
    pub input: RunAgentInput,
    /// Who asked.
    pub caller: Caller,
    /// The caller's trace context (the proxy's span is the parent of the run's).
    pub trace: TraceContext,
}

/// Why a run ended with `RUN_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `RUN_ERROR.code`.
    pub code: &'static str,
    /// `RUN_ERROR.message`.
    pub message: String,
}

impl Failure {
    fn model(e: &ModelError) -> Self {
        Self {
            code: "MODEL_ERROR",
            message: format!("the model failed: {e}"),
        }
    }
}

/// The events of one run, in protocol order, produced as the stream is polled.
pub fn run_events(rt: Arc<Runtime>, req: RunRequest) -> impl Stream<Item = Event> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Event>(16);
    let mut trace = req.trace.clone();
    let mut otel = rt.telemetry.span("agent.run", SpanKind::Server, &mut trace);
    otel.attrs([
        ("agui.run_id", req.input.run_id.clone()),
        ("agui.thread_id", req.input.thread_id.clone()),
        ("palisade.principal", req.caller.principal.clone()),
    ]);
    let span = tracing::info_span!(
        "run",
        run.id = %req.input.run_id,
        thread.id = %req.input.thread_id,
        trace_id = %trace.trace_id,
        principal = %req.caller.principal,
    );
    let driver = drive(rt, req, trace, otel, tx).instrument(span);
    let driver = futures::stream::once(driver).filter_map(|()| async { None });
    futures::stream::select(rx, driver)
}

/// A run's recording state; dropping it before [`RunState::end`] records a cancellation.
struct RunState {
    tx: mpsc::Sender<Event>,
    record: RunRecord,
    store: Option<Arc<dyn SessionStore>>,
    metrics: Metrics,
    started: Instant,
    ended: bool,
    _active: ActiveGuard,
}

impl RunState {
    /// Records and sends one event (a gone client is noticed by the drop, not here).
    async fn emit(&mut self, event: Event) {
        let cap = self
            .store
            .as_ref()
            .map_or(usize::MAX, |s| s.max_events_per_run());
        self.record.push_event(event.to_json(), cap);
        let _ = self.tx.send(event).await;
    }

    async fn end(&mut self, status: RunStatus) {
        self.ended = true;
        if self.record.finished_at.is_none() {
            self.record.end(status);
        }
        let outcome = status.as_str();
        self.metrics.run_ended(outcome, self.started.elapsed());
        tracing::info!(
            run.status = outcome,
            tool_calls = self.record.tool_calls.len(),
            "run ended"
        );
        if let Some(store) = &self.store {
            if let Err(e) = store.finish_run(&self.record).await {
                tracing::error!(error = %e, "cannot record the run's end");
            }
        }
    }
}

impl Drop for RunState {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.record.end(RunStatus::Cancelled);
        self.metrics.run_ended("cancelled", self.started.elapsed());
        tracing::info!(run.id = %self.record.run_id, "run cancelled: client went away");
        if let (Some(store), Ok(handle)) =
            (self.store.clone(), tokio::runtime::Handle::try_current())
        {
            let record = self.record.clone();
            handle.spawn(async move {
                if let Err(e) = store.finish_run(&record).await {
                    tracing::error!(error = %e, "cannot record the run's cancellation");
                }
            });
        }
    }
}

async fn drive(
    rt: Arc<Runtime>,
    req: RunRequest,
    trace: TraceContext,
    mut otel: RunSpan,
    tx: mpsc::Sender<Event>,
) {
    let input = req.input;
    let principal = (!req.caller.principal.is_empty()).then(|| req.caller.principal.clone());
    rt.metrics.run_started();
    let mut st = RunState {
        tx,
        record: RunRecord::started(&input.run_id, &input.thread_id, principal),
        store: rt.store.clone(),
        metrics: rt.metrics.clone(),
        started: Instant::now(),
        ended: false,
        _active: rt.runs.enter(),
    };
    tracing::info!(messages = input.messages.len(), "run started");
    st.emit(Event::RunStarted {
        thread_id: input.thread_id.clone(),
        run_id: input.run_id.clone(),
        parent_run_id: input.parent_run_id.clone(),
    })
    .await;
    if let Some(store) = &rt.store {
        if let Err(e) = store.start_run(&st.record).await {
            tracing::error!(error = %e, "cannot record the run's start");
        }
    }
    let ctx = ToolContext {
        caller: req.caller,
        traceparent: Some(trace.traceparent()),
        run_id: input.run_id.clone(),
        request_id: None,
    };
    let toolbox = rt.catalog.toolbox(&ctx).await;
    let mut specs = toolbox.specs();
    // Front-end tools (AG-UI `tools`, already filtered by the proxy) run in the client.
    let frontend: BTreeSet<String> = input.tools.iter().map(|t| t.name.clone()).collect();
    specs.extend(input.tools.iter().map(|t| ToolSpec {
        name: t.name.clone(),
        description: t.description.clone(),
        parameters: t.parameters.clone(),
    }));
    specs.push(ToolSpec::plan());
    let mut agent = Agent {
        rt: &rt,
        toolbox,
        specs,
        frontend,
        ctx,
        trace,
        iterations: 0,
    };
    let mut conv = from_agui(&input.messages);
    match agent.run(&mut conv, &mut st, true).await {
        Ok(answer) => {
            st.record.finish_with_message(&answer);
            st.emit(Event::RunFinished {
                thread_id: input.thread_id,
                run_id: input.run_id,
                result: None,
            })
            .await;
            st.end(RunStatus::Finished).await;
        }
        Err(f) => {
            tracing::warn!(code = f.code, message = %f.message, "run failed");
            otel.error(&f.message);
            st.record.error = Some(format!("{}: {}", f.code, f.message));
            st.emit(Event::RunError {
                message: f.message,
                code: Some(f.code.into()),
            })
            .await;
            st.end(RunStatus::Error).await;
        }
    }
}

/// The model/tool loop of one run.
struct Agent<'a> {
    rt: &'a Runtime,
    toolbox: Toolbox,
    specs: Vec<ToolSpec>,
    frontend: BTreeSet<String>,
    ctx: ToolContext,
    /// The run span's context: the parent of turn and tool spans.
    trace: TraceContext,
    iterations: u32,
}

/// One model turn's outcome.
struct Turn {
    message_id: String,
    text: String,
    calls: Vec<ToolCallRequest>,
}

impl Agent<'_> {
    /// Turns until the model answers without tool calls; returns that answer. `allow_plan`:
    /// whether a [`PLAN_TOOL`] call is executed (top level) or refused (inside a step).
    async fn run(
        &mut self,
        conv: &mut Vec<ChatMessage>,
        st: &mut RunState,
        allow_plan: bool,
    ) -> Result<String, Failure> {
        loop {
            if self.iterations >= self.rt.max_iterations {
                return Err(Failure {
                    code: "MAX_ITERATIONS",
                    message: format!(
                        "the run reached its limit of {} model turns",
                        self.rt.max_iterations
                    ),
                });
            }
            self.iterations += 1;
            let turn = self.turn(conv, st).await?;
            if turn.calls.is_empty() {
                return Ok(turn.text);
            }
            conv.push(ChatMessage {
                tool_calls: turn.calls.clone(),
                ..ChatMessage::text(ChatRole::Assistant, turn.text.clone())
            });
            for (i, call) in turn.calls.iter().enumerate() {
                if call.name == PLAN_TOOL {
                    match (allow_plan, plan::steps(&call.arguments)) {
                        (true, Ok(steps)) => {
                            let note = format!("executing {} steps", steps.len());
                            conv.push(ChatMessage::tool_result(&call.id, note));
                            // Every call needs its result: the plan replaces the turn's others.
                            for skipped in &turn.calls[i + 1..] {
                                conv.push(ChatMessage::tool_result(
                                    &skipped.id,
                                    "error: not run: the plan replaces this call",
                                ));
                            }
                            return Box::pin(self.execute_plan(conv, st, steps)).await;
                        }
                        (false, _) => conv.push(ChatMessage::tool_result(
                            &call.id,
                            "error: plans cannot be nested inside a plan step",
                        )),
                        (true, Err(e)) => {
                            conv.push(ChatMessage::tool_result(&call.id, format!("error: {e}")))
                        }
                    }
                    continue;
                }
                if self.frontend.contains(&call.name) {
                    // The client runs front-end tools; it continues with a new run.
                    self.announce_call(call, &turn.message_id, st).await;
                    return Ok(turn.text);
                }
                self.call_tool(call, &turn.message_id, conv, st).await;
            }
        }
    }

    /// One model turn: streams its text as a text message, collects its tool calls. The turn is
    /// a GenAI client span (`chat {model}`) whose `traceparent` the model request carries.
    async fn turn(&self, conv: &[ChatMessage], st: &mut RunState) -> Result<Turn, Failure> {
        let metrics = &self.rt.metrics;
        let (mut call, cx) = genai::ModelCall::start(self.rt, &self.trace, &self.ctx.caller);
        let mut chunks = match self.rt.model.turn(conv, &self.specs, &cx).await {
            Ok(chunks) => chunks,
            Err(e) => {
                metrics.model_turn(false);
                call.end(Some(&e));
                return Err(Failure::model(&e));
            }
        };
        let message_id = uuid::Uuid::new_v4().to_string();
        let mut turn = Turn {
            message_id: message_id.clone(),
            text: String::new(),
            calls: Vec::new(),
        };
        let mut open = false;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(ModelChunk::Text(delta)) => {
                    if !open {
                        open = true;
                        st.emit(Event::TextMessageStart {
                            message_id: message_id.clone(),
                            role: Role::Assistant,
                        })
                        .await;
                    }
                    turn.text.push_str(&delta);
                    st.emit(Event::TextMessageContent {
                        message_id: message_id.clone(),
                        delta,
                    })
                    .await;
                }
                Ok(ModelChunk::ToolCall(tool_call)) => turn.calls.push(tool_call),
                Ok(ModelChunk::Report(report)) => call.report(report),
                Err(e) => {
                    if open {
                        st.emit(Event::TextMessageEnd { message_id }).await;
                    }
                    metrics.model_turn(false);
                    call.end(Some(&e));
                    return Err(Failure::model(&e));
                }
            }
        }
        if open {
            st.emit(Event::TextMessageEnd { message_id }).await;
        }
        metrics.model_turn(true);
        call.end(None);
        Ok(turn)
    }

    /// `TOOL_CALL_START`, `TOOL_CALL_ARGS`, `TOOL_CALL_END` for `call`.
    async fn announce_call(&self, call: &ToolCallRequest, parent: &str, st: &mut RunState) {
        st.emit(Event::ToolCallStart {
            tool_call_id: call.id.clone(),
            tool_call_name: call.name.clone(),
            parent_message_id: Some(parent.to_owned()),
        })
        .await;
        if !call.arguments.is_empty() {
            st.emit(Event::ToolCallArgs {
                tool_call_id: call.id.clone(),
                delta: call.arguments.clone(),
            })
            .await;
        }
        st.emit(Event::ToolCallEnd {
            tool_call_id: call.id.clone(),
        })
        .await;
    }

    /// Runs one tool call; its result (or error) goes to the client, the record and the model.
    async fn call_tool(
        &self,
        call: &ToolCallRequest,
        parent: &str,
        conv: &mut Vec<ChatMessage>,
        st: &mut RunState,
    ) {
        self.announce_call(call, parent, st).await;
        // The tool's span is the parent named on its MCP / A2A requests.
        let mut span_trace = self.trace.clone();
        let mut span = self
            .rt
            .telemetry
            .span("tool.call", SpanKind::Client, &mut span_trace);
        span.attrs([("tool.name", call.name.clone())]);
        let request_id = uuid::Uuid::new_v4().to_string();
        let ctx = ToolContext {
            traceparent: Some(span_trace.traceparent()),
            request_id: Some(request_id.clone()),
            ..self.ctx.clone()
        };
        // While the call runs, the proxy may announce that it holds it for an approver
        // (`crate::approvals`): the stream shows it, then the outcome.
        let mut watch = self.rt.approvals.register(&request_id);
        let running = self
            .toolbox
            .call(&call.name, &call.arguments, &ctx, &self.rt.metrics);
        tokio::pin!(running);
        let mut held: Option<serde_json::Value> = None;
        let result = loop {
            tokio::select! {
                result = &mut running => break result,
                Some(notice) = watch.notices.recv(), if held.is_none() => {
                    let id = notice.get("id").cloned().unwrap_or_default();
                    st.emit(approval_event("pending", &id, call, notice.get("expires_at"))).await;
                    held = Some(id);
                }
            }
        };
        drop(watch);
        if let Some(id) = &held {
            let status = crate::approvals::outcome(&result);
            st.emit(approval_event(status, id, call, None)).await;
        }
        if let Err(e) = &result {
            span.error(&e.0);
        }
        let (content, ok, err) = match result {
            Ok(text) => (text.clone(), Some(text), None),
            Err(e) => {
                tracing::info!(tool = %call.name, error = %e, "tool call failed");
                (format!("error: {e}"), None, Some(e.0))
            }
        };
        st.record.tool_calls.push(ToolCallRecord {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            result: ok,
            error: err,
        });
        st.emit(Event::ToolCallResult {
            message_id: uuid::Uuid::new_v4().to_string(),
            tool_call_id: call.id.clone(),
            content: content.clone(),
            role: Some(Role::Tool),
        })
        .await;
        conv.push(ChatMessage::tool_result(&call.id, content));
    }
}

/// The `CUSTOM` event `palisade.approval` of a held call (`docs/approvals.md`).
fn approval_event(
    status: &str,
    id: &serde_json::Value,
    call: &ToolCallRequest,
    expires_at: Option<&serde_json::Value>,
) -> Event {
    let mut value = serde_json::json!({
        "status": status,
        "id": id,
        "tool": call.name,
        "toolCallId": call.id,
    });
    if let Some(at) = expires_at {
        value["expiresAt"] = at.clone();
    }
    Event::Custom {
        name: crate::approvals::EVENT_NAME.to_string(),
        value,
    }
}

#[cfg(test)]
mod tests;
