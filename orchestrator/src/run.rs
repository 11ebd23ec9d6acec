//! One agent run as a lazy stream of AG-UI events.
//!
//! Events are produced one at a time as the response body is polled, never collected: the word
//! delay is awaited inside the stream, so when the client disconnects and the server drops the
//! body, the run stops at its next await point and nothing keeps running. [`ActiveRuns`] counts
//! the streams alive, which makes that observable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use palisade_wire::agui::{Event, Role, RunAgentInput};

use crate::model::OfflineModel;

/// The number of runs whose event stream is alive. Cloning shares the counter.
#[derive(Debug, Clone, Default)]
pub struct ActiveRuns(Arc<AtomicUsize>);

impl ActiveRuns {
    /// Runs currently streaming.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn enter(&self, run_id: &str) -> RunGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        RunGuard {
            runs: self.clone(),
            run_id: run_id.to_owned(),
            finished: false,
        }
    }
}

/// Counts a run as active until dropped; logs runs dropped before their last event.
#[derive(Debug)]
struct RunGuard {
    runs: ActiveRuns,
    run_id: String,
    finished: bool,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.runs.0.fetch_sub(1, Ordering::SeqCst);
        if self.finished {
            tracing::info!(run.id = %self.run_id, "run finished");
        } else {
            tracing::info!(run.id = %self.run_id, "run cancelled: client went away");
        }
    }
}

/// Where a run is in its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    RunStarted,
    MessageStarted,
    Streaming,
    RunFinished,
    Done,
}

/// The state threaded through the stream.
struct Run {
    thread_id: String,
    run_id: String,
    message_id: String,
    deltas: std::vec::IntoIter<String>,
    word_delay: Duration,
    phase: Phase,
    guard: RunGuard,
}

/// The events of one run, in protocol order: `RUN_STARTED`, `TEXT_MESSAGE_START`, one
/// `TEXT_MESSAGE_CONTENT` per word (each after `word_delay`), `TEXT_MESSAGE_END`,
/// `RUN_FINISHED`. The run counts in `runs` until the stream is dropped.
pub fn run_events(
    input: RunAgentInput,
    model: OfflineModel,
    word_delay: Duration,
    runs: &ActiveRuns,
) -> impl Stream<Item = Event> + Send + 'static {
    let answer = model.answer(&input.messages);
    tracing::info!(
        thread.id = %input.thread_id,
        run.id = %input.run_id,
        messages = input.messages.len(),
        "run started"
    );
    let run = Run {
        guard: runs.enter(&input.run_id),
        thread_id: input.thread_id,
        run_id: input.run_id,
        message_id: uuid::Uuid::new_v4().to_string(),
        deltas: OfflineModel::deltas(&answer).into_iter(),
        word_delay,
        phase: Phase::RunStarted,
    };
    futures::stream::unfold(run, step)
}

/// Produces the next event, advancing the phase.
async fn step(mut run: Run) -> Option<(Event, Run)> {
    let event = match run.phase {
        Phase::RunStarted => {
            run.phase = Phase::MessageStarted;
            Event::RunStarted {
                thread_id: run.thread_id.clone(),
                run_id: run.run_id.clone(),
                parent_run_id: None,
            }
        }
        Phase::MessageStarted => {
            run.phase = Phase::Streaming;
            Event::TextMessageStart {
                message_id: run.message_id.clone(),
                role: Role::Assistant,
            }
        }
        Phase::Streaming => match run.deltas.next() {
            Some(delta) => {
                tokio::time::sleep(run.word_delay).await;
                Event::TextMessageContent {
                    message_id: run.message_id.clone(),
                    delta,
                }
            }
            None => {
                run.phase = Phase::RunFinished;
                Event::TextMessageEnd {
                    message_id: run.message_id.clone(),
                }
            }
        },
        Phase::RunFinished => {
            run.phase = Phase::Done;
            run.guard.finished = true;
            Event::RunFinished {
                thread_id: run.thread_id.clone(),
                run_id: run.run_id.clone(),
                result: None,
            }
        }
        Phase::Done => return None,
    };
    Some((event, run))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use palisade_wire::agui::{Event, Message, Role, RunAgentInput};

    use super::{run_events, ActiveRuns};
    use crate::model::OfflineModel;

    fn input(text: &str) -> RunAgentInput {
        RunAgentInput {
            thread_id: "t1".into(),
            run_id: "r1".into(),
            parent_run_id: None,
            state: serde_json::Value::Null,
            messages: vec![Message::text_message("u1", Role::User, text)],
            tools: vec![],
            context: vec![],
            forwarded_props: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn events_follow_the_protocol_order() {
        let runs = ActiveRuns::default();
        let stream = run_events(input("hi there"), OfflineModel, Duration::ZERO, &runs);
        assert_eq!(runs.get(), 1);
        let events: Vec<Event> = stream.collect().await;
        assert_eq!(runs.get(), 0);
        let Event::TextMessageStart { message_id, .. } = &events[1] else {
            panic!("{events:?}");
        };
        let m = message_id.clone();
        assert_eq!(
            events,
            [
                Event::RunStarted {
                    thread_id: "t1".into(),
                    run_id: "r1".into(),
                    parent_run_id: None
                },
                Event::TextMessageStart {
                    message_id: m.clone(),
                    role: Role::Assistant
                },
                Event::TextMessageContent {
                    message_id: m.clone(),
                    delta: "hi".into()
                },
                Event::TextMessageContent {
                    message_id: m.clone(),
                    delta: " there".into()
                },
                Event::TextMessageEnd { message_id: m },
                Event::RunFinished {
                    thread_id: "t1".into(),
                    run_id: "r1".into(),
                    result: None
                },
            ]
        );
    }

    #[tokio::test]
    async fn dropping_the_stream_ends_the_run() {
        let runs = ActiveRuns::default();
        let mut stream = Box::pin(run_events(
            input("a b c"),
            OfflineModel,
            Duration::from_secs(3600),
            &runs,
        ));
        assert!(matches!(
            stream.next().await,
            Some(Event::RunStarted { .. })
        ));
        assert_eq!(runs.get(), 1);
        drop(stream);
        assert_eq!(runs.get(), 0);
    }
}
