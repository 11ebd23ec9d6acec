//! Metrics of the audit trail's delivery: records per sink, queue depth, drops, sink errors.
//!
//! Registered by [`super::Metrics::new`] in the same explicit registry; reached as
//! `metrics.audit`.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Audit delivery metrics.
#[derive(Clone)]
pub struct AuditMetrics {
    /// `palisade_audit_records_total{sink}`: records written, per sink (`file`, `stdout`,
    /// `redis`).
    pub audit_records: IntCounterVec,
    /// `palisade_audit_queue_depth`: records waiting for the writer.
    pub audit_queue_depth: IntGauge,
    /// `palisade_audit_dropped_total`: records dropped (queue full under `on_full: drop`, or the
    /// writer gone).
    pub audit_dropped: IntCounter,
    /// `palisade_audit_sink_errors_total{sink}`: failed writes, per sink.
    pub audit_sink_errors: IntCounterVec,
    /// `palisade_audit_refused_total`: requests refused with `AUDIT_UNAVAILABLE`
    /// (`fail_closed` while a sink fails).
    pub audit_refused: IntCounter,
}

impl AuditMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            audit_records: IntCounterVec::new(
                Opts::new(
                    "palisade_audit_records_total",
                    "Audit records written, per sink.",
                ),
                &["sink"],
            )?,
            audit_queue_depth: IntGauge::with_opts(Opts::new(
                "palisade_audit_queue_depth",
                "Audit records waiting for the writer.",
            ))?,
            audit_dropped: IntCounter::with_opts(Opts::new(
                "palisade_audit_dropped_total",
                "Audit records dropped (queue full under on_full: drop, or writer stopped).",
            ))?,
            audit_sink_errors: IntCounterVec::new(
                Opts::new(
                    "palisade_audit_sink_errors_total",
                    "Failed audit writes, per sink.",
                ),
                &["sink"],
            )?,
            audit_refused: IntCounter::with_opts(Opts::new(
                "palisade_audit_refused_total",
                "Requests refused because an audit sink is failing (fail_closed).",
            ))?,
        };
        registry.register(Box::new(m.audit_records.clone()))?;
        registry.register(Box::new(m.audit_queue_depth.clone()))?;
        registry.register(Box::new(m.audit_dropped.clone()))?;
        registry.register(Box::new(m.audit_sink_errors.clone()))?;
        registry.register(Box::new(m.audit_refused.clone()))?;
        // Labelled series exist from the start, so dashboards and alerts see zeros, not gaps.
        for sink in ["file", "stdout", "redis"] {
            m.audit_records.with_label_values(&[sink]);
            m.audit_sink_errors.with_label_values(&[sink]);
        }
        Ok(m)
    }
}
