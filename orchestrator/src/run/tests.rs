//! The run loop with the offline model and built-in tools.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use palisade_wire::agui::{Event, Message, Role, RunAgentInput, Tool};
use serde_json::Value;

use super::{run_events, ActiveRuns, RunRequest, Runtime};
use crate::config::ToolsConfig;
use crate::identity::Caller;
use crate::metrics::Metrics;
use crate::model::OfflineModel;
use crate::store::{self, RunStatus, SessionStore, StoreConfig};
use crate::tools::{builtin, ToolCatalog};

fn runtime(max_iterations: u32, store: Option<Arc<dyn SessionStore>>) -> Arc<Runtime> {
    Arc::new(Runtime {
        model: Arc::new(OfflineModel::new(Duration::ZERO)),
        catalog: Arc::new(ToolCatalog::new(
            builtin::all(&ToolsConfig::default()),
            vec![],
            Duration::from_secs(5),
        )),
        max_iterations,
        store,
        metrics: Metrics::default(),
        runs: ActiveRuns::default(),
        telemetry: crate::otel::Telemetry::default(),
        approvals: Default::default(),
    })
}

fn request(text: &str) -> RunRequest {
    RunRequest {
        input: RunAgentInput {
            thread_id: "t1".into(),
            run_id: "r1".into(),
            parent_run_id: None,
            state: Value::Null,
            messages: vec![Message::text_message("u1", Role::User, text)],
            tools: vec![],
            context: vec![],
            forwarded_props: Value::Null,
        },
        caller: Caller {
            principal: "User::\"iss|alice\"".into(),
            roles: vec!["user".into()],
            ..Caller::default()
        },
        trace: crate::trace::TraceContext::from_header(None),
    }
}

