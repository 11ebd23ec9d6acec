//! Observability: Prometheus metrics and structured logs.
//!
//! Metrics are created against a [`prometheus::Registry`] passed in explicitly (never the global
//! one), so two proxies in one test process do not share counters.

pub mod logging;
pub mod metrics;

pub use metrics::Metrics;
