//! Observability: Prometheus metrics, structured logs, OpenTelemetry traces ([`otel`]).
//!
//! Metrics are created against a [`prometheus::Registry`] passed in explicitly (never the global
//! one), so two proxies in one test process do not share counters.

pub mod audit;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod process;
pub mod spec;
pub mod trace;

pub use metrics::Metrics;
pub use trace::TraceContext;
