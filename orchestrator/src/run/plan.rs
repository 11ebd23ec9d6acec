//! Structured plans: a model's [`PLAN_TOOL`](crate::model::PLAN_TOOL) call, executed step by
//! step.
//!
//! The steps and their status go to the client as a `STATE_SNAPSHOT`
//! (`{"plan":{"steps":[{"instruction":…,"status":"pending|running|done|failed"}]}}`) at the
//! start and after each step; each step runs between `STEP_STARTED` and `STEP_FINISHED` as an
//! instruction the model works through (tool calls included), its answer fed back before the
//! next step. After the last step the model summarizes the results.

use palisade_wire::agui::Event;
use serde_json::{json, Value};

use super::{Agent, Failure, RunState};
use crate::model::offline::PLAN_DONE_PREFIX;
use crate::model::{ChatMessage, ChatRole};

/// The step instructions of a plan call's JSON arguments.
pub(super) fn steps(arguments: &str) -> Result<Vec<String>, String> {
    let args: Value =
        serde_json::from_str(arguments).map_err(|e| format!("plan is not JSON: {e}"))?;
    let steps: Vec<String> = args["steps"]
        .as_array()
        .ok_or("plan has no `steps` array")?
        .iter()
        .filter_map(|s| match s {
            Value::String(text) => Some(text.clone()),
            other => other["instruction"].as_str().map(str::to_owned),
        })
        .filter(|s| !s.trim().is_empty())
        .collect();
    if steps.is_empty() {
        return Err("plan has no steps".into());
    }
    Ok(steps)
}

fn snapshot(steps: &[String], status: &[&str]) -> Event {
    let steps: Vec<Value> = steps
        .iter()
        .zip(status)
        .map(|(s, st)| json!({"instruction": s, "status": st}))
        .collect();
    Event::StateSnapshot {
        snapshot: json!({"plan": {"steps": steps}}),
    }
}

impl Agent<'_> {
    /// Executes `steps` in order, then asks the model for the final answer.
    pub(super) async fn execute_plan(
        &mut self,
        conv: &mut Vec<ChatMessage>,
        st: &mut RunState,
        steps: Vec<String>,
    ) -> Result<String, Failure> {
        let mut status = vec!["pending"; steps.len()];
        st.emit(snapshot(&steps, &status)).await;
        let mut results = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let step_name = format!("step {}: {step}", i + 1);
            st.emit(Event::StepStarted {
                step_name: step_name.clone(),
            })
            .await;
            status[i] = "running";
            conv.push(ChatMessage::text(ChatRole::User, step.clone()));
            let outcome = self.run(conv, st, false).await;
            status[i] = if outcome.is_ok() { "done" } else { "failed" };
            st.emit(snapshot(&steps, &status)).await;
            st.emit(Event::StepFinished { step_name }).await;
            let answer = outcome?;
            results.push(format!("{}. {answer}", i + 1));
            conv.push(ChatMessage::text(ChatRole::Assistant, answer));
        }
        conv.push(ChatMessage::text(
            ChatRole::User,
            format!("{PLAN_DONE_PREFIX}\n{}", results.join("\n")),
        ));
        self.run(conv, st, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::steps;

    #[test]
    fn plan_arguments_are_read_leniently() {
        assert_eq!(
            steps(r#"{"steps":[{"instruction":"a"},"b",{"instruction":" "}]}"#).unwrap(),
            ["a", "b"]
        );
        assert!(steps(r#"{"steps":[]}"#).is_err());
        assert!(steps("{}").is_err());
        assert!(steps("nope").is_err());
    }
}
