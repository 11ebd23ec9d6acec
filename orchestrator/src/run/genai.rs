//! The GenAI client span and metrics of one model call, after the OpenTelemetry GenAI semantic
//! conventions (v1.37+: `gen_ai.provider.name`, not the older `gen_ai.system`).
//!
//! [`ModelCall::start`] opens a CLIENT span `chat {model}` under the run span and hands back
//! the [`TurnContext`] whose `traceparent` names it (the model request carries it);
//! [`ModelCall::end`] adds the response attributes (`gen_ai.response.*`, `gen_ai.usage.*`,
//! `error.type`) and records `gen_ai_client_operation_duration_seconds` and
//! `gen_ai_client_token_usage`.

use std::time::Instant;

use opentelemetry::trace::SpanKind;
use opentelemetry::{Array, KeyValue, StringValue, Value};

use crate::identity::Caller;
use crate::metrics::GenAiLabels;
use crate::model::{ModelError, TurnContext, TurnReport};
use crate::otel::RunSpan;
use crate::trace::TraceContext;

use super::Runtime;

/// `gen_ai.operation.name` of a chat-completions call.
pub(super) const OPERATION: &str = "chat";

/// One model call in flight.
pub(super) struct ModelCall<'a> {
    rt: &'a Runtime,
    span: RunSpan,
    started: Instant,
    tenant: String,
    report: TurnReport,
}

impl<'a> ModelCall<'a> {
    /// Opens the call's span under `run` (the run span's context), for `caller`.
    pub(super) fn start(
        rt: &'a Runtime,
        run: &TraceContext,
        caller: &Caller,
    ) -> (Self, TurnContext) {
        let model = &rt.model;
        let mut trace = run.clone();
        let mut span = rt.telemetry.span(
            format!("{OPERATION} {}", model.name()),
            SpanKind::Client,
            &mut trace,
        );
        if span.is_live() {
            let mut attrs = vec![
                KeyValue::new("gen_ai.operation.name", OPERATION),
                KeyValue::new("gen_ai.provider.name", model.provider()),
                KeyValue::new("gen_ai.request.model", model.name().to_owned()),
            ];
            if let Some((host, port)) = model.server() {
                attrs.push(KeyValue::new("server.address", host));
                attrs.push(KeyValue::new("server.port", i64::from(port)));
            }
            if !caller.principal.is_empty() {
                attrs.push(KeyValue::new(
                    "palisade.principal",
                    caller.principal.clone(),
                ));
            }
            if let Some(tenant) = &caller.tenant {
                attrs.push(KeyValue::new("palisade.tenant", tenant.clone()));
            }
            span.set(attrs);
        }
        let call = Self {
            rt,
            span,
            started: Instant::now(),
            tenant: caller.tenant.clone().unwrap_or_default(),
            report: TurnReport::default(),
        };
        let cx = TurnContext {
            traceparent: Some(trace.traceparent()),
        };
        (call, cx)
    }

    /// Keeps what the backend reported about the answer.
    pub(super) fn report(&mut self, report: TurnReport) {
        self.report = report;
    }

    /// Ends the call: response attributes on the span, the duration and token histograms.
    pub(super) fn end(mut self, error: Option<&ModelError>) {
        let r = std::mem::take(&mut self.report);
        let error_type = error.map(ModelError::error_type).unwrap_or_default();
        if self.span.is_live() {
            let mut attrs = Vec::new();
            if let Some(id) = &r.response_id {
                attrs.push(KeyValue::new("gen_ai.response.id", id.clone()));
            }
            if let Some(model) = &r.response_model {
                attrs.push(KeyValue::new("gen_ai.response.model", model.clone()));
            }
            if !r.finish_reasons.is_empty() {
                let reasons = r.finish_reasons.iter().cloned().map(StringValue::from);
                attrs.push(KeyValue::new(
                    "gen_ai.response.finish_reasons",
                    Value::Array(Array::String(reasons.collect())),
                ));
            }
            for (key, n) in [
                ("gen_ai.usage.input_tokens", r.input_tokens),
                ("gen_ai.usage.output_tokens", r.output_tokens),
            ] {
                if let Some(n) = n {
                    attrs.push(KeyValue::new(key, i64::try_from(n).unwrap_or(i64::MAX)));
                }
            }
            if let Some(e) = error {
                attrs.push(KeyValue::new("error.type", error_type.clone()));
                self.span.error(&e.to_string());
            }
            self.span.set(attrs);
        }
        let model = &self.rt.model;
        self.rt.metrics.model_call(
            GenAiLabels {
                operation: OPERATION,
                provider: model.provider(),
                request_model: model.name(),
                tenant: &self.tenant,
            },
            self.started.elapsed(),
            &error_type,
            r.input_tokens,
            r.output_tokens,
        );
    }
}
