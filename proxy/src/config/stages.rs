//! The stage registry: which stages exist, and for each, in one place, what validation makes of
//! its configuration, what outlives a reload, how a configuration's [`Stages`] is built, and
//! what the stage keeps per request.
//!
//! The stage contract ([`crate::stage`]) says what a stage *does*; `pipeline.rs` says *when*
//! (the order of every hook). This file says what a stage *is made of*. Adding a stage touches
//! four existing files besides its own folder (`docs/architecture.md#how-to-add-a-stage`):
//!
//! 1. `lib.rs`: `pub mod <stage>;`
//! 2. `config/spec.rs`: its top-level section and/or its field on a route, as written in YAML;
//! 3. this file (`config/stages.rs`): one entry in each part below that the stage has;
//! 4. `pipeline.rs`: its hook calls, in order.
//!
//! The parts, in the order a configuration lives through them:
//!
//! - [`RouteStages::validate`]: each route's state per stage, built from the route's spec at
//!   config load (errors name the route's field);
//! - [`StageConfig::finish`]: the stages' top-level sections, validated after every route;
//! - [`RESTART_ONLY`]: stage sections a reload may not change; [`ROUTE_FILES`]: route fields
//!   naming files whose content is configuration (a tool lock);
//! - [`Services::start`]: what a stage keeps across reloads (stores, connections), started once;
//! - [`Stages::build`] and [`Stages::carry_over`]: one configuration's stages;
//! - [`States`]: what each stage keeps for one request.

use std::sync::Arc;

use crate::authn::Authenticator;
use crate::config::spec::{ConfigSpec, RouteSpec};
use crate::error::FieldError;
use crate::lifecycle::Lifecycle;
use crate::ratelimit::RateLimiter;
use crate::route::RouteTable;
use crate::telemetry::Metrics;

/// Top-level sections of stages that are read once at start, and why: a reload that changes
/// one is refused (`crate::reload::RESTART_ONLY` holds the process's own).
pub const RESTART_ONLY: &[(&str, &str)] = &[(
    "approvals",
    "the approval store and its webhook start with the process",
)];

/// Route fields (JSON pointers into a route) that name a file whose content is configuration:
/// its SHA-256 is part of the configuration's hash, so a changed file is applied by a reload
/// like a changed YAML line (`crate::reload`).
pub const ROUTE_FILES: &[&str] = &["/tool_integrity/lock"];

/// What one route's configuration needs from the rest of the file: the sections validated
/// before the routes (each route carries its effective limits and its compiled rule set).
pub struct RouteInputs<'a> {
    /// The whole file.
    pub spec: &'a ConfigSpec,
    /// The top-level rate limits, validated.
    pub rate_limits: &'a crate::ratelimit::policy::Validated,
    /// The guardrail rule sets, compiled.
    pub guardrails: &'a crate::guardrails::RuleSets,
}

/// One route's state per stage, before it joins [`PerRoute`].
pub struct RouteStages {
    authz: Arc<crate::authz::RouteAuthz>,
    limits: Arc<crate::ratelimit::RouteLimits>,
    guardrails: Option<Arc<crate::guardrails::RuleSet>>,
    integrity: Option<Arc<crate::integrity::RouteIntegrity>>,
}

impl RouteStages {
    /// The stages' state of route `r` (at `at`, e.g. `routes[2]`); errors go to `errors`.
    pub fn validate(
        inputs: &RouteInputs<'_>,
        r: &RouteSpec,
        at: &str,
        errors: &mut Vec<FieldError>,
    ) -> Self {
        let limits = crate::ratelimit::policy::route_limits(
            inputs.rate_limits,
            &r.name,
            r.rate_limits.as_ref(),
            at,
            errors,
        );
        let integrity = crate::integrity::route_integrity(
            &r.name,
            r.protocol,
            r.tool_integrity.as_ref(),
            at,
            errors,
        );
        let mut authz = crate::authz::RouteAuthz::from_spec(&r.name, r.protocol, &r.authorization)
            .unwrap_or_else(|errs| {
                for (path, message) in errs {
                    errors.push(FieldError {
                        path: format!("{at}.authorization.{path}"),
                        message,
                    });
                }
                Default::default()
            });
        if let Some(integrity) = &integrity {
            // Cedar sees the pinned annotations only: a server may claim any hint it likes.
            authz.tool_hints = Arc::new(integrity.hints());
        }
        let guardrails = crate::guardrails::route_rule_set(
            inputs.guardrails,
            &inputs.spec.guardrails,
            r.guardrails.as_ref(),
            at,
            errors,
        );
        Self {
            authz: Arc::new(authz),
            limits: Arc::new(limits),
            guardrails,
            integrity,
        }
    }
}

