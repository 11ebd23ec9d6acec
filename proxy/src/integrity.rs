//! Tool-definition integrity for MCP routes (`docs/tool-integrity.md`): protection against an
//! upstream MCP server that changes its tools after they were reviewed ("rug pulls"), describes
//! them with hidden instructions, or names them like another server's tools.
//!
//! A route with `tool_integrity: {lock: FILE}` pins what was reviewed: the lock file
//! ([`lock`], written by `palisade tools pin`) holds each tool's definition and its SHA-256.
//! The stage ([`IntegrityStage`]) then reads every `tools/list` answer of the route and each
//! `tools/call` request:
//!
//! - a tool whose definition is not the pinned one (`changed`) or that is not pinned at all
//!   (`new`) is removed from the list and its calls are refused with `TOOL_NOT_APPROVED`
//!   (`mode: block`), or let through (`mode: flag`) — audited and counted either way;
//! - the text of a new or changed tool is scanned with the built-in prompt-injection rules and
//!   for hidden characters (`poisoned`), and a name that collides with another tool's — case
//!   or confusable characters, on this route or another — is a `collision`: both are refused in
//!   either mode.
//!
//! Routes without `tool_integrity` are not checked (integrity is off until a lock is
//! configured); with one, anything not pinned is unknown and blocked by default. The pinned
//! annotations (`readOnlyHint`…) become Cedar `Tool` attributes through the route's
//! authorization mapping ([`RouteIntegrity::hints`]) — only pinned ones, since a server can
//! claim any hint.

pub mod lock;
pub mod spec;
mod stage;
mod verdict;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use spec::{IntegrityMode, ToolIntegritySpec};
pub use stage::{register_metrics, IntegrityStage, State};
pub use verdict::{poisoning, Finding, Kind};

use crate::error::FieldError;
use crate::protocol::mcp::ToolAnnotations;
use crate::protocol::RouteProtocol;
use lock::Lock;

/// One route's integrity settings and pins, built from its `tool_integrity` at config load.
#[derive(Debug)]
pub struct RouteIntegrity {
    /// The route's name.
    pub route: String,
    /// `block` or `flag`.
    pub mode: IntegrityMode,
    /// Whether new and changed tools are scanned for poisoning.
    pub scan: bool,
    /// The pinned tools.
    pub lock: Lock,
    /// Skeleton of each pinned name of this route → the name.
    own: HashMap<String, String>,
    /// Skeleton of each pinned name of every other route with a lock → (route, name).
    foreign: HashMap<String, (String, String)>,
    /// Where its `tool_integrity` is in the config (`routes[2]`), for errors.
    at: String,
    /// Pinned tools last listed with another definition: name → what that definition was.
    observed: dashmap::DashMap<String, Kind>,
    /// Tools not pinned whose listed definition was poisoned (so a call says why); bounded by
    /// [`MAX_POISONED_SEEN`], cleared when full (their calls are refused as new under `block`).
    poisoned_seen: dashmap::DashMap<String, Kind>,
}

/// Most unpinned poisoned tools remembered per route.
pub const MAX_POISONED_SEEN: usize = 4096;

impl RouteIntegrity {
    /// The pinned annotations of each tool (Cedar `Tool` attributes on this route).
    pub fn hints(&self) -> HashMap<String, ToolAnnotations> {
        self.lock
            .tools
            .iter()
            .map(|(name, pin)| (name.clone(), pin.annotations()))
            .filter(|(_, hints)| *hints != ToolAnnotations::default())
            .collect()
    }
}

/// Builds a route's integrity state from its `tool_integrity` (errors at `{at}.tool_integrity`).
pub fn route_integrity(
    route: &str,
    protocol: RouteProtocol,
    spec: Option<&ToolIntegritySpec>,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Arc<RouteIntegrity>> {
    let spec = spec?;
    let mut error = |path: &str, message: String| {
        errors.push(FieldError {
            path: format!("{at}.tool_integrity{path}"),
            message,
        })
    };
    if protocol != RouteProtocol::Mcp {
        error("", "only `protocol: mcp` routes have tools to pin".into());
        return None;
    }
    let lock = match Lock::read(Path::new(&spec.lock)) {
        Ok(lock) => lock,
        Err(e) => {
            error(".lock", format!("`{}`: {e}", spec.lock));
            return None;
        }
    };
    let mut own: HashMap<String, String> = HashMap::new();
    for name in lock.tools.keys() {
        if let Some(other) = own.insert(skeleton(name), name.clone()) {
            error(
                ".lock",
                format!(
                    "`{}`: tools `{other}` and `{name}` collide (case or confusable characters)",
                    spec.lock
                ),
            );
        }
    }
    if spec.scan {
        // Warm the detector at load rather than on the first `tools/list`.
        verdict::detector();
    }
    Some(Arc::new(RouteIntegrity {
        route: route.to_string(),
        at: at.to_string(),
        mode: spec.mode,
        scan: spec.scan,
        lock,
        own,
        foreign: HashMap::new(),
        observed: dashmap::DashMap::new(),
        poisoned_seen: dashmap::DashMap::new(),
    }))
}

/// Tells each route the pinned names of the others, and refuses locks of two routes that pin
/// colliding names (`routes` is indexed by route id).
pub fn link(routes: &mut [Option<Arc<RouteIntegrity>>], errors: &mut Vec<FieldError>) {
    let all: Vec<(usize, String, String, String)> = routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        .flat_map(|(i, r)| {
            r.own
                .iter()
                .map(move |(sk, name)| (i, sk.clone(), r.route.clone(), name.clone()))
        })
        .collect();
    for (i, slot) in routes.iter_mut().enumerate() {
        let Some(r) = slot.as_mut().and_then(Arc::get_mut) else {
            continue;
        };
        for (j, sk, route, name) in &all {
            if *j == i {
                continue;
            }
            if let Some(mine) = r.own.get(sk) {
                if *j < i {
                    errors.push(FieldError {
                        path: format!("{}.tool_integrity.lock", r.at),
                        message: format!(
                            "tool `{mine}` collides with tool `{name}` pinned for route `{route}` \
                             (case or confusable characters): a model could not tell them apart"
                        ),
                    });
                }
            }
            r.foreign.insert(sk.clone(), (route.clone(), name.clone()));
        }
    }
}

/// What a tool name looks like: case, compatibility forms and confusable characters folded
/// (UTS #39, the guardrails' normalization), separators kept as word breaks.
pub fn skeleton(name: &str) -> String {
    crate::guardrails::normalize::normalize(name)
}

#[cfg(test)]
mod tests;
