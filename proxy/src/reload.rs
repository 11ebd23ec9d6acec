//! Whole-config hot reload: the config file (and the listeners' certificate files) are watched;
//! a change is validated and applied to new requests without dropping any, or refused with the
//! reason and the last good configuration kept.
//!
//! - **Trigger**: SIGHUP, or the file's bytes changing (checked every `server.reload_interval`).
//!   The same process-environment overrides (`PALISADE_*`) apply as at start.
//! - **Validated first**: the new file goes through the whole of [`Config::from_yaml`]; one error
//!   and nothing changes (`palisade_config_reloads_total{result="failure"}`, the errors logged
//!   with their paths, the last one on `/readyz`).
//! - **What reloads live**: `routes`, `upstreams`, `limits`, `edge`, `guardrails` and
//!   `rate_limits` (the in-process limiter keeps its counters unless `rate_limits` itself changed).
//!   A reload builds a new [`Stages`] and swaps it in whole: requests already running, streams
//!   included, finish under the configuration they started with (`RequestCtx::stages`).
//! - **What needs a restart** ([`RESTART_ONLY`]): a change there refuses the *whole* reload with a
//!   message naming the section, so the running configuration is always exactly one version of
//!   the file and its hash (`/readyz`, every audit record's `config_hash`) says which.
//! - **Certificates**: each TLS listener's certificate/key pair and client CA reload when their
//!   files change, independently of the config file ([`crate::listener::tls`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use sha2::{Digest, Sha256};

use crate::config::stages::{Generation, LiveStages, Services, Stages};
use crate::config::Config;
use crate::listener::tls::{ReloadingCert, ReloadingClientCa};
use crate::ratelimit::RateLimiter;

mod fingerprint;

pub use fingerprint::Fingerprint;

/// Top-level sections read once at start, and why. A reload that changes one is refused (and
/// so does one that changes a stage's section in [`crate::config::stages::RESTART_ONLY`]).
pub const RESTART_ONLY: &[(&str, &str)] = &[
    (
        "listeners",
        "listeners are bound at start (their certificate files reload on change)",
    ),
    ("admin", "the admin listener is bound at start"),
    ("server", "threads, timeouts and logging are set at start"),
    (
        "authentication",
        "issuers and credential sources are set up at start (API key files and revocations \
         reload on their own)",
    ),
    (
        "authorization",
        "policy directories are opened at start (the policy files reload on change)",
    ),
    (
        "audit",
        "the audit sinks and the hash chain are opened at start",
    ),
    ("tracing", "the span exporter starts with the process"),
    (
        "embedded_orchestrator",
        "the orchestrator starts with the process",
    ),
];

/// Where the running configuration came from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file reloads read again; `None` for embedded defaults (nothing to reload).
    pub path: Option<PathBuf>,
    /// The text the running configuration was loaded from.
    pub text: String,
    /// The environment overrides it was loaded with; a reload applies the same.
    pub env: Vec<(String, String)>,
}

impl ConfigSource {
    /// Text without a file (tests, `palisade dev`): hashed, never reloaded.
    pub fn embedded(text: &str, env: Vec<(String, String)>) -> Self {
        Self {
            path: None,
            text: text.to_string(),
            env,
        }
    }
}

/// The [`Stages`] of `config`, over the long-lived `services` and `limiter`.
fn build_stages(
    config: &Config,
    services: &Services,
    limiter: Arc<RateLimiter>,
    config_hash: &str,
) -> Stages {
    let generation = Generation {
        routes: &config.routes,
        stages: &config.stages,
        edge: &config.edge,
        hash: config_hash,
    };
    Stages::build(generation, services, limiter)
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No config file (embedded defaults): nothing to reload.
    NoFile,
    /// The effective configuration is the running one (only comments or layout changed, or
    /// nothing).
    Unchanged,
    /// The new configuration is live for new requests.
    Applied {
        /// The hash before.
        from: String,
        /// The hash now.
        to: String,
        /// The top-level sections that changed.
        sections: Vec<String>,
    },
    /// Refused; the last good configuration stays. One message per problem, each with its path.
    Refused(Vec<String>),
}

/// The config reload state, as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The running configuration's hash.
    pub hash: String,
    /// Reloads applied since start.
    pub reloads: u64,
    /// Reloads refused since start.
    pub failed_reloads: u64,
    /// Where the last reload was refused (positions and field paths, or the restart-only
    /// sections changed; never a value, since `/readyz` needs no credentials), when the last one
    /// was. The full messages are in the log.
    pub last_error: Option<String>,
}

