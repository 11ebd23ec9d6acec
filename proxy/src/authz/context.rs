//! The Cedar context of a request: built from [`RequestFacts`](super::RequestFacts), with only
//! the keys some policy reads (a `datetime` parse is not free), and as JSON for
//! `policy explain`.

use std::collections::HashSet;
use std::net::IpAddr;

use cedar_policy::{Context, RestrictedExpression};
use serde_json::{json, Value};

use super::request::{AuthzRequest, ResourceKind};

/// The context as JSON, for `policy explain` (same facts as the Cedar context).
pub fn context_json(req: &AuthzRequest<'_>) -> Value {
    let mut ctx = json!({
        "method": req.facts.method,
        "path": req.facts.path,
        "ip": {"__extn": {"fn": "ip", "arg": req.facts.ip.to_string()}},
        "forwarded": req.facts.forwarded,
        "time": {"__extn": {"fn": "datetime", "arg": cedar_datetime(req.facts.time)}},
        "hour": req.facts.time.to_offset(time::UtcOffset::UTC).hour(),
        "weekday": weekday(req.facts.time),
        "tls": req.facts.tls,
        "mfa": req.principal.is_some_and(|p| p.mfa),
        "request_bytes": req.facts.request_bytes,
    });
    if req.resource.kind == ResourceKind::Tool {
        ctx["route"] = json!(req.facts.route);
        ctx["arguments"] = json!({"__entity": {"type": "Arguments", "id": "call"}});
    }
    ctx
}

/// Contexts already built, by the values they are built from. Building one is most of the cost
/// of a cached-entity decision (`ip` alone is an extension call Cedar parses and evaluates), and
/// the values policies usually read (`ip`, `hour`, `weekday`, `mfa`, `forwarded`, `tls`,
/// `method`) repeat from request to request. Used only when no policy reads a key that changes
/// on nearly every request (`time`, `path`, `request_bytes`); bounded, cleared when full.
pub(super) struct ContextCache {
    /// Which keys policies read, when every one is worth caching on.
    keys: Option<Wanted>,
    contexts: dashmap::DashMap<ContextKey, Context, super::Hasher>,
}

/// Which of the cached keys some policy reads, looked up once when the policies load rather
/// than in a string set on every request.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    method: bool,
    ip: bool,
    forwarded: bool,
    hour: bool,
    weekday: bool,
    tls: bool,
    mfa: bool,
}

impl Wanted {
    fn of(keys: &HashSet<String>) -> Self {
        let has = |k: &str| keys.contains(k);
        Self {
            method: has("method"),
            ip: has("ip"),
            forwarded: has("forwarded"),
            hour: has("hour"),
            weekday: has("weekday"),
            tls: has("tls"),
            mfa: has("mfa"),
        }
    }
}

/// The values a cached context was built from (`None`: no policy reads that key).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ContextKey {
    method: Option<String>,
    ip: Option<IpAddr>,
    forwarded: Option<bool>,
    hour: Option<u8>,
    weekday: Option<&'static str>,
    tls: Option<bool>,
    mfa: Option<bool>,
    /// Tool decisions carry `route` and `arguments` too.
    tool_route: Option<String>,
}

/// Most contexts kept by [`ContextCache`].
const CONTEXT_CACHE: usize = 4096;

/// Keys whose values change on nearly every request: a policy reading one turns the cache off.
const UNCACHED_KEYS: [&str; 3] = ["time", "path", "request_bytes"];

/// Keys [`ContextKey`] holds the values of. Unit tests check that these and [`UNCACHED_KEYS`]
/// are every key [`context_pairs`] builds, and that the cache keys on each one's value (a new
/// key must be added to [`Wanted`], [`ContextKey`] and that test's variations).
#[cfg(test)]
const CACHED_KEYS: [&str; 7] = ["method", "ip", "forwarded", "hour", "weekday", "tls", "mfa"];

impl ContextCache {
    /// A cache for requests whose context holds `keys` (`None`: every key, not cached).
    pub(super) fn new(keys: Option<&HashSet<String>>) -> Self {
        let keys = keys
            .filter(|k| !UNCACHED_KEYS.iter().any(|u| k.contains(*u)))
            .map(Wanted::of);
        Self {
            keys,
            contexts: dashmap::DashMap::default(),
        }
    }

