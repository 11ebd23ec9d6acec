//! The official AG-UI client (`@ag-ui/client` HttpAgent, installed under
//! `tests/peers/agui-client` by `npm ci`) driven from a test: what it applied and how the run
//! ended (see tests/peers/agui-client/README.md).

use std::time::Duration;

use serde_json::Value;

use crate::peers::workspace;

/// What the official AG-UI client received in one run (see tests/peers/agui-client/README.md).
#[derive(Debug)]
pub struct AguiRun {
    /// Every event the client applied, in order.
    pub events: Vec<Value>,
    /// Milliseconds since the run started at which each event was applied.
    pub at_ms: Vec<f64>,
    /// The outcome line: `{"outcome": "finished", "messages": ...}` or
    /// `{"outcome": "error", "error": {"message", "status", "payload"}}`.
    pub outcome: Value,
}

impl AguiRun {
    /// The `type` of every event.
    pub fn types(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect()
    }

    /// The names of the tools the client saw called (`TOOL_CALL_START`).
    pub fn tool_calls(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e["type"] == "TOOL_CALL_START")
            .map(|e| e["toolCallName"].as_str().unwrap_or(""))
            .collect()
    }

    /// Whether any event mentions `tool_call_id`.
    pub fn mentions(&self, tool_call_id: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.to_string().contains(tool_call_id))
    }

    /// The HTTP status the client reported for a failed request.
    pub fn error_status(&self) -> Option<u64> {
        self.outcome["error"]["status"].as_u64()
    }

    /// `error.code` of Palisade's error body as the client reported it.
    pub fn error_code(&self) -> Option<&str> {
        self.outcome["error"]["payload"]["error"]["code"].as_str()
    }

    /// Whether the client completed the run without raising.
    pub fn finished(&self) -> bool {
        self.outcome["outcome"] == "finished"
    }

    /// How many events of type `kind` the client applied.
    pub fn count(&self, kind: &str) -> usize {
        self.types().iter().filter(|t| **t == kind).count()
    }

    /// The assistant text: every `TEXT_MESSAGE_CONTENT` delta, joined.
    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT")
            .filter_map(|e| e["delta"].as_str())
            .collect()
    }

    /// When (ms since the run started) the client applied each event of type `kind`.
    pub fn applied_at(&self, kind: &str) -> Vec<f64> {
        self.events
            .iter()
            .zip(&self.at_ms)
            .filter(|(e, _)| e["type"] == kind)
            .map(|(_, at)| *at)
            .collect()
    }

    /// Asserts the client finished without raising and applied a whole run (`RUN_STARTED`
    /// first, `RUN_FINISHED` last); `what` names the run in the failure message.
    pub fn assert_complete(&self, what: &str) {
        assert!(
            self.finished(),
            "{what}: the client raised: {}",
            self.outcome
        );
        let types = self.types();
        assert_eq!(types.first(), Some(&"RUN_STARTED"), "{what}: {types:?}");
        assert_eq!(types.last(), Some(&"RUN_FINISHED"), "{what}: {types:?}");
    }
}

/// Runs the official AG-UI client (`@ag-ui/client` HttpAgent) against `url` with `input`.
pub async fn agui_client(url: &str, token: Option<&str>, input: &Value) -> AguiRun {
    let dir = workspace().join("tests/peers/agui-client");
    assert!(
        dir.join("node_modules/@ag-ui/client").exists(),
        "the AG-UI client is not installed: run `npm ci --prefix tests/peers/agui-client` (bash \
         tests/run.sh does) — needs Node.js >= 20.18"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("run.mjs"))
        .arg(url)
        .arg(input.to_string())
        .env_remove("AGUI_TOKEN")
        .kill_on_drop(true);
    if let Some(token) = token {
        cmd.env("AGUI_TOKEN", token);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the AG-UI client did not finish within 60 s")
        .unwrap_or_else(|e| panic!("cannot run `node` (install Node.js >= 20.18): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut run = AguiRun {
        events: Vec::new(),
        at_ms: Vec::new(),
        outcome: Value::Null,
    };
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|_| panic!("AG-UI client printed a non-JSON line: {line}"));
        if v.get("event").is_some() {
            run.at_ms.push(v["at_ms"].as_f64().unwrap_or(0.0));
            run.events.push(v["event"].clone());
        } else {
            run.outcome = v;
        }
    }
    assert!(
        out.status.success() && !run.outcome.is_null(),
        "the AG-UI client failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    run
}