/// Each stage's per-route state, indexed by [`crate::route::Route::id`].
#[derive(Debug, Clone, Default)]
pub struct PerRoute {
    /// How each route's requests map to Cedar `(action, resource)`.
    pub authz: Vec<Arc<crate::authz::RouteAuthz>>,
    /// Each route's rate limits and stream caps (inherited + its own).
    pub limits: Vec<Arc<crate::ratelimit::RouteLimits>>,
    /// Each route's guardrail rule set; `None` when off.
    pub guardrails: Vec<Option<Arc<crate::guardrails::RuleSet>>>,
    /// Each route's tool-definition integrity; `None` when off.
    pub integrity: Vec<Option<Arc<crate::integrity::RouteIntegrity>>>,
}

impl PerRoute {
    /// Adds the next route's state (routes are pushed in id order).
    pub fn push(&mut self, route: RouteStages) {
        self.authz.push(route.authz);
        self.limits.push(route.limits);
        self.guardrails.push(route.guardrails);
        self.integrity.push(route.integrity);
    }
}

/// What validation made of the stages' configuration: their per-route state and the settings
/// of their top-level sections.
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// Each stage's per-route state, by route id.
    pub per_route: PerRoute,
    /// Approvals: deadline, caps, store, webhook.
    pub approvals: crate::approvals::spec::Settings,
}

impl StageConfig {
    /// The stages' top-level sections of `spec`, validated after every route (`per_route`).
    pub fn finish(
        spec: &ConfigSpec,
        mut per_route: PerRoute,
        errors: &mut Vec<FieldError>,
    ) -> Self {
        // Pinned tool names must not collide across routes; each route learns the others'.
        crate::integrity::link(&mut per_route.integrity, errors);
        Self {
            per_route,
            approvals: crate::approvals::spec::validate(&spec.approvals, errors),
        }
    }
}

/// The process's core services, started before the stages and used beyond them (the admin
/// listener, the CLI's admin API).
pub struct Core {
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness, in-flight tracking, drain.
    pub lifecycle: Arc<Lifecycle>,
    /// Identity.
    pub authn: Arc<Authenticator>,
    /// The live policy sets; `None` when authorization is off.
    pub authz: Option<Arc<crate::authz::Authz>>,
    /// The audit trail.
    pub audit: Arc<crate::audit::Auditor>,
    /// OpenTelemetry spans.
    pub tracing: Arc<crate::telemetry::otel::Tracing>,
}

/// What outlives a configuration: the core services and each stage's own. A reload hands them
/// to the new [`Stages`].
pub struct Services {
    /// The core services.
    pub core: Core,
    /// Tool integrity's findings counter.
    pub integrity: prometheus::IntCounterVec,
    /// Human approvals: held calls wait on it across reloads; the admin API decides them.
    pub approvals: Arc<crate::approvals::Approvals>,
}

impl Services {
    /// Starts each stage's long-lived services for `config`, over `core`. Their I/O (Redis
    /// connections, webhook posts) runs on `aux`, the process's small runtime beside pingora's.
    pub fn start(
        core: Core,
        config: &StageConfig,
        aux: &tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let integrity = crate::integrity::register_metrics(&core.metrics.registry)
            .context("tool integrity metrics")?;
        let _runtime = aux.enter();
        let approvals = Arc::new(
            crate::approvals::Approvals::new(
                config.approvals.clone(),
                &core.metrics.registry,
                core.authz.clone(),
                core.authn.clone(),
                core.audit.clone(),
            )
            .context("approvals")?,
        );
        if approvals.is_shared() {
            // Pending approvals of an earlier run are announced again, not lost.
            let again = approvals.clone();
            aux.spawn(async move { again.reannounce().await });
        }
        Ok(Self {
            core,
            integrity,
            approvals,
        })
    }
}

