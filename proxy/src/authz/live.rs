//! [`Authz`]: the live policy sets, swapped atomically on reload.
//!
//! The request path only does `ArcSwap::load` — no lock. A reload (file change seen by the
//! poller, SIGHUP, or [`Authz::reload`]) reads and validates the whole directory first and
//! swaps only a set that is entirely good; on any error the last good set stays live and the
//! errors are logged with file and line. `palisade_policy_reloads_total{result}` counts both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::load::{PolicyError, PolicyFiles};
use super::route::Target;
use super::spec::{AuthzSpec, ModeSpec, StepUpSpec};
use super::{AuthzRequest, Decision, Mode, PolicySet};
use crate::telemetry::Metrics;

/// The decisions of every configured set for one request.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    /// The enforcing set's decision (or the first shadow set's when none enforces).
    pub primary: Option<Decision>,
    /// The other sets' decisions (all shadow).
    pub shadow: Vec<Decision>,
}

impl Decisions {
    /// Whether the request must be refused.
    pub fn blocks(&self) -> bool {
        self.primary.as_ref().is_some_and(Decision::blocks)
    }

    /// Every decision, primary first.
    pub fn all(&self) -> impl Iterator<Item = &Decision> {
        self.primary.iter().chain(&self.shadow)
    }
}

/// What one reload of one set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files did not change.
    Unchanged,
    /// A new set is live; its hash.
    Reloaded(String),
    /// The files are broken; the last good set stays live.
    Failed(Vec<PolicyError>),
}

struct LiveSet {
    name: String,
    dir: PathBuf,
    mode: Mode,
    current: ArcSwap<PolicySet>,
    /// A change seen by one poll, taken when the next reads the same files.
    settle: crate::settle::Settle<String>,
}

/// The live policy sets of a proxy.
pub struct Authz {
    sets: Vec<LiveSet>,
    reload_interval: Duration,
    targets: Vec<Target>,
    step_up: StepUpSpec,
}

impl Authz {
    /// Loads every set of `spec`. `targets` are the `(action, resource)` pairs the routes use;
    /// each set's schema must support them. Errors are `(field path, message)`.
    pub fn from_spec(
        spec: &AuthzSpec,
        targets: Vec<Target>,
    ) -> Result<Option<Self>, Vec<(String, String)>> {
        if spec.policy_sets.is_empty() {
            return Ok(None);
        }
        let mut errors = Vec::new();
        let enforcing = spec
            .policy_sets
            .iter()
            .filter(|s| s.mode == ModeSpec::Enforce)
            .count();
        if enforcing > 1 {
            errors.push((
                "authorization.policy_sets".to_string(),
                "at most one policy set may be `enforce`; make the others `shadow`".to_string(),
            ));
        }
        let mut sets = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, s) in spec.policy_sets.iter().enumerate() {
            let at = format!("authorization.policy_sets[{i}]");
            if !names.insert(s.name.as_str()) {
                errors.push((format!("{at}.name"), format!("`{}` is used twice", s.name)));
            }
            let mode = match s.mode {
                ModeSpec::Enforce => Mode::Enforce,
                ModeSpec::Shadow => Mode::Shadow,
            };
            let dir = PathBuf::from(&s.path);
            match load_checked(&s.name, &dir, mode, &targets) {
                Ok(set) => sets.push(LiveSet {
                    name: s.name.clone(),
                    dir,
                    mode,
                    current: ArcSwap::from_pointee(set),
                    settle: Default::default(),
                }),
                Err(errs) => errors.extend(
                    errs.into_iter()
                        .map(|e| (format!("{at}.path"), e.to_string())),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // The enforcing set decides; shadow sets follow in config order.
        sets.sort_by_key(|s| s.mode != Mode::Enforce);
        Ok(Some(Self {
            sets,
            reload_interval: spec.reload_interval,
            targets,
            step_up: spec.step_up.clone(),
        }))
    }

    /// A single live set (tests, benches, `policy explain`).
    pub fn from_set(set: PolicySet) -> Self {
        Self {
            sets: vec![LiveSet {
                name: set.name().to_string(),
                dir: PathBuf::new(),
                mode: set.mode(),
                current: ArcSwap::from_pointee(set),
                settle: Default::default(),
            }],
            reload_interval: Duration::ZERO,
            targets: Vec::new(),
            step_up: StepUpSpec::default(),
        }
    }

    /// Decides `req` with every set.
    pub fn decide(&self, req: &AuthzRequest<'_>) -> Decisions {
        let mut out = Decisions::default();
        for (i, set) in self.sets.iter().enumerate() {
            let decision = set.current.load().decide(req);
            if i == 0 {
                out.primary = Some(decision);
            } else {
                out.shadow.push(decision);
            }
        }
        out
    }

    /// The live set named `name`.
    pub fn current(&self, name: &str) -> Option<Arc<PolicySet>> {
        self.sets
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.current.load_full())
    }

    /// The directory set `name` is loaded from (`builtin` for the compiled-in seed set).
    pub fn dir(&self, name: &str) -> Option<&std::path::Path> {
        self.sets
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.dir.as_path())
    }

