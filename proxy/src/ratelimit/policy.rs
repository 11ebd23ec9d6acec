//! Validated limits: [`Settings`] (process-wide) and [`RouteLimits`] (what one route checks),
//! built from the spec with every error reported by its field path.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::algorithm::Rule;
use super::spec::{
    FailureMode, LimitKind, LimitScope, LimitSpec, RateLimitsSpec, RouteLimitsSpec, StreamCapsSpec,
};
use crate::authn::{Principal, PrincipalKind};
use crate::error::FieldError;

/// One validated limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// The configured name (the `RateLimit-Policy` item).
    pub name: String,
    /// Counter id: the name for top-level limits, `<route>/<name>` for a route's own.
    pub id: String,
    /// Who shares a counter.
    pub scope: LimitScope,
    /// Rate (GCRA) or quota (fixed window).
    pub kind: LimitKind,
    /// Requests per `per`.
    pub requests: u64,
    /// The period.
    pub per: Duration,
    /// Bucket size (rates).
    pub burst: u64,
}

impl Limit {
    /// Whether tier multipliers scale this limit (limits keyed on who calls).
    pub fn tiered(&self) -> bool {
        matches!(self.scope, LimitScope::Principal | LimitScope::ApiKey)
    }

    /// The rule for a caller whose multiplier is `multiplier` (1.0 for untiered limits).
    pub fn rule(&self, multiplier: f64) -> Rule {
        let m = if self.tiered() { multiplier } else { 1.0 };
        let per_ns = self.per.as_nanos() as f64;
        match self.kind {
            LimitKind::Rate => Rule {
                kind: LimitKind::Rate,
                // Rounded up: a limit never admits faster than configured.
                interval_ns: (per_ns / (self.requests as f64 * m)).ceil().max(1.0) as u64,
                capacity: scaled(self.burst, m),
            },
            LimitKind::Quota => Rule {
                kind: LimitKind::Quota,
                interval_ns: per_ns as u64,
                capacity: scaled(self.requests, m),
            },
        }
    }

    /// Requests per `per` after `multiplier` (for `RateLimit-Policy: q=`).
    pub fn quota(&self, multiplier: f64) -> u64 {
        scaled(self.requests, if self.tiered() { multiplier } else { 1.0 })
    }
}

fn scaled(n: u64, m: f64) -> u64 {
    ((n as f64) * m).floor().max(1.0) as u64
}

/// Stream caps that apply to one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCaps {
    /// Open streams per principal across all routes.
    pub per_principal: Option<u32>,
    /// Open streams in total across all routes.
    pub total: Option<u32>,
    /// Open streams per principal on this route.
    pub route_per_principal: Option<u32>,
    /// Open streams on this route.
    pub route_total: Option<u32>,
}

impl StreamCaps {
    /// Whether any cap is set.
    pub fn any(&self) -> bool {
        self.per_principal.is_some()
            || self.total.is_some()
            || self.route_per_principal.is_some()
            || self.route_total.is_some()
    }
}

/// What the rate-limit stage checks for one route: built once at config load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteLimits {
    /// Every limit that applies (inherited first, then the route's own).
    pub limits: Vec<Arc<Limit>>,
    /// Stream caps.
    pub streams: StreamCaps,
}

/// The Redis backend's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Standalone URL, or Cluster seed nodes.
    pub target: RedisTarget,
    /// Key prefix.
    pub key_prefix: String,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Behaviour while Redis is unreachable.
    pub on_failure: FailureMode,
}

/// Which Redis deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server.
    Standalone(String),
    /// A Cluster, by seed nodes.
    Cluster(Vec<String>),
}

/// Process-wide rate-limit settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Multipliers by role.
    pub role_multipliers: BTreeMap<String, f64>,
    /// Multipliers by API-key tier.
    pub tier_multipliers: BTreeMap<String, f64>,
    /// Send the IETF headers on allowed responses too.
    pub response_headers: bool,
    /// Bound on in-process counters.
    pub max_keys: usize,
    /// The shared backend, when configured.
    pub redis: Option<RedisSettings>,
}

impl Settings {
    /// The multiplier of `principal`: the largest of its roles' and its API-key tier's, else 1.
    pub fn multiplier(&self, principal: Option<&Principal>) -> f64 {
        let Some(p) = principal else { return 1.0 };
        let roles = p
            .roles
            .iter()
            .filter_map(|r| self.role_multipliers.get(r).copied());
        let tier = p
            .limit_tier
            .as_ref()
            .filter(|_| p.kind == PrincipalKind::ApiKey)
            .and_then(|t| self.tier_multipliers.get(t).copied());
        roles
            .chain(tier)
            .fold(None, |acc: Option<f64>, m| {
                Some(acc.map_or(m, |a| a.max(m)))
            })
            .unwrap_or(1.0)
    }
}

/// The validated top-level section: settings plus the limits every route inherits.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    /// Process-wide settings.
    pub settings: Settings,
    /// Top-level limits.
    pub inherited: Vec<Arc<Limit>>,
    /// Top-level stream caps.
    pub streams: StreamCapsSpec,
}

