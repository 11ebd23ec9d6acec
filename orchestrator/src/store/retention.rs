//! Retention: how long runs are kept, and how much of each.
//!
//! - **Age and count.** A sweep deletes the runs that started more than `max_age` ago, then all
//!   but the newest `max_runs` runs (by start time), then the threads left without runs
//!   ([`SessionStore::sweep`]). [`spawn_sweeper`] sweeps once at start and then every
//!   `sweep_interval`. Every PostgreSQL replica sweeps; the deletes are idempotent.
//! - **Events per run.** A run records at most `max_events_per_run` of the AG-UI events it
//!   streams ([`RunRecord::push_event`](super::RunRecord::push_event)). Past the cap the live
//!   stream goes on untouched, further events are not stored, and the run is marked
//!   `events_truncated: true` (shown by `GET /runs/{id}`); an idempotent repeat of it replays the
//!   stored events and then ends with `RUN_ERROR` code `EVENTS_TRUNCATED` instead of passing a
//!   partial replay off as the whole run.

use std::sync::{Arc, Weak};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{to_micros, SessionStore};

/// `store.retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Runs that started longer ago than this are deleted. Default `30d`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_age: Duration,
    /// Most runs kept; the oldest beyond it are deleted. Default `100000`.
    pub max_runs: u64,
    /// Most AG-UI events stored per run (for idempotent replay); past it the run is marked
    /// `events_truncated` and further events are not stored. Default `10000`.
    pub max_events_per_run: usize,
    /// Time between sweeps (the first runs at start). Default `1h`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(30 * 86_400),
            max_runs: 100_000,
            max_events_per_run: 10_000,
            sweep_interval: Duration::from_secs(3_600),
        }
    }
}

impl RetentionConfig {
    /// Every invalid value, as `(field, message)` (the config's validation prefixes the path).
    pub fn errors(&self) -> Vec<(&'static str, &'static str)> {
        let mut errors = Vec::new();
        if self.max_age.is_zero() {
            errors.push(("max_age", "must be more than 0s"));
        }
        if self.max_runs == 0 {
            errors.push(("max_runs", "must be at least 1"));
        }
        if self.max_events_per_run == 0 {
            errors.push(("max_events_per_run", "must be at least 1"));
        }
        if self.sweep_interval < Duration::from_secs(1) {
            errors.push(("sweep_interval", "must be at least 1s"));
        }
        errors
    }

    /// Start times before this (Unix microseconds) are past `max_age` at `now`.
    pub(crate) fn age_cutoff(&self, now: OffsetDateTime) -> i64 {
        let max_age = i64::try_from(self.max_age.as_micros()).unwrap_or(i64::MAX);
        to_micros(now).saturating_sub(max_age)
    }

    /// `max_runs` as an SQL `OFFSET`.
    pub(crate) fn keep(&self) -> i64 {
        i64::try_from(self.max_runs).unwrap_or(i64::MAX)
    }
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Runs past `max_age` or beyond `max_runs`.
    pub runs: u64,
    /// Threads left without runs.
    pub threads: u64,
}

/// Rows deleted per statement, so a first sweep of a large backlog does not hold one huge
/// transaction (or SQLite's write lock) for long.
pub(crate) const BATCH: i64 = 1_000;

/// Sweeps `store` now and then every `cfg.sweep_interval`, until the store is dropped (the task
/// holds it weakly). A failed sweep is logged and tried again at the next interval.
pub fn spawn_sweeper(
    store: &Arc<dyn SessionStore>,
    cfg: RetentionConfig,
) -> tokio::task::JoinHandle<()> {
    let store: Weak<dyn SessionStore> = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(cfg.sweep_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else { return };
            match store.sweep(&cfg, OffsetDateTime::now_utc()).await {
                Ok(swept) if swept != Swept::default() => tracing::info!(
                    runs = swept.runs,
                    threads = swept.threads,
                    "session retention: deleted old runs"
                ),
                Ok(_) => tracing::debug!("session retention: nothing to delete"),
                Err(e) => tracing::warn!(error = %e, "session retention sweep failed"),
            }
        }
    })
}
