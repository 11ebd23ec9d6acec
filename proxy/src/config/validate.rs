//! Step 3 of loading: cross-field validation from [`ConfigSpec`] into [`Config`].
//!
//! Every rule pushes a [`FieldError`] and moves on, so one run reports all problems.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use http::Method;

use super::spec::{ConfigSpec, UpstreamSpec};
use super::stages::{PerRoute, RouteInputs, RouteStages, StageConfig};
use super::{Config, FieldError, Listener};
use crate::route::{HostMatch, Route, RouteTable, Upstream};
use crate::secrets::Secrets;

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn socket_addr(&mut self, path: String, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.push(path, format!("`{value}` is not an IP address with a port"));
                None
            }
        }
    }

    fn readable_file(&mut self, secrets: &mut Secrets, path: String, file: &str) {
        if !secrets.is_file(&path, file) {
            self.push(
                path,
                format!("file `{file}` does not exist or is not a file"),
            );
        }
    }
}

/// Validates `spec`; secrets (key files, `*_env` variables) come from `secrets`.
pub(super) fn validate(spec: ConfigSpec, secrets: &mut Secrets) -> Result<Config, Vec<FieldError>> {
    let effective = Arc::new(spec.clone());
    let mut errors = Errors::default();

    if spec.listeners.is_empty() {
        errors.push("listeners", "at least one listener is required");
    }
    let mut listeners = Vec::new();
    let mut bound = HashSet::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        if let Some(tls) = &l.tls {
            errors.readable_file(secrets, format!("{at}.tls.cert"), &tls.cert);
            errors.readable_file(secrets, format!("{at}.tls.key"), &tls.key);
            if let Some(ca) = &tls.client_ca {
                errors.readable_file(secrets, format!("{at}.tls.client_ca"), ca);
            } else if tls.require_client_cert {
                errors.push(format!("{at}.tls.require_client_cert"), "needs `client_ca`");
            }
        }
        if let Some(address) = errors.socket_addr(format!("{at}.address"), &l.address) {
            if address.port() != 0 && !bound.insert(address) {
                errors.push(format!("{at}.address"), format!("{address} is bound twice"));
            }
            listeners.push(Listener {
                name: l.name.clone(),
                address,
                tls: l.tls.clone(),
                h2c: l.h2c,
            });
        }
    }

    let admin_address = errors.socket_addr("admin.address".into(), &spec.admin.address);
    if let Some(admin) = admin_address {
        if !admin.ip().is_loopback() && !spec.admin.allow_non_loopback {
            errors.push(
                "admin.address",
                "the admin listener must be on loopback; set admin.allow_non_loopback to expose it",
            );
        }
        if admin.port() != 0 && bound.contains(&admin) {
            errors.push("admin.address", "must differ from every public listener");
        }
    }

    if spec.server.header_timeout.is_zero() {
        errors.push(
            "server.header_timeout",
            "must be more than 0 (a client needs time to send a request head)",
        );
    }
    if spec.server.threads == Some(0) {
        errors.push("server.threads", "must be at least 1");
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&spec.server.log_level) {
        errors.push("server.log_level", format!("not a valid log filter: {e}"));
    }
    if spec.limits.max_body_bytes == 0 {
        errors.push("limits.max_body_bytes", "must be greater than 0");
    }

    let upstreams = upstreams(&spec.upstreams, &mut errors);
    // Rate limits before routes: each route carries its effective limits (inherited + own).
    let rate_limits = crate::ratelimit::policy::validate(&spec.rate_limits, &mut errors.0);
    // Guardrail rule sets before routes: each route carries its compiled set.
    let guardrails = crate::guardrails::compile_sets(&spec.guardrails, &mut errors.0);
    let inputs = RouteInputs {
        spec: &spec,
        rate_limits: &rate_limits,
        guardrails: &guardrails,
    };
    let mut per_route = PerRoute::default();
    let routes = routes(&inputs, &upstreams, &mut per_route, &mut errors);
    let stages = StageConfig::finish(&spec, per_route, &mut errors.0);

    crate::authn::validate_spec(&spec.authentication, secrets, &mut errors.0);
    crate::listener::spec::validate(&spec.edge, &mut errors.0);
    let audit = crate::audit::validate(&spec.audit, secrets, &mut errors.0);
    let process_env = secrets.use_process_env();
    let tracing = crate::telemetry::otel::validate(
        &spec.tracing,
        |name| process_env.then(|| std::env::var(name).ok()).flatten(),
        &mut errors.0,
    );

    // Policies after routes: every set's schema must support the actions the routes use.
    let targets = stages
        .per_route
        .authz
        .iter()
        .flat_map(|r| r.required_targets())
        .collect();
    let authz = crate::authz::Authz::from_spec(&spec.authorization, targets)
        .unwrap_or_else(|errs| {
            for (path, message) in errs {
                errors.push(path, message);
            }
            None
        })
        .map(Arc::new);

    if let Some(orch) = &spec.embedded_orchestrator {
        errors.socket_addr("embedded_orchestrator.address".into(), &orch.address);
    }

    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(Config {
        listeners,
        admin_address: admin_address.expect("checked above"),
        threads: spec
            .server
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        drain_timeout: spec.server.drain_timeout,
        header_timeout: spec.server.header_timeout,
        reload_interval: spec.server.reload_interval,
        max_connections_per_ip: spec.server.max_connections_per_ip,
        log_format: spec.server.log_format,
        log_level: spec.server.log_level,
        routes: Arc::new(RouteTable::new(routes)),
        stages,
        embedded_orchestrator: spec.embedded_orchestrator,
        authz,
        authentication: spec.authentication,
        edge: spec.edge,
        rate_limits: rate_limits.settings,
        audit,
        tracing,
        spec: effective,
    })
}

