//! AG-UI response events (security issue 14): thinking texts, snapshots of every role, state,
//! custom, raw and unknown events, and fields beside the ones a handler takes — every string an
//! event carries is scanned, and a `stop` there ends the run like anywhere else.

use serde_json::{json, Value};

use super::*;

/// What the guard should do with a run carrying some events.
enum Want {
    /// The run is stopped (`RUN_ERROR` `GUARDRAIL_VIOLATION`) by this rule; `secret` never
    /// leaves.
    Stopped(&'static str),
    /// The run goes through with this text replaced everywhere by its placeholder.
    Redacted(&'static str),
    /// The run goes through unchanged.
    Unchanged,
}

const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const EMAIL: &str = "jane@example.com";

fn sse(events: &[Value]) -> String {
    let mut all = vec![json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"})];
    all.extend(events.iter().cloned());
    all.push(json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}));
    all.iter().map(|e| format!("data: {e}\n\n")).collect()
}

fn check(rows: Vec<(&str, Vec<Value>, Want)>) {
    let rs = default_set();
    for (name, events, want) in rows {
        let mut g = AguiGuard::new(&rs, "r");
        let input = sse(&events);
        // One event per chunk, the way an upstream streams them.
        let chunks: Vec<&str> = input.split_inclusive("\n\n").collect();
        let (out, stop, _) = recorder_run(&mut g, &rs, &chunks);
        let evs = super::events(&out);
        match want {
            Want::Stopped(rule) => {
                assert_eq!(stop.as_deref(), Some("stop"), "{name}: {out}");
                assert!(!out.contains(KEY), "{name}: the secret leaked: {out}");
                let custom = evs.iter().find(|e| e["type"] == "CUSTOM").unwrap();
                assert_eq!(custom["value"]["rule"], rule, "{name}");
                assert_eq!(evs.last().unwrap()["type"], "RUN_ERROR", "{name}");
            }
            Want::Redacted(placeholder) => {
                assert!(stop.is_none(), "{name}: stopped: {out}");
                assert!(!out.contains(EMAIL), "{name}: not redacted: {out}");
                assert!(out.contains(placeholder), "{name}: {out}");
            }
            Want::Unchanged => {
                assert!(stop.is_none(), "{name}: stopped: {out}");
                let sent: Vec<Value> = super::events(&input);
                assert_eq!(evs, sent, "{name}");
            }
        }
    }
}

#[test]
fn every_event_type_is_scanned() {
    let key = "secret.aws_access_key";
    let stopped = || Want::Stopped(key);
    let email = || Want::Redacted("[REDACTED:EMAIL]");
    let thinking = |deltas: &[&str]| {
        let mut e = vec![
            json!({"type": "THINKING_START", "title": "planning"}),
            json!({"type": "THINKING_TEXT_MESSAGE_START"}),
        ];
        e.extend(
            deltas
                .iter()
                .map(|d| json!({"type": "THINKING_TEXT_MESSAGE_CONTENT", "delta": d})),
        );
        e.extend([
            json!({"type": "THINKING_TEXT_MESSAGE_END"}),
            json!({"type": "THINKING_END"}),
        ]);
        e
    };
    let snapshot = |m: Value| vec![json!({"type": "MESSAGES_SNAPSHOT", "messages": [m]})];
    check(vec![
        (
            "thinking text",
            thinking(&[&format!("the key is {KEY}")]),
            stopped(),
        ),
        (
            "thinking text split",
            thinking(&["the key is AKIAIOSF", "ODNN7EXAMPLE ok"]),
            stopped(),
        ),
        (
            "thinking text redaction",
            thinking(&["write to jane.d", "oe@example.com now"]),
            email(),
        ),
        (
            "thinking title",
            vec![json!({"type": "THINKING_START", "title": KEY})],
            stopped(),
        ),
        (
            "snapshot user",
            snapshot(json!({"id": "u", "role": "user", "content": KEY})),
            stopped(),
        ),
        (
            "snapshot system",
            snapshot(json!({"id": "s", "role": "system", "content": format!("k={KEY}")})),
            stopped(),
        ),
        (
            "snapshot user redaction",
            snapshot(json!({"id": "u", "role": "user", "content": EMAIL})),
            email(),
        ),
        (
            "snapshot parts",
            snapshot(json!({"id": "a", "role": "assistant", "content": [
            {"type": "text", "text": format!("mail {EMAIL}")}]})),
            email(),
        ),
        (
            "snapshot name",
            snapshot(json!({"id": "a", "role": "assistant", "name": KEY, "content": "hi"})),
            stopped(),
        ),
        (
            "state snapshot",
            vec![json!({"type": "STATE_SNAPSHOT", "snapshot": {"creds": {"aws": KEY}}})],
            stopped(),
        ),
        (
            "state snapshot key",
            vec![json!({"type": "STATE_SNAPSHOT", "snapshot": {EMAIL: true}})],
            email(),
        ),
        (
            "state delta",
            vec![json!({"type": "STATE_DELTA", "delta": [
            {"op": "add", "path": "/creds", "value": KEY}]})],
            stopped(),
        ),
        (
            "custom",
            vec![json!({"type": "CUSTOM", "name": "note", "value": {"text": KEY}})],
            stopped(),
        ),
        (
            "raw",
            vec![json!({"type": "RAW", "source": "llm", "event": {"choices": [{"delta": KEY}]}})],
            stopped(),
        ),
        (
            "activity",
            vec![
                json!({"type": "ACTIVITY_SNAPSHOT", "messageId": "x", "activityType": "plan",
            "content": {"steps": [EMAIL]}}),
            ],
            email(),
        ),
        (
            "unknown type",
            vec![json!({"type": "FUTURE_EVENT", "payload": {"deep": [KEY]}})],
            stopped(),
        ),
        (
            "unknown type redaction",
            vec![json!({"type": "FUTURE_EVENT", "messageId": EMAIL})],
            email(),
        ),
        (
            "a field beside the delta",
            vec![
                json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "hi", "note": KEY}),
                json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
            ],
            stopped(),
        ),
        (
            "a delta without its id",
            vec![json!({"type": "TEXT_MESSAGE_CONTENT", "delta": format!("mail {EMAIL}")})],
            email(),
        ),
        (
            "a delta that is not text",
            vec![json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c", "delta": {"k": KEY}})],
            stopped(),
        ),
        (
            "tool result parts",
            vec![
                json!({"type": "TOOL_CALL_RESULT", "messageId": "m", "toolCallId": "c",
            "content": [{"type": "text", "text": KEY}]}),
            ],
            stopped(),
        ),
        (
            "run error message",
            vec![json!({"type": "RUN_ERROR", "message": format!("bad key {KEY}")})],
            stopped(),
        ),
        (
            "step name",
            vec![json!({"type": "STEP_STARTED", "stepName": KEY})],
            stopped(),
        ),
        (
            "benign state and ids",
            vec![
                json!({"type": "STATE_SNAPSHOT", "snapshot": {"count": 3, "items": ["a", "b"]}}),
                json!({"type": "STEP_STARTED", "stepName": "search"}),
                json!({"type": "TEXT_MESSAGE_START", "messageId": "555-123-4567", "role": "assistant"}),
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "555-123-4567", "delta": "hello there. "}),
                json!({"type": "TEXT_MESSAGE_END", "messageId": "555-123-4567"}),
            ],
            Want::Unchanged,
        ),
    ]);
}

#[test]
fn a_stop_inside_thinking_closes_it() {
    let rs = default_set();
    let mut g = AguiGuard::new(&rs, "r");
    let input = sse(&[
        json!({"type": "THINKING_START"}),
        json!({"type": "THINKING_TEXT_MESSAGE_START"}),
        json!({"type": "THINKING_TEXT_MESSAGE_CONTENT", "delta": format!("{KEY} ")}),
    ]);
    let (out, stop, findings) = recorder_run(&mut g, &rs, &[&input]);
    assert_eq!(stop.as_deref(), Some("stop"));
    let evs = super::events(&out);
    let types: Vec<_> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[types.len() - 7..types.len() - 4],
        &["THINKING_TEXT_MESSAGE_END", "THINKING_END", "CUSTOM"],
        "{types:?}"
    );
    assert_eq!(
        findings.as_slice()[0].location,
        "response.THINKING_TEXT_MESSAGE_CONTENT"
    );
}
