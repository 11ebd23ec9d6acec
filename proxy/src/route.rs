//! Routes: which upstream a request goes to, with the per-route settings it carries.
//!
//! A [`RouteTable`] is built once from the validated config and read through an `Arc` on every
//! request; matching is a scan in config order (first match wins) with no allocation.
//!
//! A [`Route`] holds what routing and forwarding need (identity, match, upstream, timeouts);
//! each stage keeps its own per-route state (policy mapping, limits, rule set) indexed by
//! [`Route::id`], so this module imports no concern.

pub mod canonical;
pub mod cors;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::protocol::RouteProtocol;

/// Whether a route needs a principal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthRequirement {
    /// Credentials are required (401 without).
    #[default]
    Required,
    /// Requests without credentials get the `Anonymous::"<ip>"` principal; bad credentials still
    /// get 401.
    Optional,
    /// Credentials are required, and the browser session cookie of `authentication.sessions`
    /// is one (besides bearer tokens): a page navigation without a session is redirected to
    /// sign-in, an API call gets 401 (docs/authentication.md#browser-sessions).
    Session,
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Name from the config.
    pub name: String,
    /// Resolved address.
    pub address: SocketAddr,
    /// `host:port` as configured, sent as `Host` unless the route preserves the client's.
    pub authority: String,
    /// Connect with TLS.
    pub tls: bool,
    /// SNI / certificate name for TLS.
    pub sni: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// How long pooled idle connections are kept.
    pub pool_idle_timeout: Duration,
}

/// Host part of a route match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this host (lower case, no port).
    Exact(String),
    /// Any subdomain of this suffix (stored with its leading dot: `.example.com`).
    Suffix(String),
}

