//! An OpenAI-compatible chat-completions client: streamed answers with tool calling.
//!
//! `POST {base_url}/chat/completions` with `stream: true`, the conversation and the tools as
//! `function` tools. Text deltas are handed on as they arrive; tool-call deltas (`index`, `id`,
//! `function.name`, pieces of `function.arguments`) are assembled and handed on as complete
//! calls when the choice finishes (`finish_reason`) or the stream ends (`data: [DONE]`).
//! The key is read from the configured environment variable at each request and sent as
//! `Authorization: Bearer`; it never appears in logs.
//!
//! Each request carries the turn span's `traceparent` and asks for usage in the stream
//! (`stream_options.include_usage`); the final usage chunk, the response `id` and `model` and the
//! finish reasons come back as a last [`ModelChunk::Report`] for the GenAI span and metrics.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use palisade_wire::sse::{SseItem, SseParser};
use serde_json::{json, Value};

use super::{
    ChatMessage, ChunkStream, Model, ModelChunk, ModelError, ToolCallRequest, ToolSpec,
    TurnContext, TurnReport,
};
use crate::config::ModelConfig;

/// A chat-completions endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiModel {
    http: reqwest::Client,
    base_url: String,
    model: String,
    api_key_env: String,
    server: Option<(String, u16)>,
}

impl OpenAiModel {
    /// From config; `OPENAI_BASE_URL` and `OPENAI_MODEL` override the file's values.
    /// Servers are verified against the web roots plus `trust`'s extra CAs.
    pub fn from_config(cfg: &ModelConfig, trust: &crate::tls::Trust) -> Self {
        let http = trust
            .client_builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let base_url = std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| cfg.base_url.clone());
        let server = reqwest::Url::parse(&base_url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        Self {
            http,
            base_url,
            model: std::env::var("OPENAI_MODEL").unwrap_or_else(|_| cfg.model.clone()),
            api_key_env: cfg.api_key_env.clone(),
            server,
        }
    }

    /// The request body for one turn.
    pub fn request_body(&self, messages: &[ChatMessage], tools: &[ToolSpec]) -> Value {
        let mut body = json!({
            "model": self.model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": messages.iter().map(ChatMessage::to_openai).collect::<Vec<_>>(),
        });
        if !tools.is_empty() {
            body["tools"] = tools.iter().map(ToolSpec::to_openai).collect();
        }
        body
    }
}