/// Validates the top-level `rate_limits`, pushing errors under `rate_limits.`.
pub fn validate(spec: &RateLimitsSpec, errors: &mut Vec<FieldError>) -> Validated {
    let at = "rate_limits";
    let inherited = limits(&spec.limits, &format!("{at}.limits"), None, errors);
    for (field, map) in [
        ("role_multipliers", &spec.role_multipliers),
        ("tier_multipliers", &spec.tier_multipliers),
    ] {
        for (key, m) in map {
            if !(m.is_finite() && *m > 0.0) {
                push(
                    errors,
                    format!("{at}.{field}.{key}"),
                    "must be a number above 0",
                );
            }
        }
    }
    caps(&spec.streams, &format!("{at}.streams"), errors);
    if spec.memory.max_keys == 0 {
        push(
            errors,
            format!("{at}.memory.max_keys"),
            "must be at least 1",
        );
    }
    let redis = spec.redis.as_ref().and_then(|r| {
        let at = format!("{at}.redis");
        let target = match (&r.url, r.cluster.is_empty()) {
            (Some(url), true) => Some(RedisTarget::Standalone(url.clone())),
            (None, false) => Some(RedisTarget::Cluster(r.cluster.clone())),
            _ => {
                push(errors, at.clone(), "set exactly one of `url` and `cluster`");
                None
            }
        };
        let urls: Vec<&String> = r.url.iter().chain(r.cluster.iter()).collect();
        for (i, url) in urls.into_iter().enumerate() {
            if !(url.starts_with("redis://") && redis::Client::open(url.as_str()).is_ok()) {
                let field = if r.url.is_some() {
                    format!("{at}.url")
                } else {
                    format!("{at}.cluster[{i}]")
                };
                push(errors, field, format!("`{url}` is not a redis:// URL"));
            }
        }
        if r.key_prefix.contains(['{', '}']) {
            push(
                errors,
                format!("{at}.key_prefix"),
                "must not contain `{` or `}`",
            );
        }
        if r.timeout.is_zero() {
            push(errors, format!("{at}.timeout"), "must be greater than 0");
        }
        target.map(|target| RedisSettings {
            target,
            key_prefix: r.key_prefix.clone(),
            timeout: r.timeout,
            on_failure: r.on_failure,
        })
    });
    Validated {
        settings: Settings {
            role_multipliers: spec.role_multipliers.clone(),
            tier_multipliers: spec.tier_multipliers.clone(),
            response_headers: spec.response_headers,
            max_keys: spec.memory.max_keys,
            redis,
        },
        inherited,
        streams: spec.streams.clone(),
    }
}

/// Builds one route's [`RouteLimits`]; `at` is the route's path (`routes[2]`).
pub fn route_limits(
    top: &Validated,
    route: &str,
    spec: Option<&RouteLimitsSpec>,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> RouteLimits {
    let inherit = spec.is_none_or(|s| s.inherit);
    let mut all: Vec<Arc<Limit>> = if inherit {
        top.inherited.clone()
    } else {
        Vec::new()
    };
    let mut caps_spec = StreamCapsSpec::default();
    if let Some(spec) = spec {
        let at = format!("{at}.rate_limits");
        let taken: HashSet<&str> = all.iter().map(|l| l.name.as_str()).collect();
        let own = limits(&spec.limits, &format!("{at}.limits"), Some(route), errors);
        for (i, l) in own.iter().enumerate() {
            if taken.contains(l.name.as_str()) {
                push(
                    errors,
                    format!("{at}.limits[{i}].name"),
                    format!("`{}` is also a top-level limit", l.name),
                );
            }
        }
        all.extend(own);
        caps(&spec.streams, &format!("{at}.streams"), errors);
        caps_spec = spec.streams.clone();
    }
    RouteLimits {
        limits: all,
        streams: StreamCaps {
            per_principal: top.streams.per_principal,
            total: top.streams.total,
            route_per_principal: caps_spec.per_principal,
            route_total: caps_spec.total,
        },
    }
}

fn limits(
    specs: &[LimitSpec],
    at: &str,
    route: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Vec<Arc<Limit>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in specs.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let before = errors.len();
        let name_ok = !l.name.is_empty()
            && l.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !name_ok {
            push(
                errors,
                format!("{at}.name"),
                "use 1 or more of A-Z a-z 0-9 _ - .",
            );
        } else if !names.insert(l.name.as_str()) {
            push(
                errors,
                format!("{at}.name"),
                format!("limit `{}` is defined twice", l.name),
            );
        }
        if l.requests == 0 || l.requests > 1_000_000_000 {
            push(
                errors,
                format!("{at}.requests"),
                "must be between 1 and 1000000000",
            );
        }
        if l.per < Duration::from_millis(1) || l.per > Duration::from_secs(366 * 86_400) {
            push(errors, format!("{at}.per"), "must be between 1ms and 366d");
        }
        if let Some(burst) = l.burst {
            if l.kind == LimitKind::Quota {
                push(
                    errors,
                    format!("{at}.burst"),
                    "only `rate` limits have a burst",
                );
            } else if burst == 0 || burst > 1_000_000_000 {
                push(
                    errors,
                    format!("{at}.burst"),
                    "must be between 1 and 1000000000",
                );
            }
        }
        if errors.len() > before {
            continue;
        }
        out.push(Arc::new(Limit {
            name: l.name.clone(),
            id: match route {
                Some(r) => format!("{r}/{}", l.name),
                None => l.name.clone(),
            },
            scope: l.scope,
            kind: l.kind,
            requests: l.requests,
            per: l.per,
            burst: l.burst.unwrap_or(l.requests),
        }));
    }
    out
}

fn caps(spec: &StreamCapsSpec, at: &str, errors: &mut Vec<FieldError>) {
    for (field, v) in [("per_principal", spec.per_principal), ("total", spec.total)] {
        if v == Some(0) {
            push(errors, format!("{at}.{field}"), "must be at least 1");
        }
    }
}

fn push(errors: &mut Vec<FieldError>, path: String, message: impl Into<String>) {
    errors.push(FieldError {
        path,
        message: message.into(),
    });
}
