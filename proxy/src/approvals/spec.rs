//! The `approvals` config section (`docs/approvals.md`) and its validation into [`Settings`].

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::FieldError;

/// Human approval of calls a policy marks `@approval("required")`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSpec {
    /// How long a held call waits for an approver before it is refused with
    /// `APPROVAL_TIMEOUT` (default deny); a granted approval stays usable this long too (a
    /// client retrying after a restart finds it). Default: `5m`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Most approvals pending at once, all principals together; a call beyond it is refused
    /// with `APPROVAL_QUEUE_FULL`. Default: `1000`.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Most approvals one principal may have pending at once. Default: `10`.
    #[serde(default = "default_max_per_principal")]
    pub max_pending_per_principal: usize,
    /// Keep approvals in Redis (standalone or Cluster) so they survive a restart and every
    /// replica shares them. Default: absent (in-process: a restart loses them, replicas do not
    /// share them).
    #[serde(default)]
    pub redis: Option<ApprovalsRedisSpec>,
    /// Announce each new pending approval with a JSON `POST`. Default: absent (no
    /// announcement; approvers poll `palisade approvals list`).
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
}

impl Default for ApprovalsSpec {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            max_pending: default_max_pending(),
            max_pending_per_principal: default_max_per_principal(),
            redis: None,
            webhook: None,
        }
    }
}

/// Where approvals live in Redis.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsRedisSpec {
    /// `redis://[user:password@]host:port[/db]` of a standalone server. Exactly one of `url` and
    /// `cluster` is required. Default: absent.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each). Default: absent.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::urls")]
    pub cluster: Vec<String>,
    /// Prefix of every key (all of them share one hash slot). Default: `palisade:approvals`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for one Redis call; a late or failed call refuses the held request with
    /// `APPROVAL_UNAVAILABLE` (fail closed). Default: `1s`.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// How often a held request looks for a decision made on another replica. Default:
    /// `250ms`.
    #[serde(default = "default_poll", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
}

/// The announcement of pending approvals.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// The `http://` or `https://` URL each announcement is POSTed to. Required.
    #[serde(serialize_with = "crate::redact::url")]
    pub url: String,
    /// Longest wait for one POST. Default: `5s`.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Further attempts after a failed POST (a non-2xx answer or no answer), 1 s apart.
    /// Default: `2`.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// Validated Redis settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// A standalone URL or cluster seed nodes.
    pub target: crate::ratelimit::policy::RedisTarget,
    /// Key prefix.
    pub key_prefix: String,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Polling interval of held requests.
    pub poll_interval: Duration,
}

/// Validated approval settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hold timeout.
    pub timeout: Duration,
    /// Global pending cap.
    pub max_pending: usize,
    /// Per-principal pending cap.
    pub max_pending_per_principal: usize,
    /// The shared store, when configured.
    pub redis: Option<RedisSettings>,
    /// The announcement.
    pub webhook: Option<WebhookSpec>,
}

/// Checks `spec`; every problem is pushed to `errors` with its path.
pub fn validate(spec: &ApprovalsSpec, errors: &mut Vec<FieldError>) -> Settings {
    let mut push = |path: &str, message: &str| {
        errors.push(FieldError {
            path: format!("approvals.{path}"),
            message: message.to_string(),
        });
    };
    if spec.timeout.is_zero() || spec.timeout > Duration::from_secs(24 * 3600) {
        push("timeout", "must be between 1ms and 24h");
    }
    if spec.max_pending == 0 {
        push("max_pending", "must be at least 1");
    }
    if spec.max_pending_per_principal == 0 {
        push("max_pending_per_principal", "must be at least 1");
    }
    let redis = spec.redis.as_ref().and_then(|r| {
        use crate::ratelimit::policy::RedisTarget;
        let target = match (&r.url, r.cluster.is_empty()) {
            (Some(url), true) => Some(RedisTarget::Standalone(url.clone())),
            (None, false) => Some(RedisTarget::Cluster(r.cluster.clone())),
            _ => {
                push("redis", "set exactly one of `url` and `cluster`");
                None
            }
        };
        for url in r.url.iter().chain(&r.cluster) {
            if !(url.starts_with("redis://") && redis::Client::open(url.as_str()).is_ok()) {
                push("redis", "every address must be a redis:// URL");
            }
        }
        if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}']) {
            push("redis.key_prefix", "must be non-empty, without `{` or `}`");
        }
        if r.timeout.is_zero() {
            push("redis.timeout", "must be greater than 0");
        }
        if r.poll_interval.is_zero() {
            push("redis.poll_interval", "must be greater than 0");
        }
        target.map(|target| RedisSettings {
            target,
            key_prefix: r.key_prefix.clone(),
            timeout: r.timeout,
            poll_interval: r.poll_interval,
        })
    });
    if let Some(w) = &spec.webhook {
        match reqwest::Url::parse(&w.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => push("webhook.url", "must be an http:// or https:// URL"),
        }
        if w.timeout.is_zero() {
            push("webhook.timeout", "must be greater than 0");
        }
        if w.retries > 10 {
            push("webhook.retries", "must be at most 10");
        }
    }
    Settings {
        timeout: spec.timeout,
        max_pending: spec.max_pending,
        max_pending_per_principal: spec.max_pending_per_principal,
        redis,
        webhook: spec.webhook.clone(),
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_pending() -> usize {
    1000
}
fn default_max_per_principal() -> usize {
    10
}
fn default_key_prefix() -> String {
    "palisade:approvals".into()
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_poll() -> Duration {
    Duration::from_millis(250)
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    2
}
