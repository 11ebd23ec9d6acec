//! Rate limits, quotas and stream caps: the stage after identity and authorization.
//!
//! A request's route carries its [`RouteLimits`] (top-level limits it inherits plus its own,
//! built at config load). [`RateLimiter::admit`] checks every limit that applies to the caller
//! — keyed on the principal, API key, client IP, tenant, route or nothing (`global`) — and
//! either admits the request with an [`Admission`] kept in the request context, or refuses it
//! with 429 `RATE_LIMITED` (`Retry-After`, `RateLimit-Policy`, `RateLimit`). All limits must
//! pass, and a refused request consumes from none of them.
//!
//! - Algorithms ([`algorithm`]): GCRA for rates (exact, no window edges), epoch-aligned fixed
//!   windows for quotas (`per: 1d` resets at 00:00 UTC).
//! - Backends: the sharded, bounded in-process [`memory::MemoryStore`] (default), or Redis
//!   standalone/Cluster ([`redis::RedisStore`], one atomic Lua call per request) shared by every
//!   replica, with `fail_open` (fall back to in-process, counted) or `fail_closed` (503
//!   `RATE_LIMIT_BACKEND_DOWN`) while Redis is unreachable; recovery needs nothing.
//! - Tiers: role and API-key-tier multipliers scale `principal`/`api_key` limits.
//! - Stream caps ([`streams`]): an RAII [`streams::StreamPermit`] in the context, released
//!   however the stream ends.
//!
//! Time comes from a [`Clock`] (tests drive a [`clock::ManualClock`]); with Redis it is the
//! server's, so replicas agree. See `docs/rate-limits.md`.

pub mod algorithm;
pub mod clock;
pub mod headers;
pub mod memory;
pub mod policy;
pub mod redis;
pub mod spec;
pub mod stage;
pub mod streams;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::authn::{Principal, PrincipalKind};
use crate::error::ProxyError;
use crate::telemetry::Metrics;
pub use clock::{Clock, SystemClock};
pub use headers::RateLimitHeaders;
pub use policy::{Limit, RouteLimits, Settings};
use spec::{FailureMode, LimitScope};
use streams::{StreamPermit, StreamSlots};

/// Checks limits and stream caps; one per proxy, shared by every listener.
pub struct RateLimiter {
    settings: Settings,
    memory: memory::MemoryStore,
    redis: Option<redis::RedisStore>,
    clock: Arc<dyn Clock>,
    streams: Arc<StreamSlots>,
    metrics: Metrics,
    /// `palisade_ratelimit_decisions_total` children by [scope][decision], resolved once: a
    /// label lookup per limit per request would cost more than the check.
    decisions: [[prometheus::IntCounter; 2]; SCOPES.len()],
}

#[derive(Clone, Copy)]
enum Decision {
    Allowed = 0,
    Rejected = 1,
}

const SCOPES: [LimitScope; 6] = [
    LimitScope::Principal,
    LimitScope::ApiKey,
    LimitScope::ClientIp,
    LimitScope::Tenant,
    LimitScope::Route,
    LimitScope::Global,
];

/// What an admitted request keeps in its context until it ends.
#[derive(Debug, Default)]
pub struct Admission {
    /// `RateLimit-Policy` / `RateLimit` for the response, when configured to send them.
    pub headers: RateLimitHeaders,
    /// The stream slots this request holds, released when the context drops.
    pub permit: Option<StreamPermit>,
}

impl Admission {
    /// Headers to add to an allowed response (empty unless `response_headers: true`).
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        self.headers.pairs()
    }

    /// Gives the stream slots back early: the response turned out not to be a stream.
    pub fn release_stream(&mut self) {
        self.permit = None;
    }
}

/// Who is calling and where, as limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The matched route's name.
    pub route: &'a str,
    /// The principal, once authentication ran (`None`: anonymous, keyed on the client IP).
    pub principal: Option<&'a Principal>,
    /// The TCP peer's address.
    pub client_ip: Option<IpAddr>,
    /// Whether the request opens a stream (takes a stream slot).
    pub wants_stream: bool,
}

struct Outcome {
    allowed: bool,
    retry_after: Duration,
    /// Per applicable limit: (passed, remaining, reset).
    states: Vec<(bool, u64, Duration)>,
}