    /// The context of `req` (with `extra`, the tool-only pairs, when `tool` is set), built by
    /// `build` unless an equal one was built before.
    pub(super) fn get_or_build(
        &self,
        req: &AuthzRequest<'_>,
        tool: bool,
        build: impl FnOnce() -> Result<Context, String>,
    ) -> Result<Context, String> {
        let Some(wanted) = self.keys else {
            return build();
        };
        let f = req.facts;
        let time = f.time.to_offset(time::UtcOffset::UTC);
        let key = ContextKey {
            method: wanted.method.then(|| f.method.clone()),
            ip: wanted.ip.then_some(f.ip),
            forwarded: wanted.forwarded.then_some(f.forwarded),
            hour: wanted.hour.then(|| time.hour()),
            weekday: wanted.weekday.then(|| weekday(time)),
            tls: wanted.tls.then_some(f.tls),
            mfa: wanted.mfa.then(|| req.principal.is_some_and(|p| p.mfa)),
            tool_route: tool.then(|| f.route.clone()),
        };
        if let Some(hit) = self.contexts.get(&key) {
            return Ok(hit.value().clone());
        }
        let context = build()?;
        if self.contexts.len() >= CONTEXT_CACHE {
            self.contexts.clear();
        }
        self.contexts.insert(key, context.clone());
        Ok(context)
    }
}

pub(super) fn context_pairs(
    req: &AuthzRequest<'_>,
    keys: Option<&HashSet<String>>,
) -> Vec<(String, RestrictedExpression)> {
    let f = req.facts;
    let wanted = |k: &str| keys.is_none_or(|keys| keys.contains(k));
    let mut pairs = Vec::with_capacity(12);
    let mut add = |k: &str, v: &dyn Fn() -> RestrictedExpression| {
        if wanted(k) {
            pairs.push((k.to_string(), v()));
        }
    };
    add("method", &|| {
        RestrictedExpression::new_string(f.method.clone())
    });
    add("path", &|| RestrictedExpression::new_string(f.path.clone()));
    add("ip", &|| RestrictedExpression::new_ip(f.ip.to_string()));
    add("forwarded", &|| RestrictedExpression::new_bool(f.forwarded));
    add("time", &|| {
        RestrictedExpression::new_datetime(cedar_datetime(f.time))
    });
    add("hour", &|| {
        RestrictedExpression::new_long(i64::from(f.time.to_offset(time::UtcOffset::UTC).hour()))
    });
    add("weekday", &|| {
        RestrictedExpression::new_string(weekday(f.time).into())
    });
    add("tls", &|| RestrictedExpression::new_bool(f.tls));
    add("mfa", &|| {
        RestrictedExpression::new_bool(req.principal.is_some_and(|p| p.mfa))
    });
    add("request_bytes", &|| {
        RestrictedExpression::new_long(i64::try_from(f.request_bytes).unwrap_or(i64::MAX))
    });
    pairs
}

/// The context keys the policies read (`context.<key>`, `context has <key>`); `None` when some
/// policy uses `context` otherwise (as a whole, or indexed with `context["…"]`).
pub(super) fn context_keys(policies: &cedar_policy::PolicySet) -> Option<HashSet<String>> {
    let mut keys = HashSet::new();
    for p in policies.policies() {
        let text = p.to_cedar().unwrap_or_default();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("context") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "context".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"') {
                continue; // part of another identifier or a string
            }
            let key: String = if let Some(k) = after.strip_prefix('.') {
                k.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            } else if let Some(k) = after.trim_start().strip_prefix("has ") {
                k.trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            } else if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `contexts`
            } else {
                return None;
            };
            if key.is_empty() {
                return None;
            }
            keys.insert(key);
        }
    }
    Some(keys)
}