struct State {
    running: Fingerprint,
    /// The running configuration as typed (after overrides), for `GET /admin/config`.
    spec: Arc<crate::config::spec::ConfigSpec>,
    /// The file's bytes last looked at: a refused file is not retried until it changes again.
    file_seen: [u8; 32],
    /// A change seen by one poll, taken when the next reads the same bytes.
    file_settle: crate::settle::Settle<[u8; 32]>,
    limiter: Arc<RateLimiter>,
    status: Status,
}

/// `material` label values of the certificate metrics.
const CERTIFICATE: &str = "certificate";
const CLIENT_CA: &str = "client_ca";

struct ReloadMetrics {
    reloads: IntCounterVec,
    last_ok: IntGauge,
    certificates: IntCounterVec,
    /// `{listener, material}`: 1 while the files on disk are what is served, 0 from a refused
    /// reload until one is applied.
    certificates_ok: IntGaugeVec,
}

impl ReloadMetrics {
    fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "palisade_config_reloads_total",
                "Config file reloads, by result (success or failure).",
            ),
            &["result"],
        )?;
        let last_ok = IntGauge::new(
            "palisade_config_last_reload_successful",
            "1 when the last config reload was applied (or none was tried), 0 when it was refused.",
        )?;
        let certificates = IntCounterVec::new(
            Opts::new(
                "palisade_certificate_reloads_total",
                "TLS certificate and client CA reloads, by listener and result.",
            ),
            &["listener", "result"],
        )?;
        let certificates_ok = IntGaugeVec::new(
            Opts::new(
                "palisade_certificate_last_reload_successful",
                "1 when a listener's TLS material (certificate or client_ca) on disk is the one \
                 served, 0 when its last reload was refused.",
            ),
            &["listener", "material"],
        )?;
        last_ok.set(1);
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_ok.clone()))?;
        registry.register(Box::new(certificates.clone()))?;
        registry.register(Box::new(certificates_ok.clone()))?;
        Ok(Self {
            reloads,
            last_ok,
            certificates,
            certificates_ok,
        })
    }
}

/// Watches the config and certificate files and swaps in new [`Stages`].
pub struct Reloader {
    path: Option<PathBuf>,
    env: Vec<(String, String)>,
    live: LiveStages,
    services: Services,
    aux: tokio::runtime::Handle,
    certs: Vec<Arc<ReloadingCert>>,
    client_cas: Vec<Arc<ReloadingClientCa>>,
    metrics: ReloadMetrics,
    /// Held for a whole reload: one at a time.
    reloading: Mutex<()>,
    state: Mutex<State>,
}

impl Reloader {
    /// Builds the first [`Stages`] from `config` and the reloader that will replace them.
    pub(crate) fn start(
        config: &Config,
        source: ConfigSource,
        services: Services,
        limiter: Arc<RateLimiter>,
        tls: (Vec<Arc<ReloadingCert>>, Vec<Arc<ReloadingClientCa>>),
        aux: tokio::runtime::Handle,
    ) -> anyhow::Result<Arc<Self>> {
        let running = Fingerprint::of(&source.text, &source.env)
            .map_err(|e| anyhow::anyhow!("fingerprinting the configuration: {e}"))?;
        let stages = build_stages(config, &services, limiter.clone(), &running.hash);
        let metrics = ReloadMetrics::register(&services.core.metrics.registry)?;
        for listener in tls.0.iter().map(|c| c.listener()) {
            metrics
                .certificates_ok
                .with_label_values(&[listener, CERTIFICATE])
                .set(1);
        }
        for listener in tls.1.iter().map(|c| c.listener()) {
            metrics
                .certificates_ok
                .with_label_values(&[listener, CLIENT_CA])
                .set(1);
        }
        let status = Status {
            hash: running.hash.clone(),
            reloads: 0,
            failed_reloads: 0,
            last_error: None,
        };
        Ok(Arc::new(Self {
            path: source.path,
            env: source.env,
            live: Arc::new(arc_swap::ArcSwap::from_pointee(stages)),
            services,
            aux,
            certs: tls.0,
            client_cas: tls.1,
            metrics,
            reloading: Mutex::new(()),
            state: Mutex::new(State {
                file_seen: Sha256::digest(source.text.as_bytes()).into(),
                file_settle: Default::default(),
                spec: config.spec.clone(),
                running,
                limiter,
                status,
            }),
        }))
    }