    /// Whether every set has a good policy set live (always, once constructed: loading fails
    /// rather than start without one, and reloads never swap in a broken set).
    pub fn has_good_set(&self) -> bool {
        !self.sets.is_empty()
    }

    /// What RFC 9470 step-up challenges ask for (`authorization.step_up`).
    pub fn step_up(&self) -> &StepUpSpec {
        &self.step_up
    }

    /// The deciding (first) set.
    pub fn primary(&self) -> Arc<PolicySet> {
        self.sets[0].current.load_full()
    }

    /// Re-reads every set's directory and swaps in the sets that changed and are good.
    pub fn reload(&self) -> Vec<(String, ReloadOutcome)> {
        self.reload_sets(false)
    }

    /// [`Authz::reload`], or with `polled` a change is taken only once two polls in a row read
    /// the same files ([`crate::settle`]: not a file caught half-written).
    pub(crate) fn reload_sets(&self, polled: bool) -> Vec<(String, ReloadOutcome)> {
        self.sets
            .iter()
            .map(|s| (s.name.clone(), self.reload_one(s, polled)))
            .collect()
    }

    fn reload_one(&self, live: &LiveSet, polled: bool) -> ReloadOutcome {
        let files = match PolicyFiles::read(&live.dir) {
            Ok(files) => files,
            Err(errors) => return ReloadOutcome::Failed(errors),
        };
        let hash = files.hash();
        if hash == live.current.load().hash() {
            live.settle.clear();
            return ReloadOutcome::Unchanged;
        }
        if polled && !live.settle.settled(hash) {
            return ReloadOutcome::Unchanged;
        }
        match PolicySet::from_files(&live.name, &files, live.mode)
            .and_then(|set| check_targets(set, &self.targets))
        {
            Ok(set) => {
                let hash = set.hash().to_string();
                live.current.store(Arc::new(set));
                ReloadOutcome::Reloaded(hash)
            }
            Err(errors) => ReloadOutcome::Failed(errors),
        }
    }

    /// Reloads and records the outcome in logs and `palisade_policy_reloads_total`.
    /// With `polled` (a timer's poll, not SIGHUP) a change waits until it has settled.
    pub fn reload_and_report(&self, metrics: &Metrics, polled: bool) {
        for (name, outcome) in self.reload_sets(polled) {
            match outcome {
                ReloadOutcome::Unchanged => {}
                ReloadOutcome::Reloaded(hash) => {
                    metrics.policy_reloads.with_label_values(&["success"]).inc();
                    tracing::info!(policy_set = %name, policy_set_hash = %hash, "policies reloaded");
                }
                ReloadOutcome::Failed(errors) => {
                    metrics.policy_reloads.with_label_values(&["failure"]).inc();
                    for e in &errors {
                        tracing::error!(policy_set = %name, error = %e, "policy reload refused; keeping the last good set");
                    }
                }
            }
        }
    }

    /// Watches for changes on `runtime`: polls every `reload_interval` (unless zero) and
    /// reloads at once on SIGHUP (when `signals`).
    pub fn watch(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        metrics: Metrics,
        signals: bool,
    ) {
        let authz = self.clone();
        let interval = self.reload_interval;
        // Register for SIGHUP before returning, so a signal sent right after start reloads
        // instead of hitting the default action (terminate).
        let mut hup = signals
            .then(|| {
                let _entered = runtime.enter();
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
            })
            .flatten();
        runtime.spawn(async move {
            let mut tick = (!interval.is_zero()).then(|| {
                let mut t = tokio::time::interval(interval);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let by_signal = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let by_timer = async {
                    match tick.as_mut() {
                        Some(t) => t.tick().await,
                        None => std::future::pending().await,
                    }
                };
                let polled = tokio::select! {
                    _ = by_signal => {
                        tracing::info!("SIGHUP: reloading policies");
                        false
                    }
                    _ = by_timer => true,
                };
                // Reading and validating files blocks; keep it off the runtime's async threads.
                let a = authz.clone();
                let m = metrics.clone();
                let _ = tokio::task::spawn_blocking(move || a.reload_and_report(&m, polled)).await;
            }
        });
    }
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for s in &self.sets {
            list.entry(&format_args!(
                "{} ({}, {})",
                s.name,
                s.mode.as_str(),
                s.current.load().hash()
            ));
        }
        list.finish()
    }
}

fn load_checked(
    name: &str,
    dir: &std::path::Path,
    mode: Mode,
    targets: &[Target],
) -> Result<PolicySet, Vec<PolicyError>> {
    PolicySet::load(name, dir, mode).and_then(|set| check_targets(set, targets))
}

fn check_targets(set: PolicySet, targets: &[Target]) -> Result<PolicySet, Vec<PolicyError>> {
    let errors: Vec<PolicyError> = targets
        .iter()
        .filter_map(|t| set.check_target(&t.action, &t.resource).err())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|message| PolicyError {
            file: "(schema)".into(),
            line: None,
            column: None,
            message: format!("{message} (a route needs it)"),
        })
        .collect();
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}