/// `2026-01-02T03:04:05.678Z`, the form Cedar's `datetime()` accepts.
fn cedar_datetime(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn weekday(t: time::OffsetDateTime) -> &'static str {
    use time::Weekday::*;
    match t.to_offset(time::UtcOffset::UTC).weekday() {
        Monday => "Mon",
        Tuesday => "Tue",
        Wednesday => "Wed",
        Thursday => "Thu",
        Friday => "Fri",
        Saturday => "Sat",
        Sunday => "Sun",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(src: &str) -> Option<Vec<String>> {
        let set: cedar_policy::PolicySet = src.parse().unwrap();
        context_keys(&set).map(|k| {
            let mut v: Vec<String> = k.into_iter().collect();
            v.sort();
            v
        })
    }

    /// For each cached key alone: a request whose value of that key differs never reuses a
    /// context, and one differing only in keys no policy reads does (so each flag of
    /// [`Wanted`] and each field of [`ContextKey`] follows the key it is named for).
    #[test]
    fn a_cached_context_is_reused_only_when_every_value_policies_read_is_equal() {
        use std::cell::Cell;

        use super::super::request::{RequestFacts, Resource};
        use crate::authn::Principal;

        let base = crate::authz::tests::facts("GET");
        let caller = crate::authz::tests::user(&["admin"]);
        let mut other_mfa = caller.clone();
        other_mfa.mfa = !caller.mfa;
        // The request with `key`'s value changed and every other value as in `base`.
        let variant = |key: &str| -> (RequestFacts, &Principal) {
            let mut f = base.clone();
            let mut principal = &caller;
            match key {
                "method" => f.method = "POST".into(),
                "ip" => f.ip = "203.0.113.9".parse().unwrap(),
                "forwarded" => f.forwarded = !f.forwarded,
                "hour" => f.time += time::Duration::hours(1),
                "weekday" => f.time += time::Duration::days(1),
                "tls" => f.tls = !f.tls,
                "mfa" => principal = &other_mfa,
                other => panic!("no variation for the cached key `{other}`: add one here"),
            }
            (f, principal)
        };
        let resource = Resource::new(ResourceKind::Route, "r");
        for key in CACHED_KEYS {
            let cache = ContextCache::new(Some(&HashSet::from([key.to_string()])));
            let builds = Cell::new(0);
            let get = |facts: &RequestFacts, principal: &Principal| {
                let req = AuthzRequest {
                    principal: Some(principal),
                    action: "http_request",
                    resource: &resource,
                    facts,
                    arguments: None,
                };
                cache
                    .get_or_build(&req, false, || {
                        builds.set(builds.get() + 1);
                        Ok(Context::empty())
                    })
                    .unwrap();
            };
            get(&base, &caller);
            get(&base, &caller);
            assert_eq!(
                builds.get(),
                1,
                "`{key}`: an equal request reuses the context"
            );
            for other in CACHED_KEYS {
                let (facts, principal) = variant(other);
                let before = builds.get();
                get(&facts, principal);
                if other == key {
                    assert_eq!(
                        builds.get(),
                        before + 1,
                        "policies read `{key}`: another `{key}` must not reuse the context"
                    );
                } else {
                    assert_eq!(
                        builds.get(),
                        before,
                        "policies read only `{key}`: a request differing in `{other}` reuses it"
                    );
                }
            }
        }
    }

    #[test]
    fn every_context_key_is_either_in_the_cache_key_or_turns_the_cache_off() {
        let facts = crate::authz::tests::facts("GET");
        let resource = crate::authz::Resource::new(ResourceKind::Route, "r");
        let req = AuthzRequest {
            principal: None,
            action: "http_request",
            resource: &resource,
            facts: &facts,
            arguments: None,
        };
        let mut built: Vec<String> = context_pairs(&req, None)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        built.sort();
        let mut known: Vec<String> = CACHED_KEYS
            .iter()
            .chain(UNCACHED_KEYS.iter())
            .map(|k| k.to_string())
            .collect();
        known.sort();
        assert_eq!(built, known);
    }

    #[test]
    fn only_the_context_keys_policies_read_are_built() {
        assert_eq!(
            keys("permit(principal, action, resource) when { context.hour > 3 && context has mfa && context.ip.isLoopback() };"),
            Some(vec!["hour".into(), "ip".into(), "mfa".into()])
        );
        assert_eq!(
            keys("permit(principal, action, resource) when { \"context\" == \"x\" };"),
            Some(vec![])
        );
        assert_eq!(
            keys("permit(principal, action, resource) when { context[\"hour\"] > 3 };"),
            None
        );
        assert_eq!(
            keys("permit(principal, action, resource) when { context == {} };"),
            None
        );
    }
}