impl RateLimiter {
    /// A limiter on the system clock.
    pub fn new(settings: Settings, metrics: Metrics) -> Result<Self, ::redis::RedisError> {
        Self::with_clock(settings, Arc::new(SystemClock), metrics)
    }

    /// A limiter reading time from `clock` (the in-process store; Redis uses its own clock).
    pub fn with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Self, ::redis::RedisError> {
        let redis = settings
            .redis
            .as_ref()
            .map(redis::RedisStore::new)
            .transpose()?;
        let decisions = SCOPES.map(|scope| {
            ["allowed", "rejected"].map(|outcome| {
                metrics
                    .ratelimit_decisions
                    .with_label_values(&[scope_label(scope), outcome])
            })
        });
        Ok(Self {
            decisions,
            memory: memory::MemoryStore::new(settings.max_keys.max(1)),
            redis,
            clock,
            streams: Arc::new(StreamSlots::default()),
            settings,
            metrics,
        })
    }

    /// Checks `caller` against `limits`: stream caps first (local, and released for free if a
    /// rate limit then refuses), then every applicable limit at once.
    pub async fn check(
        &self,
        limits: &RouteLimits,
        caller: &Caller<'_>,
    ) -> Result<Admission, ProxyError> {
        let permit = if caller.wants_stream && limits.streams.any() {
            Some(self.take_stream_slot(limits, caller)?)
        } else {
            None
        };
        let applicable: Vec<(&Limit, String)> = limits
            .limits
            .iter()
            .filter_map(|l| scope_value(l.scope, caller).map(|v| (l.as_ref(), v)))
            .collect();
        if applicable.is_empty() {
            return Ok(Admission {
                headers: RateLimitHeaders::default(),
                permit,
            });
        }
        let multiplier = self.settings.multiplier(caller.principal);
        let outcome = self.count(&applicable, multiplier).await?;
        for ((limit, _), (passed, _, _)) in applicable.iter().zip(&outcome.states) {
            let result = match (outcome.allowed, passed) {
                (true, _) => Decision::Allowed,
                (false, false) => Decision::Rejected,
                (false, true) => continue,
            };
            self.decisions[scope_index(limit.scope)][result as usize].inc();
        }
        // Rendering costs more than the check itself: only when a response will carry it.
        if outcome.allowed && !self.settings.response_headers {
            return Ok(Admission {
                headers: RateLimitHeaders::default(),
                permit,
            });
        }
        let states: Vec<headers::LimitState<'_>> = applicable
            .iter()
            .zip(&outcome.states)
            .map(
                |((limit, _), &(passed, remaining, reset))| headers::LimitState {
                    limit,
                    quota: limit.quota(multiplier),
                    // A refused request consumed nothing: report what is really left.
                    remaining: if outcome.allowed || !passed {
                        remaining
                    } else {
                        remaining + 1
                    },
                    reset,
                },
            )
            .collect();
        let headers = RateLimitHeaders::render(&states);
        if !outcome.allowed {
            return Err(ProxyError::RateLimited {
                retry_after: outcome.retry_after,
                headers,
            });
        }
        Ok(Admission { headers, permit })
    }

    async fn count(&self, applicable: &[(&Limit, String)], m: f64) -> Result<Outcome, ProxyError> {
        let Some(redis) = &self.redis else {
            return Ok(self.count_in_memory(applicable, m));
        };
        let checks: Vec<redis::RedisCheck> = applicable
            .iter()
            .map(|(l, v)| redis::RedisCheck {
                tag: v.clone(),
                id: l.id.clone(),
                rule: l.rule(m),
            })
            .collect();
        match redis.check(&checks).await {
            Ok(o) => Ok(Outcome {
                allowed: o.allowed,
                retry_after: o.retry_after,
                states: o
                    .verdicts
                    .iter()
                    .map(|v| (v.passed, v.remaining, v.reset))
                    .collect(),
            }),
            Err(e) => {
                self.metrics
                    .ratelimit_backend_errors
                    .with_label_values(&["redis"])
                    .inc();
                let mode = self
                    .settings
                    .redis
                    .as_ref()
                    .map_or(FailureMode::FailOpen, |r| r.on_failure);
                tracing::debug!(error = %e, ?mode, "rate limit backend unavailable");
                match mode {
                    FailureMode::FailOpen => {
                        self.metrics.ratelimit_fallbacks.inc();
                        Ok(self.count_in_memory(applicable, m))
                    }
                    FailureMode::FailClosed => Err(ProxyError::RateLimitBackendDown),
                }
            }
        }
    }