    /// The live stages every listener's pipeline loads per request.
    pub fn live(&self) -> LiveStages {
        self.live.clone()
    }

    /// The running configuration as typed, after overrides (`GET /admin/config` redacts it).
    pub fn spec(&self) -> Arc<crate::config::spec::ConfigSpec> {
        self.state().spec.clone()
    }

    /// The live policy sets (they reload themselves; a config reload keeps them).
    pub fn authz(&self) -> Option<Arc<crate::authz::Authz>> {
        self.services.core.authz.clone()
    }

    /// What outlives config reloads: the core services and each stage's own (the admin API
    /// reaches a stage's service here).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The running configuration's hash and the reload counts.
    pub fn status(&self) -> Status {
        self.state().status.clone()
    }

    /// Reads the config file again and applies it, or refuses it (blocking: validation loads
    /// policies and compiles rule sets). Logs and counts the outcome.
    pub fn reload(&self, trigger: &str) -> Outcome {
        let outcome = self.try_reload();
        match &outcome {
            Outcome::NoFile => {}
            Outcome::Unchanged => {
                self.metrics.last_ok.set(1);
                tracing::debug!(
                    trigger,
                    "config reload: the file is the running configuration"
                );
            }
            Outcome::Applied { from, to, sections } => {
                self.metrics.reloads.with_label_values(&["success"]).inc();
                self.metrics.last_ok.set(1);
                tracing::info!(trigger, from = %from, to = %to, sections = %sections.join(","), "config reloaded");
            }
            Outcome::Refused(errors) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                self.metrics.last_ok.set(0);
                for e in errors {
                    tracing::error!(trigger, error = %e, "config reload refused; keeping the running configuration");
                }
            }
        }
        outcome
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held leaves nothing half-written (the swap is one store):
        // keep going rather than stop reloading for good.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a refusal. `errors` (with values) go to the log; `summary` (positions and field
    /// paths only: a value may be a credential) goes to the unauthenticated `/readyz`.
    fn refuse(&self, errors: Vec<String>, summary: String) -> Outcome {
        let mut state = self.state();
        state.status.failed_reloads += 1;
        state.status.last_error = Some(summary);
        Outcome::Refused(errors)
    }