/// The shared state of every stage, built from one configuration: at start, and again by each
/// config reload ([`crate::reload`]). A request keeps the `Stages` it started with for its whole
/// life (`RequestCtx::stages`), so its route and each stage's per-route state always come from
/// the same configuration, even when a reload swaps in a new one mid-stream.
pub struct Stages {
    /// The route table.
    pub routes: Arc<RouteTable>,
    /// The hash of the configuration these stages were built from (`/readyz`, audit records).
    pub config_hash: Arc<str>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness, in-flight tracking, drain.
    pub lifecycle: Arc<Lifecycle>,
    /// Identity.
    pub authn: Arc<Authenticator>,
    /// Cedar authorization (no-op hooks when no policy set is configured).
    pub authz: crate::authz::stage::AuthzStage,
    /// Rate limits, quotas and stream caps.
    pub limit: crate::ratelimit::stage::LimitStage,
    /// Guardrails.
    pub guard: crate::guardrails::GuardrailsStage,
    /// MCP tool-definition integrity (no-op hooks on routes without `tool_integrity`).
    pub integrity: crate::integrity::IntegrityStage,
    /// Human approvals of calls a policy marks `@approval("required")`.
    pub approvals: crate::approvals::stage::ApprovalsStage,
    /// Trusted reverse proxies: who the client is.
    pub edge: crate::listener::Edge,
    /// The audit trail (a no-op when no sink is configured).
    pub audit: Arc<crate::audit::Auditor>,
    /// OpenTelemetry spans (off unless `tracing.enabled`).
    pub tracing: Arc<crate::telemetry::otel::Tracing>,
}

/// The live [`Stages`]: swapped whole by a config reload, loaded once per request.
pub type LiveStages = Arc<arc_swap::ArcSwap<Stages>>;

/// One configuration as [`Stages::build`] reads it.
pub struct Generation<'a> {
    /// The routes.
    pub routes: &'a Arc<RouteTable>,
    /// The stages' configuration.
    pub stages: &'a StageConfig,
    /// The client edge.
    pub edge: &'a crate::listener::spec::EdgeSpec,
    /// The configuration's hash.
    pub hash: &'a str,
}

impl Stages {
    /// The stages of `config`, over the long-lived `services` and `limiter`.
    pub fn build(config: Generation<'_>, services: &Services, limiter: Arc<RateLimiter>) -> Self {
        let core = &services.core;
        let per_route = &config.stages.per_route;
        Self {
            routes: config.routes.clone(),
            config_hash: config.hash.into(),
            metrics: core.metrics.clone(),
            lifecycle: core.lifecycle.clone(),
            authn: core.authn.clone(),
            authz: crate::authz::stage::AuthzStage::new(
                core.authz.clone(),
                per_route.authz.clone(),
                core.metrics.clone(),
            ),
            limit: crate::ratelimit::stage::LimitStage::new(limiter, per_route.limits.clone()),
            guard: crate::guardrails::GuardrailsStage::new(
                per_route.guardrails.clone(),
                core.metrics.clone(),
            ),
            integrity: crate::integrity::IntegrityStage::new(
                per_route.integrity.clone(),
                services.integrity.clone(),
            ),
            approvals: crate::approvals::stage::ApprovalsStage::new(
                Some(services.approvals.clone()),
                per_route.authz.clone(),
            ),
            edge: crate::listener::Edge::new(config.edge),
            audit: core.audit.clone(),
            tracing: core.tracing.clone(),
        }
    }

    /// What a reload's new stages take over from the `previous` ones (what stages learned
    /// from traffic, such as tool definitions already seen).
    pub fn carry_over(&self, previous: &Stages) {
        self.integrity.carry_over(&previous.integrity);
    }
}

/// What each stage keeps for one request (`RequestCtx::states`).
#[derive(Default)]
pub struct States {
    /// Authorization's state.
    pub authz: crate::authz::stage::State,
    /// What the rate-limit stage admitted: the stream slot (released when this context
    /// drops, however the request ended) and the `RateLimit` headers to send.
    pub limit: crate::ratelimit::Admission,
    /// Guardrails' state (findings, the response filter).
    pub guard: crate::guardrails::State,
    /// Tool-definition integrity's state (`tools/list` ids, findings).
    pub integrity: crate::integrity::State,
    /// The approvals stage's state (the held call and its outcome).
    pub approvals: crate::approvals::stage::State,
    /// The audit trail's state (tool calls seen in the stream).
    pub audit: crate::protocol::agui::SeenToolCalls,
}

#[cfg(test)]
mod tests;