fn upstreams(
    specs: &BTreeMap<String, UpstreamSpec>,
    errors: &mut Errors,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut out = BTreeMap::new();
    for (name, u) in specs {
        let at = format!("upstreams.{name}");
        let Some((host, _port)) = u.address.rsplit_once(':') else {
            errors.push(format!("{at}.address"), "expected host:port");
            continue;
        };
        let address = match u.address.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(address)) => address,
            Ok(None) | Err(_) => {
                errors.push(
                    format!("{at}.address"),
                    format!("`{}` does not resolve to an address", u.address),
                );
                continue;
            }
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        out.insert(
            name.clone(),
            Arc::new(Upstream {
                name: name.clone(),
                address,
                authority: u.address.clone(),
                tls: u.tls,
                sni: u.sni.clone().unwrap_or_else(|| host.to_string()),
                connect_timeout: u.connect_timeout,
                pool_idle_timeout: u.pool_idle_timeout,
            }),
        );
    }
    out
}

fn routes(
    inputs: &RouteInputs<'_>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    per_route: &mut PerRoute,
    errors: &mut Errors,
) -> Vec<Route> {
    let spec = inputs.spec;
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in spec.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let name_ok = !r.name.is_empty()
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !name_ok {
            errors.push(format!("{at}.name"), "use 1 or more of A-Z a-z 0-9 _ - .");
        } else if !names.insert(r.name.as_str()) {
            errors.push(
                format!("{at}.name"),
                format!("route `{}` is defined twice", r.name),
            );
        }
        if !r.matcher.path_prefix.starts_with('/') {
            errors.push(format!("{at}.match.path_prefix"), "must start with `/`");
        }
        if let Some(host) = &r.matcher.host {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if bare.is_empty() || bare.contains(['/', ':', '*', ' ']) {
                errors.push(
                    format!("{at}.match.host"),
                    "expected a host name or `*.domain`",
                );
            }
        }
        let mut methods = Vec::new();
        for (j, m) in r.matcher.methods.iter().enumerate() {
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(method),
                _ => errors.push(
                    format!("{at}.match.methods[{j}]"),
                    format!("`{m}` is not an upper-case HTTP method"),
                ),
            }
        }
        if let Some(rewrite) = &r.rewrite_prefix {
            if !rewrite.starts_with('/') {
                errors.push(format!("{at}.rewrite_prefix"), "must start with `/`");
            }
        }
        if r.max_body_bytes == Some(0) {
            errors.push(format!("{at}.max_body_bytes"), "must be greater than 0");
        }
        if r.idle_timeout.is_zero() {
            errors.push(format!("{at}.idle_timeout"), "must be greater than 0");
        }
        if r.auth == crate::route::AuthRequirement::Session
            && spec.authentication.sessions.is_none()
        {
            errors.push(
                format!("{at}.auth"),
                "`session` needs `authentication.sessions` (the sign-in it accepts)",
            );
        }
        let stages = RouteStages::validate(inputs, r, &at, &mut errors.0);
        let cors = r
            .cors
            .as_ref()
            .and_then(|c| match crate::route::cors::Cors::new(c) {
                Ok(cors) => Some(Arc::new(cors)),
                Err(errs) => {
                    for (path, message) in errs {
                        errors.push(format!("{at}.cors.{path}"), message);
                    }
                    None
                }
            });
        let Some(upstream) = upstreams.get(&r.upstream) else {
            if !spec.upstreams.contains_key(&r.upstream) {
                errors.push(
                    format!("{at}.upstream"),
                    format!("no upstream named `{}` in `upstreams`", r.upstream),
                );
            }
            continue;
        };
        per_route.push(stages);
        out.push(Route {
            id: out.len(),
            name: r.name.clone(),
            host: r.matcher.host.as_deref().map(HostMatch::parse),
            path_prefix: r.matcher.path_prefix.clone(),
            methods,
            upstream: upstream.clone(),
            protocol: r.protocol,
            idle_timeout: r.idle_timeout,
            max_body_bytes: r.max_body_bytes.unwrap_or(spec.limits.max_body_bytes),
            rewrite_prefix: r.rewrite_prefix.clone(),
            preserve_host: r.preserve_host,
            auth: r.auth,
            forward_credentials: r.forward_credentials,
            cors,
        });
    }
    out
}