    fn try_reload(&self) -> Outcome {
        let Some(path) = &self.path else {
            return Outcome::NoFile;
        };
        // One reload at a time. `state` itself is only held for short reads and the final swap:
        // `/readyz` and `/admin/config` read it on the aux runtime and must never wait for a
        // reload's validation (policies, rule sets, upstream DNS).
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let message = format!("cannot read {file}: {e}");
                return self.refuse(vec![message.clone()], message);
            }
        };
        let (running, limiter) = {
            let mut state = self.state();
            state.file_seen = Sha256::digest(text.as_bytes()).into();
            (state.running.clone(), state.limiter.clone())
        };
        let next = match Fingerprint::of(&text, &self.env) {
            Ok(f) => f,
            Err(e) => {
                let summary = format!("{file}: not a usable YAML document (details in the log)");
                return self.refuse(vec![e], summary);
            }
        };
        if next.hash == running.hash {
            // Back to the running version (a reverted edit): nothing is pending any more.
            self.state().status.last_error = None;
            return Outcome::Unchanged;
        }
        let changed = running.changed(&next);
        let needs_restart: Vec<String> = RESTART_ONLY
            .iter()
            .chain(crate::config::stages::RESTART_ONLY)
            .filter(|(name, _)| changed.iter().any(|c| c == name))
            .map(|(name, why)| format!("{name}: changed, but {why}; restart to apply it"))
            .collect();
        if !needs_restart.is_empty() {
            let summary = needs_restart.join("; ");
            return self.refuse(needs_restart, summary);
        }
        // Validation runs code that must never take the watcher down with it.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Config::from_yaml(&text, self.env.clone())
        }));
        let config = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                // `file:line:column: path: message`, as `palisade validate` prints them.
                let located = crate::config::locate_all(&text, e.field_errors());
                let errors = located.iter().map(|d| d.render(&file)).collect();
                let summary = located
                    .iter()
                    .map(|d| match d.position {
                        Some(p) => format!("{file}:{}:{}: {}", p.line, p.column, d.error.path),
                        None => format!("{file}: {}", d.error.path),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return self.refuse(errors, format!("{summary} (details in the log)"));
            }
            Err(_) => {
                let message = "validating the new file panicked (a bug: please report it)";
                return self.refuse(vec![message.into()], message.into());
            }
        };
        let limiter = if changed.iter().any(|c| c == "rate_limits") {
            // The Redis connection's I/O task lives on the aux runtime, like the first one's.
            let _runtime = self.aux.enter();
            match RateLimiter::new(
                config.rate_limits.clone(),
                self.services.core.metrics.clone(),
            ) {
                Ok(l) => Arc::new(l),
                Err(e) => {
                    let summary = "rate_limits: the Redis client could not be set up".to_string();
                    return self.refuse(vec![format!("rate_limits: {e}")], summary);
                }
            }
        } else {
            limiter
        };
        let stages = build_stages(&config, &self.services, limiter.clone(), &next.hash);
        stages.carry_over(&self.live.load());
        self.live.store(Arc::new(stages));
        let mut state = self.state();
        let from = std::mem::replace(&mut state.running, next);
        state.limiter = limiter;
        state.spec = config.spec.clone();
        state.status.hash = state.running.hash.clone();
        state.status.reloads += 1;
        state.status.last_error = None;
        Outcome::Applied {
            from: from.hash,
            to: state.running.hash.clone(),
            sections: changed,
        }
    }

    /// Whether the config file's bytes differ from those last looked at, and read the same on
    /// the previous poll too ([`crate::settle`]: not a file caught half-written).
    fn file_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let Ok(bytes) = std::fs::read(path) else {
            // Missing mid-update (an editor's rename, a ConfigMap's symlink swap): look again.
            return false;
        };
        let now: [u8; 32] = Sha256::digest(&bytes).into();
        let state = self.state();
        if state.file_seen == now {
            state.file_settle.clear();
            return false;
        }
        state.file_settle.settled(now)
    }

    /// Reloads every TLS listener's certificate pair and client CA whose files changed.
    pub fn refresh_certificates(&self) {
        let results = self
            .certs
            .iter()
            .map(|c| (c.listener(), CERTIFICATE, c.refresh()))
            .chain(
                self.client_cas
                    .iter()
                    .map(|c| (c.listener(), CLIENT_CA, c.refresh())),
            );
        for (listener, what, refresh) in results {
            let ok = self
                .metrics
                .certificates_ok
                .with_label_values(&[listener, what]);
            match refresh {
                crate::listener::tls::Refresh::Unchanged => {}
                crate::listener::tls::Refresh::Reloaded => {
                    ok.set(1);
                    self.metrics
                        .certificates
                        .with_label_values(&[listener, "success"])
                        .inc();
                    tracing::info!(listener, what, "TLS material reloaded");
                }
                crate::listener::tls::Refresh::Refused(e) => {
                    ok.set(0);
                    self.metrics
                        .certificates
                        .with_label_values(&[listener, "failure"])
                        .inc();
                    tracing::error!(listener, what, error = %e, "TLS reload refused; keeping the last good one");
                }
            }
        }
    }

    /// One watch step: certificates, then the config file (at once when `forced`, by SIGHUP).
    pub fn check(&self, forced: bool) {
        self.refresh_certificates();
        if forced {
            self.reload("SIGHUP");
        } else if self.file_changed() {
            self.reload("file change");
        }
    }

    /// Watches on the aux runtime: every `interval` (unless zero) and on SIGHUP (when
    /// `signals`).
    pub fn watch(self: &Arc<Self>, interval: Duration, signals: bool) {
        // Register for SIGHUP before returning, so a signal sent right after start is seen.
        let mut hangup = if signals {
            let _runtime = self.aux.enter();
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGHUP; the config reloads on file change only");
                    None
                }
            }
        } else {
            None
        };
        if hangup.is_none() && interval.is_zero() {
            return;
        }
        let me = self.clone();
        self.aux.spawn(async move {
            loop {
                let by_signal = async {
                    match hangup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let tick = async {
                    if interval.is_zero() {
                        std::future::pending::<()>().await
                    } else {
                        tokio::time::sleep(interval).await
                    }
                };
                let forced = tokio::select! {
                    _ = by_signal => true,
                    _ = tick => false,
                };
                let step = me.clone();
                let _ = tokio::task::spawn_blocking(move || step.check(forced)).await;
            }
        });
    }
}