async fn run(rt: &Arc<Runtime>, req: RunRequest) -> Vec<Event> {
    run_events(rt.clone(), req).collect().await
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

/// The text of all `TEXT_MESSAGE_CONTENT` events.
fn text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TextMessageContent { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect()
}

fn results(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCallResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_plain_run_streams_text_between_start_and_finish() {
    let rt = runtime(8, None);
    let events = run(&rt, request("hi there")).await;
    assert_eq!(
        types(&events),
        [
            "RUN_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "RUN_FINISHED"
        ]
    );
    assert_eq!(text(&events), "hi there");
    assert_eq!(rt.runs.get(), 0);
}

#[tokio::test]
async fn a_tool_run_calls_the_tool_and_answers_with_its_result() {
    let rt = runtime(8, None);
    let events = run(&rt, request("use calculator 2+3*4")).await;
    assert_eq!(
        types(&events)[..5],
        [
            "RUN_STARTED",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT"
        ]
    );
    let Event::ToolCallStart {
        tool_call_name,
        tool_call_id,
        ..
    } = &events[1]
    else {
        unreachable!()
    };
    assert_eq!(tool_call_name, "calculator");
    assert!(
        matches!(&events[2], Event::ToolCallArgs { delta, tool_call_id: id } if delta == r#"{"expression":"2+3*4"}"# && id == tool_call_id)
    );
    assert_eq!(results(&events), ["14"]);
    assert_eq!(text(&events), "calculator returned: 14");
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"));
}

#[tokio::test]
async fn tool_errors_go_back_to_the_model_which_recovers() {
    let rt = runtime(8, None);
    let events = run(&rt, request("use calculator 1/0")).await;
    assert_eq!(results(&events), ["error: division by zero"]);
    assert_eq!(
        text(&events),
        "The tool calculator failed: division by zero"
    );
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"));
    let events = run(&rt, request("mcp no_such_tool")).await;
    assert_eq!(results(&events), ["error: unknown tool `no_such_tool`"]);
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"));
}

#[tokio::test]
async fn a_plan_runs_its_steps_in_order_feeding_results_back() {
    let rt = runtime(8, None);
    let events = run(&rt, request("plan: use calculator 1+1; use calculator 2*5")).await;
    let t = types(&events);
    assert_eq!(t[..3], ["RUN_STARTED", "STATE_SNAPSHOT", "STEP_STARTED"]);
    let steps: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { step_name } => Some(step_name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        ["step 1: use calculator 1+1", "step 2: use calculator 2*5"]
    );
    assert_eq!(
        t.iter().filter(|x| **x == "STEP_FINISHED").count(),
        2,
        "{t:?}"
    );
    assert_eq!(results(&events), ["2", "10"]);
    let Some(Event::StateSnapshot { snapshot }) = events
        .iter()
        .rfind(|e| matches!(e, Event::StateSnapshot { .. }))
    else {
        unreachable!()
    };
    assert_eq!(snapshot["plan"]["steps"][1]["status"], "done");
    let answer = text(&events);
    assert!(
        answer.ends_with("Plan complete: 1. calculator returned: 2 2. calculator returned: 10"),
        "{answer}"
    );
    assert_eq!(t.last(), Some(&"RUN_FINISHED"));
}

#[tokio::test]
async fn a_model_failure_ends_the_run_with_run_error() {
    let rt = runtime(8, None);
    let events = run(&rt, request("fail please")).await;
    assert_eq!(types(&events), ["RUN_STARTED", "RUN_ERROR"]);
    assert!(matches!(&events[1], Event::RunError { code: Some(c), .. } if c == "MODEL_ERROR"));
}

#[tokio::test]
async fn a_runaway_tool_loop_ends_at_max_iterations() {
    let rt = runtime(3, None);
    let events = run(&rt, request("loop forever")).await;
    let t = types(&events);
    assert_eq!(t.iter().filter(|x| **x == "TOOL_CALL_START").count(), 3);
    assert!(
        matches!(events.last(), Some(Event::RunError { code: Some(c), .. }) if c == "MAX_ITERATIONS"),
        "{t:?}"
    );
    assert!(!t.contains(&"RUN_FINISHED"));
}

#[tokio::test]
async fn front_end_tools_are_announced_for_the_client_to_run() {
    let rt = runtime(8, None);
    let mut req = request("mcp show_chart {\"series\":[1,2]}");
    req.input.tools = vec![Tool {
        name: "show_chart".into(),
        description: "draws".into(),
        parameters: Value::Null,
    }];
    let events = run(&rt, req).await;
    assert_eq!(
        types(&events),
        [
            "RUN_STARTED",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "RUN_FINISHED"
        ]
    );
}

#[tokio::test]
async fn runs_are_recorded_finished_or_cancelled() {
    let store = store::open(
        &StoreConfig::sqlite(":memory:"),
        &crate::tls::Trust::default(),
    )
    .await
    .unwrap();
    let rt = runtime(8, Some(store.clone()));
    let events = run(&rt, request("use calculator 6*7")).await;
    let rec = store.run("r1").await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Finished);
    assert_eq!(rec.principal.as_deref(), Some("User::\"iss|alice\""));
    assert_eq!(
        rec.final_message.as_deref(),
        Some("calculator returned: 42")
    );
    assert_eq!(rec.tool_calls.len(), 1);
    assert_eq!(rec.tool_calls[0].result.as_deref(), Some("42"));
    assert_eq!(rec.events.len(), events.len());
    assert_eq!(rec.events[0], events[0].to_json());

    // A slow run dropped after its first event: counted out at once, recorded as cancelled.
    let slow = Arc::new(Runtime {
        model: Arc::new(OfflineModel::new(Duration::from_secs(3600))),
        ..Arc::try_unwrap(runtime(8, Some(store.clone())))
            .ok()
            .unwrap()
    });
    let mut req = request("a b c");
    req.input.run_id = "r2".into();
    let mut stream = Box::pin(run_events(slow.clone(), req));
    assert!(matches!(
        stream.next().await,
        Some(Event::RunStarted { .. })
    ));
    assert_eq!(slow.runs.get(), 1);
    drop(stream);
    assert_eq!(slow.runs.get(), 0);
    let mut status = None;
    for _ in 0..200 {
        status = store.run("r2").await.unwrap().map(|r| r.status);
        if status == Some(RunStatus::Cancelled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, Some(RunStatus::Cancelled));
}

/// A model that plays back scripted turns and records every conversation it was given.
struct Scripted {
    turns: std::sync::Mutex<Vec<Vec<crate::model::ModelChunk>>>,
    seen: std::sync::Mutex<Vec<Vec<crate::model::ChatMessage>>>,
}

#[async_trait::async_trait]
impl crate::model::Model for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn provider(&self) -> &'static str {
        "palisade.scripted"
    }

    async fn turn(
        &self,
        messages: &[crate::model::ChatMessage],
        _tools: &[crate::model::ToolSpec],
        _cx: &crate::model::TurnContext,
    ) -> Result<crate::model::ChunkStream, crate::model::ModelError> {
        self.seen.lock().unwrap().push(messages.to_vec());
        let turn = self.turns.lock().unwrap().remove(0);
        Ok(futures::stream::iter(turn.into_iter().map(Ok)).boxed())
    }
}

#[tokio::test]
async fn every_call_of_a_turn_gets_a_result_even_when_a_plan_takes_over() {
    use crate::model::{ChatRole, ModelChunk, ToolCallRequest};
    let call = |id: &str, name: &str, args: &str| {
        ModelChunk::ToolCall(ToolCallRequest {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        })
    };
    let model = Arc::new(Scripted {
        turns: std::sync::Mutex::new(vec![
            vec![
                ModelChunk::Text("Planning.".into()),
                call("c1", "calculator", r#"{"expression":"1+1"}"#),
                call(
                    "c2",
                    "submit_plan",
                    r#"{"steps":[{"instruction":"step one"}]}"#,
                ),
                call("c3", "get_time", "{}"),
            ],
            vec![ModelChunk::Text("did step one".into())],
            vec![ModelChunk::Text("all done".into())],
        ]),
        seen: std::sync::Mutex::default(),
    });
    let base = runtime(8, None);
    let rt = Arc::new(Runtime {
        model: model.clone(),
        catalog: base.catalog.clone(),
        max_iterations: 8,
        store: None,
        metrics: Metrics::default(),
        runs: ActiveRuns::default(),
        telemetry: crate::otel::Telemetry::default(),
        approvals: Default::default(),
    });
    let events = run(&rt, request("go")).await;
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"));
    assert_eq!(text(&events), "Planning.did step oneall done");
    assert_eq!(results(&events), ["2"], "only the call before the plan ran");

    let seen = model.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    // The step's turn sees the assistant message with three calls and a result for each.
    let step_conv = &seen[1];
    let answered: Vec<(&str, &str)> = step_conv
        .iter()
        .filter(|m| m.role == ChatRole::Tool)
        .map(|m| (m.tool_call_id.as_deref().unwrap(), m.content.as_str()))
        .collect();
    assert_eq!(
        answered,
        [
            ("c1", "2"),
            ("c2", "executing 1 steps"),
            ("c3", "error: not run: the plan replaces this call")
        ]
    );
    assert_eq!(step_conv.last().unwrap().content, "step one");
    assert!(seen[2].last().unwrap().content.ends_with("1. did step one"));
}

#[tokio::test]
async fn tools_gated_by_role_are_withheld_from_other_callers() {
    let mut roles = std::collections::BTreeMap::new();
    roles.insert("calculator".to_owned(), vec!["developer".to_owned()]);
    let gated = |rt: Arc<Runtime>| {
        Arc::new(Runtime {
            catalog: Arc::new(
                ToolCatalog::new(
                    builtin::all(&ToolsConfig::default()),
                    vec![],
                    Duration::from_secs(5),
                )
                .with_roles(roles.clone()),
            ),
            ..Arc::try_unwrap(rt).ok().unwrap()
        })
    };
    // A `user` is refused before the tool runs; the model sees why and answers.
    let rt = gated(runtime(8, None));
    let events = run(&rt, request("use calculator 1+1")).await;
    assert_eq!(
        results(&events),
        ["error: `calculator` is not available to this caller"]
    );
    assert_eq!(types(&events).last(), Some(&"RUN_FINISHED"));
    // A `developer` gets the answer.
    let mut req = request("use calculator 1+1");
    req.caller.roles = vec!["developer".into()];
    let events = run(&gated(runtime(8, None)), req).await;
    assert_eq!(results(&events), ["2"]);
}
