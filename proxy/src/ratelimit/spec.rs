//! The `rate_limits` section of `palisade.yaml` (and a route's `rate_limits`), as written.
//!
//! Plain `serde` + `schemars` types with no logic; `policy` validates them into the
//! runtime `Settings` and per-route `RouteLimits`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Top-level `rate_limits`: limits every route inherits, tiers, stream caps and the backend.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSpec {
    /// Limits applied to every route (unless the route sets `rate_limits.inherit: false`).
    /// All limits that apply to a request must pass, and a rejected request consumes from none.
    /// Default: none (the dev config ships 300 requests/minute per principal).
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    /// Multiplier of `principal` and `api_key` scoped limits (rate, burst and quota) by role;
    /// a principal with several roles gets the largest. Example: `{admin: 10}`. Default: none.
    #[serde(default)]
    pub role_multipliers: BTreeMap<String, f64>,
    /// Multiplier by API-key tier (`tier` in the keys file, set with `palisade keys create
    /// --tier`), combined with the role multiplier by taking the larger. Example: `{gold: 5}`.
    /// Default: none.
    #[serde(default)]
    pub tier_multipliers: BTreeMap<String, f64>,
    /// Caps on concurrently open streams across all routes. Default: none.
    #[serde(default)]
    pub streams: StreamCapsSpec,
    /// Send `RateLimit-Policy` and `RateLimit` headers on allowed responses too (429s always
    /// carry them). Default: `false`.
    #[serde(default)]
    pub response_headers: bool,
    /// The in-process store: the backend when `redis` is absent, the fallback under
    /// `redis.on_failure: fail_open`. Default: `{max_keys: 100000}`.
    #[serde(default)]
    pub memory: MemorySpec,
    /// Share counters through Redis (standalone or Cluster) across replicas: one atomic round
    /// trip per request. Default: absent (in-process counters, per replica).
    #[serde(default)]
    pub redis: Option<RedisSpec>,
}

/// One limit: `requests` per `per` for each distinct value of `scope`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Name, unique among the limits that can apply to one route; reported in the
    /// `RateLimit-Policy` header and used in counter keys. Use A-Z a-z 0-9 _ - . Required.
    pub name: String,
    /// Who shares one counter. Required.
    pub scope: LimitScope,
    /// Requests allowed per `per`. Required, at least 1.
    pub requests: u64,
    /// The period, e.g. `1s`, `1m`, `1h`, `1d`. Required.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub per: Duration,
    /// `rate` only: requests that may arrive at once after an idle period (the bucket size).
    /// In any interval of length `t` at most `burst + requests * t / per` pass. Default:
    /// `requests`.
    #[serde(default)]
    pub burst: Option<u64>,
    /// `rate` (GCRA, smooth, no window edges) or `quota` (a fixed calendar window aligned to
    /// the UNIX epoch: `per: 1d` resets at 00:00 UTC). Default: `rate`.
    #[serde(default)]
    pub kind: LimitKind,
}

/// What one counter of a limit is shared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// The authenticated principal (`User::"…"`, `ApiKey::"…"`, …); anonymous callers are
    /// `Anonymous::"<client ip>"`.
    Principal,
    /// The API key; requests not authenticated by an API key skip the limit.
    ApiKey,
    /// The client IP (TCP peer).
    ClientIp,
    /// The principal's tenant; requests without a tenant skip the limit.
    Tenant,
    /// The route: one counter per route for everyone.
    Route,
    /// One counter for everything the limit applies to.
    Global,
}

/// Algorithm of a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// GCRA: a smooth rate with a burst allowance.
    #[default]
    Rate,
    /// A fixed window aligned to the epoch (daily quotas reset at 00:00 UTC).
    Quota,
}

/// Caps on concurrently open streams (requests that ask for `text/event-stream`, and every
/// request on an `agui` route, hold a slot from admission until the stream ends).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamCapsSpec {
    /// Open streams per principal. Default: absent (no cap).
    #[serde(default)]
    pub per_principal: Option<u32>,
    /// Open streams in total (per replica). Default: absent (no cap).
    #[serde(default)]
    pub total: Option<u32>,
}

/// Tuning of the in-process store.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// Most counters kept; when full, idle counters are dropped first, then the ones closest
    /// to idle. Default: `100000`.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// A Redis backend.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://[user:password@]host:port[/db]` of a standalone server. Exactly one of `url` and
    /// `cluster` is required. Default: absent.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each). Default: absent.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::urls")]
    pub cluster: Vec<String>,
    /// Prefix of every key. Default: `palisade:rl`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for Redis per request before it counts as down. Default: `50ms`.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// When Redis is unreachable: `fail_open` (fall back to the in-process limiter and count
    /// it in `palisade_ratelimit_fallback_total`) or `fail_closed` (503
    /// `RATE_LIMIT_BACKEND_DOWN`). Default: `fail_open`.
    #[serde(default)]
    pub on_failure: FailureMode,
}

/// Behaviour while the shared backend is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Fall back to the in-process limiter (limits then hold per replica).
    #[default]
    FailOpen,
    /// Refuse requests with 503 `RATE_LIMIT_BACKEND_DOWN`.
    FailClosed,
}

/// A route's own `rate_limits`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitsSpec {
    /// Limits of this route, checked together with the inherited top-level ones (their
    /// counters are this route's alone). Default: none.
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    /// Apply the top-level `rate_limits.limits` too. Default: `true`.
    #[serde(default = "default_true")]
    pub inherit: bool,
    /// Stream caps on this route (`per_principal` per principal on this route, `total` for
    /// this route), on top of the top-level ones. Default: none.
    #[serde(default)]
    pub streams: StreamCapsSpec,
}

impl Default for MemorySpec {
    fn default() -> Self {
        Self {
            max_keys: default_max_keys(),
        }
    }
}

fn default_max_keys() -> usize {
    100_000
}
fn default_key_prefix() -> String {
    "palisade:rl".into()
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_true() -> bool {
    true
}
