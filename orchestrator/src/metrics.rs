//! Prometheus metrics of the orchestrator, served at `GET /metrics` (text format).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_orchestrator_runs_total` | counter | `outcome` = finished, error, cancelled |
//! | `palisade_orchestrator_runs_active` | gauge | |
//! | `palisade_orchestrator_run_duration_seconds` | histogram | `outcome` |
//! | `palisade_orchestrator_model_turns_total` | counter | `outcome` = ok, error |
//! | `palisade_orchestrator_tool_calls_total` | counter | `source` = builtin, mcp, a2a, unknown; `outcome` = ok, error |
//! | `palisade_orchestrator_tool_call_duration_seconds` | histogram | `source` |
//! | `palisade_orchestrator_requests_refused_total` | counter | `reason` = unauthenticated, identity_unavailable, invalid_request, idempotent_repeat, idempotency_key_reused |
//! | `gen_ai_client_token_usage` | histogram | `gen_ai_token_type` = input, output; `gen_ai_operation_name`, `gen_ai_provider_name`, `gen_ai_request_model`, `palisade_tenant` |
//! | `gen_ai_client_operation_duration_seconds` | histogram | `gen_ai_operation_name`, `gen_ai_provider_name`, `gen_ai_request_model`, `error_type`, `palisade_tenant` |
//!
//! The two `gen_ai_*` histograms are OpenTelemetry's GenAI client metrics
//! (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`) with the bucket boundaries
//! the conventions recommend. The principal is deliberately not a label (unbounded
//! cardinality); it is on the span. An empty `palisade_tenant` means no tenant.
//!
//! The registry is passed explicitly, never global.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The orchestrator's metric handles. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    active: IntGauge,
    run_seconds: HistogramVec,
    model_turns: IntCounterVec,
    tool_calls: IntCounterVec,
    tool_seconds: HistogramVec,
    refused: IntCounterVec,
    genai_tokens: HistogramVec,
    genai_seconds: HistogramVec,
}

/// The labels of one model call for the GenAI metrics.
#[derive(Debug, Clone, Copy)]
pub struct GenAiLabels<'a> {
    /// `gen_ai.operation.name`, e.g. `chat`.
    pub operation: &'a str,
    /// `gen_ai.provider.name`, e.g. `openai`.
    pub provider: &'a str,
    /// `gen_ai.request.model`.
    pub request_model: &'a str,
    /// The run's tenant (empty: none).
    pub tenant: &'a str,
}

/// `gen_ai.client.token.usage` buckets recommended by the GenAI semantic conventions.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// `gen_ai.client.operation.duration` buckets recommended by the GenAI semantic conventions.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let runs = IntCounterVec::new(
            Opts::new(
                "palisade_orchestrator_runs_total",
                "Runs ended, by outcome.",
            ),
            &["outcome"],
        )?;
        let active = IntGauge::new("palisade_orchestrator_runs_active", "Runs in flight.")?;
        let run_seconds = HistogramVec::new(
            HistogramOpts::new(
                "palisade_orchestrator_run_duration_seconds",
                "Run duration from RUN_STARTED to its last event, in seconds.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["outcome"],
        )?;
        let model_turns = IntCounterVec::new(
            Opts::new(
                "palisade_orchestrator_model_turns_total",
                "Model turns, by outcome.",
            ),
            &["outcome"],
        )?;
        let tool_calls = IntCounterVec::new(
            Opts::new(
                "palisade_orchestrator_tool_calls_total",
                "Tool calls, by source and outcome.",
            ),
            &["source", "outcome"],
        )?;
        let tool_seconds = HistogramVec::new(
            HistogramOpts::new(
                "palisade_orchestrator_tool_call_duration_seconds",
                "Tool call duration, in seconds.",
            )
            .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0]),
            &["source"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "palisade_orchestrator_requests_refused_total",
                "Run requests refused before running, by reason.",
            ),
            &["reason"],
        )?;
        let genai_tokens = HistogramVec::new(
            HistogramOpts::new(
                "gen_ai_client_token_usage",
                "Tokens used per model call (OpenTelemetry gen_ai.client.token.usage), by token \
                 type (input, output).",
            )
            .buckets(TOKEN_BUCKETS.to_vec()),
            &[
                "gen_ai_token_type",
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "palisade_tenant",
            ],
        )?;
        let genai_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gen_ai_client_operation_duration_seconds",
                "Model call duration, to the end of the streamed answer (OpenTelemetry \
                 gen_ai.client.operation.duration), in seconds.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &[
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "error_type",
                "palisade_tenant",
            ],
        )?;
        registry.register(Box::new(genai_tokens.clone()))?;
        registry.register(Box::new(genai_seconds.clone()))?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(run_seconds.clone()))?;
        registry.register(Box::new(model_turns.clone()))?;
        registry.register(Box::new(tool_calls.clone()))?;
        registry.register(Box::new(tool_seconds.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self {
            registry,
            runs,
            active,
            run_seconds,
            model_turns,
            tool_calls,
            tool_seconds,
            refused,
            genai_tokens,
            genai_seconds,
        })
    }

    /// A run started.
    pub fn run_started(&self) {
        self.active.inc();
    }

    /// A run ended with `outcome` after `elapsed`.
    pub fn run_ended(&self, outcome: &str, elapsed: Duration) {
        self.active.dec();
        self.runs.with_label_values(&[outcome]).inc();
        self.run_seconds
            .with_label_values(&[outcome])
            .observe(elapsed.as_secs_f64());
    }

    /// A model turn ended.
    pub fn model_turn(&self, ok: bool) {
        self.model_turns
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// A tool call ended.
    pub fn tool_call(&self, source: &str, outcome: &str, elapsed: Duration) {
        self.tool_calls.with_label_values(&[source, outcome]).inc();
        self.tool_seconds
            .with_label_values(&[source])
            .observe(elapsed.as_secs_f64());
    }

    /// A model call ended after `elapsed`; `error_type` is empty on success. Token counts are
    /// recorded only when the endpoint reported them.
    pub fn model_call(
        &self,
        labels: GenAiLabels<'_>,
        elapsed: Duration,
        error_type: &str,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    ) {
        let GenAiLabels {
            operation,
            provider,
            request_model,
            tenant,
        } = labels;
        self.genai_seconds
            .with_label_values(&[operation, provider, request_model, error_type, tenant])
            .observe(elapsed.as_secs_f64());
        for (kind, n) in [("input", input_tokens), ("output", output_tokens)] {
            if let Some(n) = n {
                self.genai_tokens
                    .with_label_values(&[kind, operation, provider, request_model, tenant])
                    .observe(n as f64);
            }
        }
    }

    /// A run request was refused.
    pub fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Registry::new()).expect("fresh registry")
    }
}