#[async_trait]
impl Model for OpenAiModel {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &'static str {
        "openai"
    }

    fn server(&self) -> Option<(String, u16)> {
        self.server.clone()
    }

    async fn turn(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        cx: &TurnContext,
    ) -> Result<ChunkStream, ModelError> {
        let url = format!("{}/chat/completions", self.base_url.trim_end_matches('/'));
        let mut req = self
            .http
            .post(&url)
            .header("accept", "text/event-stream")
            .json(&self.request_body(messages, tools));
        if let Ok(key) = std::env::var(&self.api_key_env) {
            req = req.bearer_auth(key);
        }
        if let Some(traceparent) = &cx.traceparent {
            req = req.header("traceparent", traceparent);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ModelError::Transport(chain(e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ModelError::Status {
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        let bytes = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| ModelError::Transport(e.without_url().to_string())))
            .boxed();
        Ok(chunks(bytes))
    }
}

/// `e` and its causes (`error sending request: … : invalid peer certificate: UnknownIssuer`),
/// so a TLS or DNS failure says what went wrong.
fn chain(e: reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A tool call being assembled from deltas.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Decoding state of one streamed answer.
struct Decoder {
    bytes: BoxStream<'static, Result<bytes::Bytes, ModelError>>,
    parser: SseParser,
    ready: VecDeque<Result<ModelChunk, ModelError>>,
    calls: BTreeMap<u64, PartialCall>,
    /// Usage, ids and finish reasons (by choice index) seen so far.
    report: TurnReport,
    finish: BTreeMap<u64, String>,
    done: bool,
}

impl Decoder {
    /// Hands on the assembled tool calls, in index order.
    fn flush_calls(&mut self) {
        for (_, call) in std::mem::take(&mut self.calls) {
            let id = if call.id.is_empty() {
                format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
            } else {
                call.id
            };
            let arguments = if call.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                call.arguments
            };
            self.ready
                .push_back(Ok(ModelChunk::ToolCall(ToolCallRequest {
                    id,
                    name: call.name,
                    arguments,
                })));
        }
    }

    /// The answer ended normally: hands on the remaining calls, then the report.
    fn finish(&mut self) {
        self.flush_calls();
        let mut report = std::mem::take(&mut self.report);
        report.finish_reasons = std::mem::take(&mut self.finish).into_values().collect();
        self.ready.push_back(Ok(ModelChunk::Report(report)));
        self.done = true;
    }

    /// Notes the response id, model and usage a chunk carries.
    fn note(&mut self, chunk: &Value) {
        if let Some(id) = chunk["id"].as_str().filter(|s| !s.is_empty()) {
            self.report.response_id = Some(id.to_owned());
        }
        if let Some(model) = chunk["model"].as_str().filter(|s| !s.is_empty()) {
            self.report.response_model = Some(model.to_owned());
        }
        let usage = &chunk["usage"];
        if let Some(n) = usage["prompt_tokens"].as_u64() {
            self.report.input_tokens = Some(n);
        }
        if let Some(n) = usage["completion_tokens"].as_u64() {
            self.report.output_tokens = Some(n);
        }
    }

    /// Reads one `data:` payload.
    fn on_data(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            self.finish();
            return;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.fail(ModelError::Protocol(format!("chunk is not JSON: {e}")));
                return;
            }
        };
        if let Some(err) = chunk.get("error") {
            self.fail(ModelError::Protocol(format!("endpoint error: {err}")));
            return;
        }
        self.note(&chunk);
        let Some(choice) = chunk["choices"].get(0) else {
            return; // usage-only chunks
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.ready.push_back(Ok(ModelChunk::Text(text.to_owned())));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0);
            let partial = self.calls.entry(index).or_default();
            if let Some(id) = call["id"].as_str() {
                partial.id = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                partial.name.push_str(name);
            }
            if let Some(args) = call["function"]["arguments"].as_str() {
                partial.arguments.push_str(args);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            let index = choice["index"].as_u64().unwrap_or(0);
            self.finish.insert(index, reason.to_owned());
            self.flush_calls();
        }
    }

    fn fail(&mut self, err: ModelError) {
        self.ready.push_back(Err(err));
        self.done = true;
    }
}

/// The model chunks of a streamed chat-completions body.
fn chunks(bytes: BoxStream<'static, Result<bytes::Bytes, ModelError>>) -> ChunkStream {
    let decoder = Decoder {
        bytes,
        parser: SseParser::new(),
        ready: VecDeque::new(),
        calls: BTreeMap::new(),
        report: TurnReport::default(),
        finish: BTreeMap::new(),
        done: false,
    };
    futures::stream::unfold(decoder, |mut d| async move {
        loop {
            if let Some(item) = d.ready.pop_front() {
                return Some((item, d));
            }
            if d.done {
                return None;
            }
            match d.bytes.next().await {
                Some(Ok(bytes)) => {
                    let items: Vec<_> = d.parser.feed(&bytes).collect();
                    for item in items {
                        match item {
                            Ok(SseItem::Event(ev)) => {
                                if let Some(data) = ev.data {
                                    d.on_data(&data);
                                }
                            }
                            Ok(SseItem::Comment(_)) => {}
                            Err(e) => d.fail(ModelError::Protocol(e.to_string())),
                        }
                    }
                }
                Some(Err(e)) => d.fail(e),
                None => {
                    // Some servers end without `[DONE]`; what was assembled still counts.
                    d.finish();
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests;