impl HostMatch {
    /// Parses `example.com` or `*.example.com`.
    pub fn parse(pattern: &str) -> Self {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('*') {
            Some(suffix) => Self::Suffix(suffix.to_string()),
            None => Self::Exact(pattern),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h.eq_ignore_ascii_case(host),
            Self::Suffix(s) => {
                host.len() > s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the route table: every stage keeps its per-route state by this id.
    pub id: usize,
    /// Unique name (`Route::"<name>"` in Cedar, `route` label in metrics).
    pub name: String,
    /// Host match, if any.
    pub host: Option<HostMatch>,
    /// Path prefix, on a segment boundary.
    pub path_prefix: String,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    /// Where matching requests go.
    pub upstream: Arc<Upstream>,
    /// Protocol spoken on the route.
    pub protocol: RouteProtocol,
    /// Idle timeout while waiting for upstream bytes.
    pub idle_timeout: Duration,
    /// Request body limit.
    pub max_body_bytes: u64,
    /// Replacement for `path_prefix` when forwarding.
    pub rewrite_prefix: Option<String>,
    /// Forward the client's `Host`.
    pub preserve_host: bool,
    /// Whether callers must authenticate.
    pub auth: AuthRequirement,
    /// Forward the client's credentials upstream.
    pub forward_credentials: bool,
    /// Cross-origin calls from browsers, when allowed.
    pub cors: Option<Arc<cors::Cors>>,
}

impl Route {
    fn matches_path(&self, path: &str) -> bool {
        let prefix = self.path_prefix.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
            None => false,
        }
    }

    /// The path to send upstream, after `rewrite_prefix`.
    pub fn upstream_path(&self, path_and_query: &str) -> Option<String> {
        let replacement = self.rewrite_prefix.as_deref()?;
        let prefix = self.path_prefix.trim_end_matches('/');
        let rest = path_and_query
            .strip_prefix(prefix)
            .unwrap_or(path_and_query);
        let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
            (true, true) => format!("{}{}", replacement, &rest[1..]),
            (false, false) if !rest.is_empty() && !rest.starts_with('?') => {
                format!("{replacement}/{rest}")
            }
            _ => format!("{replacement}{rest}"),
        };
        Some(joined)
    }
}

/// The outcome of matching a request against the table.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// A route matched host, path and method.
    Found(&'a Arc<Route>),
    /// Routes matched host and path but none allows the method; the methods they allow.
    MethodNotAllowed(String),
    /// Nothing matched host and path.
    NotFound,
}

/// All routes in match order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds a table; routes are tried in the given order.
    pub fn new(routes: Vec<Route>) -> Self {
        Self {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// All routes, in order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the first route matching `host` (without port), `path` and `method`.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> RouteMatch<'_> {
        let mut allowed: Vec<&Method> = Vec::new();
        for route in &self.routes {
            let host_ok = match (&route.host, host) {
                (None, _) => true,
                (Some(m), Some(h)) => m.matches(h),
                (Some(_), None) => false,
            };
            if !host_ok || !route.matches_path(path) {
                continue;
            }
            if route.methods.is_empty() || route.methods.contains(method) {
                return RouteMatch::Found(route);
            }
            for m in &route.methods {
                if !allowed.contains(&m) {
                    allowed.push(m);
                }
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            RouteMatch::MethodNotAllowed(list.join(", "))
        }
    }
}

/// Strips the port from a `Host` header value (`example.com:8080`, `[::1]:80`).
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, prefix: &str, methods: &[&str]) -> Route {
        Route {
            id: 0,
            name: name.into(),
            host: host.map(HostMatch::parse),
            path_prefix: prefix.into(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            upstream: Arc::new(Upstream {
                name: "u".into(),
                address: "127.0.0.1:1".parse().unwrap(),
                authority: "127.0.0.1:1".into(),
                tls: false,
                sni: String::new(),
                connect_timeout: Duration::from_secs(1),
                pool_idle_timeout: Duration::from_secs(1),
            }),
            protocol: RouteProtocol::Http,
            idle_timeout: Duration::from_secs(1),
            max_body_bytes: 10,
            rewrite_prefix: None,
            preserve_host: false,
            auth: Default::default(),
            forward_credentials: false,
            cors: None,
        }
    }

    fn name(m: RouteMatch<'_>) -> String {
        match m {
            RouteMatch::Found(r) => r.name.clone(),
            RouteMatch::MethodNotAllowed(allow) => format!("405 {allow}"),
            RouteMatch::NotFound => "404".into(),
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries_in_order() {
        let table = RouteTable::new(vec![
            route("agent", None, "/agent", &["POST"]),
            route("api", Some("*.example.com"), "/api/", &[]),
            route("root", Some("docs.local"), "/", &["GET", "HEAD"]),
        ]);
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(name(table.find(None, "/agent", &post)), "agent");
        assert_eq!(name(table.find(None, "/agent/x?y=1", &post)), "agent");
        assert_eq!(name(table.find(None, "/agents", &post)), "404");
        assert_eq!(name(table.find(None, "/agent", &get)), "405 POST");
        assert_eq!(
            name(table.find(Some("a.example.com"), "/api/v1", &get)),
            "api"
        );
        assert_eq!(name(table.find(Some("A.EXAMPLE.COM"), "/api", &get)), "api");
        assert_eq!(name(table.find(Some("example.com"), "/api", &get)), "404");
        assert_eq!(name(table.find(Some("docs.local"), "/x", &get)), "root");
        assert_eq!(
            name(table.find(Some("docs.local"), "/x", &post)),
            "405 GET, HEAD"
        );
    }

    #[test]
    fn rewrite_prefix_joins_cleanly() {
        let mut r = route("r", None, "/agent", &[]);
        assert_eq!(r.upstream_path("/agent/run"), None);
        r.rewrite_prefix = Some("/".into());
        assert_eq!(r.upstream_path("/agent/run?x=1").unwrap(), "/run?x=1");
        assert_eq!(r.upstream_path("/agent").unwrap(), "/");
        r.rewrite_prefix = Some("/v2".into());
        assert_eq!(r.upstream_path("/agent/run").unwrap(), "/v2/run");
        assert_eq!(r.upstream_path("/agent?q").unwrap(), "/v2?q");
    }

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "::1");
    }
}