    fn count_in_memory(&self, applicable: &[(&Limit, String)], m: f64) -> Outcome {
        let checks: Vec<(u64, algorithm::Rule)> = applicable
            .iter()
            .map(|(l, v)| (self.memory.key(&l.id, v), l.rule(m)))
            .collect();
        let verdicts = self.memory.check(&checks, self.clock.now_ns());
        Outcome {
            allowed: verdicts.iter().all(|v| v.allowed),
            retry_after: Duration::from_nanos(
                verdicts.iter().map(|v| v.retry_ns).max().unwrap_or(0),
            ),
            states: verdicts
                .iter()
                .map(|v| (v.allowed, v.remaining, Duration::from_nanos(v.reset_ns)))
                .collect(),
        }
    }

    fn take_stream_slot(
        &self,
        limits: &RouteLimits,
        caller: &Caller<'_>,
    ) -> Result<StreamPermit, ProxyError> {
        let who = principal_uid(caller);
        let caps = &limits.streams;
        let route = caller.route;
        let wanted: Vec<(&'static str, String, u32)> = [
            (
                "streams_per_principal",
                caps.per_principal,
                format!("p:{who}"),
            ),
            ("streams_total", caps.total, "total".to_string()),
            (
                "streams_route_per_principal",
                caps.route_per_principal,
                format!("r:{route}:p:{who}"),
            ),
            (
                "streams_route_total",
                caps.route_total,
                format!("r:{route}"),
            ),
        ]
        .into_iter()
        .filter_map(|(label, cap, key)| cap.map(|c| (label, key, c)))
        .collect();
        match self.streams.try_acquire(wanted) {
            Ok(permit) => Ok(permit),
            Err(reached) => {
                self.metrics
                    .ratelimit_decisions
                    .with_label_values(&[reached.cap, "rejected"])
                    .inc();
                Err(ProxyError::RateLimited {
                    retry_after: Duration::from_secs(1),
                    headers: RateLimitHeaders::default(),
                })
            }
        }
    }

    /// Open-stream counts (for tests and the admin view).
    pub fn stream_slots(&self) -> &StreamSlots {
        &self.streams
    }

    /// The in-process store (for tests and the bench).
    pub fn memory(&self) -> &memory::MemoryStore {
        &self.memory
    }
}

/// The principal's entity uid, or `Anonymous::"<client ip>"` before/without authentication.
fn principal_uid(caller: &Caller<'_>) -> String {
    match caller.principal {
        Some(p) => p.entity_uid(),
        None => match caller.client_ip {
            Some(ip) => format!("Anonymous::\"{ip}\""),
            None => "Anonymous::\"unknown\"".to_string(),
        },
    }
}

/// The counter a limit of `scope` uses for `caller`; `None` when the limit does not apply.
fn scope_value(scope: LimitScope, caller: &Caller<'_>) -> Option<String> {
    match scope {
        LimitScope::Principal => Some(principal_uid(caller)),
        LimitScope::ApiKey => caller
            .principal
            .filter(|p| p.kind == PrincipalKind::ApiKey)
            .map(Principal::entity_uid),
        LimitScope::ClientIp => caller.client_ip.map(|ip| format!("ip:{ip}")),
        LimitScope::Tenant => caller
            .principal
            .and_then(|p| p.tenant.as_ref())
            .map(|t| format!("tenant:{t}")),
        LimitScope::Route => Some(format!("route:{}", caller.route)),
        LimitScope::Global => Some("global".to_string()),
    }
}

fn scope_index(scope: LimitScope) -> usize {
    SCOPES.iter().position(|s| *s == scope).unwrap_or(0)
}

fn scope_label(scope: LimitScope) -> &'static str {
    match scope {
        LimitScope::Principal => "principal",
        LimitScope::ApiKey => "api_key",
        LimitScope::ClientIp => "client_ip",
        LimitScope::Tenant => "tenant",
        LimitScope::Route => "route",
        LimitScope::Global => "global",
    }
}
