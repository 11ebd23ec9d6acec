//! The request-level authorization stage, as the pipeline calls it: one function that builds
//! the request from what earlier stages learned, decides with every policy set, records the
//! decisions (context, metrics, log fields) and refuses when the enforcing set denies.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use http::Method;

use super::{Authz, AuthzRequest, Decisions, RequestFacts};
use crate::error::ProxyError;
use crate::pipeline::context::RequestCtx;
use crate::telemetry::Metrics;

/// The facts of the request in `ctx` (route, client, time) for the Cedar context.
pub fn facts(
    ctx: &RequestCtx,
    method: &Method,
    path: &str,
    declared_bytes: u64,
    tls: bool,
) -> RequestFacts {
    let route = ctx.route.as_ref();
    RequestFacts {
        method: method.as_str().to_string(),
        path: path.to_string(),
        ip: ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        time: time::OffsetDateTime::now_utc(),
        tls,
        request_bytes: declared_bytes,
        route: route.map_or_else(String::new, |r| r.name.clone()),
        protocol: route.map_or("http", |r| protocol_name(r.protocol)),
    }
}

/// `http`, `agui`, `mcp`, `a2a`.
pub fn protocol_name(p: crate::config::spec::RouteProtocol) -> &'static str {
    use crate::config::spec::RouteProtocol::*;
    match p {
        Http => "http",
        Agui => "agui",
        Mcp => "mcp",
        A2a => "a2a",
    }
}

/// Decides the request in `ctx` with every policy set, records the outcome, and returns
/// `Err(Forbidden)` when the enforcing set denies. A no-op when authorization is off.
pub fn authorize(
    authz: Option<&Authz>,
    metrics: &Metrics,
    req: &pingora_http::RequestHeader,
    ctx: &mut RequestCtx,
    tls: bool,
) -> Result<(), ProxyError> {
    let Some(authz) = authz else {
        return Ok(());
    };
    let Some(route) = ctx.route.clone() else {
        return Err(ProxyError::Internal);
    };
    let started = Instant::now();
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let facts = facts(ctx, &req.method, req.uri.path(), declared, tls);
    let target = route.authz.target(&req.method, req.uri.path());
    let decisions = authz.decide(&AuthzRequest {
        principal: ctx.principal.as_ref(),
        action: &target.action,
        resource: &target.resource,
        facts: &facts,
        arguments: None,
    });
    metrics
        .authz_duration
        .observe(started.elapsed().as_secs_f64());
    let blocks = record(metrics, &decisions, &ctx.request_id);
    ctx.authz.facts = Some(facts);
    ctx.decision = decisions.primary;
    ctx.authz.shadow.extend(decisions.shadow);
    if blocks {
        return Err(ProxyError::Forbidden);
    }
    super::body::start(ctx, &req.method);
    Ok(())
}

/// Counts and logs `decisions`; returns whether they refuse the request.
pub fn record(metrics: &Metrics, decisions: &Decisions, request_id: &str) -> bool {
    for d in decisions.all() {
        let action = d
            .action
            .strip_prefix("Action::\"")
            .and_then(|a| a.strip_suffix('"'))
            .unwrap_or(&d.action);
        metrics
            .authz_decisions
            .with_label_values(&[&d.policy_set, d.mode.as_str(), action, d.verdict()])
            .inc();
        tracing::debug!(
            request_id,
            authz.decision = d.verdict(),
            authz.mode = d.mode.as_str(),
            authz.policy_set = %d.policy_set,
            authz.policy_set_hash = %d.policy_set_hash,
            authz.policies = ?d.policies,
            authz.principal = %d.principal,
            authz.action = %d.action,
            authz.resource = %d.resource,
            "authorization decision"
        );
        if !d.errors.is_empty() {
            tracing::warn!(request_id, authz.errors = ?d.errors, "policies failed to evaluate");
        }
    }
    decisions.blocks()
}
