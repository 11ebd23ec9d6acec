//! Authorization: Cedar policies decide every request, and body-aware checks decide the tools,
//! MCP calls and A2A methods inside it.
//!
//! - A policy directory (`policies/`) holds the schema, the policies and the tool catalog;
//!   [`PolicySet::load`] validates it strictly (every error with file and line) and pre-slices
//!   it by scope so a decision evaluates only the policies that can apply.
//! - [`Authz`] holds the live sets behind `arc-swap` (no lock on the request path), decides
//!   with every set (one `enforce`, any number `shadow`), reloads on file change or SIGHUP and
//!   keeps the last good set when a reload fails.
//! - [`RouteAuthz`] maps a route's requests to `(action, resource)`.
//! - [`body`] makes the AG-UI / MCP / A2A decisions; [`stream`] filters denied tool calls out
//!   of AG-UI streams and MCP `tools/list` answers.
//!
//! ```no_run
//! use palisade_proxy::authz::{Mode, PolicySet};
//! let set = PolicySet::load("main", "policies".as_ref(), Mode::Enforce).expect("valid policies");
//! println!("{} policies, hash {}", set.len(), set.hash());
//! ```

pub mod analysis;
pub mod approval;
pub mod arguments;
pub mod body;
pub mod catalog;
mod context;
mod decide;
mod decision;
pub mod entities;
pub mod explain;
mod live;
mod load;
pub mod request;
mod route;
pub mod runtests;
mod slice;
pub mod spec;
pub mod stage;
pub mod stepup;
pub mod stream;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cedar_policy::{PolicyId, Schema};

pub use decision::{Decision, Mode};
pub use entities::BuiltRequest;
pub use live::{Authz, Decisions, ReloadOutcome};
pub use load::{builtin_files, PolicyError, PolicyFiles, PolicySource, BUILTIN, BUILTIN_TESTS};
pub use request::{AuthzRequest, RequestFacts, Resource, ResourceKind};
pub use route::{RouteAuthz, Target};
pub use spec::{AuthzSpec, DeniedToolCall, ModeSpec, PolicySetSpec, RouteAuthzSpec, StepUpSpec};

use catalog::ToolCatalog;
use entities::EntityModel;
use slice::Slices;

/// The hasher of authorization's per-request lookups and caches: ahash, keyed from the OS's
/// randomness once per process (its `runtime-rng` feature). std's SipHash cost about 3,000
/// instructions a decision here (principal, entity-store and context keys, bucket lookups).
/// Callers influence these keys (tool names, routes, principal attributes); against collision
/// flooding (HashDoS) ahash relies on its secret random keys and its design, without the public
/// cryptanalysis SipHash has had. That risk is accepted because every cache it keys is bounded
/// and emptied when full, so a flood can slow at most a few thousand entries.
type Hasher = ahash::RandomState;

/// A loaded, strictly validated Cedar policy set with its schema and tool catalog.
pub struct PolicySet {
    name: Arc<str>,
    mode: Mode,
    hash: Arc<str>,
    schema: Schema,
    policies: cedar_policy::PolicySet,
    sources: BTreeMap<PolicyId, PolicySource>,
    catalog: ToolCatalog,
    model: EntityModel,
    slices: Slices,
    files: PolicyFiles,
    /// The scopes the policies compare `scopes` with (step-up candidates, [`stepup`]).
    scope_names: Vec<String>,
    /// The policies annotated `@approval("required")` ([`approval`]).
    approval_ids: HashSet<String>,
}

impl PolicySet {
    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The set's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// SHA-256 (hex) of the set's files.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.num_of_policies()
    }

    /// Whether the set has no policy (it then denies everything).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The Cedar policies.
    pub fn policies(&self) -> &cedar_policy::PolicySet {
        &self.policies
    }

    /// The files the set was built from (schema, policies, catalog), as read.
    pub fn files(&self) -> &PolicyFiles {
        &self.files
    }

    /// The tool catalog.
    pub fn catalog(&self) -> &ToolCatalog {
        &self.catalog
    }

    /// The scope names the policies test (`principal.scopes.contains("…")` and the like),
    /// from the policy analysis' facts: the candidates of a step-up challenge.
    pub fn scope_names(&self) -> &[String] {
        &self.scope_names
    }

    /// Where policy `id` was written.
    pub fn source(&self, id: &str) -> Option<&PolicySource> {
        self.sources.get(&PolicyId::new(id))
    }

    /// Checks that `action` exists and applies to `resource`'s type.
    pub fn check_target(&self, action: &str, resource: &Resource) -> Result<(), String> {
        self.model.check_target(action, resource)
    }

    /// Builds the Cedar request for `req` (what [`PolicySet::decide`] evaluates).
    pub fn build(&self, req: &AuthzRequest<'_>) -> Result<BuiltRequest, String> {
        self.model.build(req)
    }

    /// Builds the Cedar request with every context key of the schema, including those no
    /// policy reads (which [`PolicySet::build`] leaves out).
    pub fn build_complete(&self, req: &AuthzRequest<'_>) -> Result<BuiltRequest, String> {
        self.model.build_complete(req)
    }

    /// Decides `req`. A request that cannot be built (an action missing from the schema, an
    /// unusable id) is denied, with the reason in `errors`.
    pub fn decide(&self, req: &AuthzRequest<'_>) -> Decision {
        match self.model.build(req) {
            Ok(built) => self.evaluate(&built),
            Err(e) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![format!("request: {e}")],
                mode: self.mode,
                policy_set: self.name.clone(),
                policy_set_hash: self.hash.clone(),
                principal: req.principal.map_or_else(
                    || format!("Anonymous::\"{}\"", req.facts.ip),
                    |p| p.entity_uid(),
                ),
                action: format!("Action::\"{}\"", req.action),
                resource: req.resource.uid_text(),
            },
        }
    }

    /// Evaluates a built request against the slices that can apply to it.
    pub fn evaluate(&self, built: &BuiltRequest) -> Decision {
        let authorizer = cedar_policy::Authorizer::new();
        let mut permits = Vec::new();
        let mut forbids = Vec::new();
        let mut errors = Vec::new();
        if let Some(slice) = self.slices.candidates(
            built.action_id(),
            built.resource(),
            built.principal_side(),
            built.tool_probe(),
        ) {
            let response = authorizer.is_authorized(&built.request, &slice, built.entities());
            let reasons = response.diagnostics().reason().map(policy_id_text);
            match response.decision() {
                cedar_policy::Decision::Allow => permits.extend(reasons),
                cedar_policy::Decision::Deny => forbids.extend(reasons),
            }
            errors.extend(response.diagnostics().errors().map(|e| e.to_string()));
        }
        let allowed = forbids.is_empty() && !permits.is_empty();
        let mut policies = if allowed { permits } else { forbids };
        policies.sort();
        policies.dedup();
        errors.sort();
        errors.dedup();
        Decision {
            allowed,
            policies,
            errors,
            mode: self.mode,
            policy_set: self.name.clone(),
            policy_set_hash: self.hash.clone(),
            principal: built.principal().to_string(),
            action: built.action().to_string(),
            resource: built.resource().to_string(),
        }
    }

    /// Evaluates against the whole set, unsliced (tests, `policy explain`): must agree with
    /// [`PolicySet::evaluate`].
    pub fn evaluate_unsliced(&self, built: &BuiltRequest) -> cedar_policy::Response {
        cedar_policy::Authorizer::new().is_authorized(
            &built.request,
            &self.policies,
            built.entities(),
        )
    }
}

/// A policy id as Cedar displays it (`escape_debug`), copied as it is when nothing in it needs
/// escaping: ids are printable ASCII nearly always, and `fmt` costs ≈ 1,300 instructions per
/// decision for the same bytes.
fn policy_id_text(id: &cedar_policy::PolicyId) -> String {
    let raw: &str = id.as_ref();
    if raw
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'\\' | b'\'' | b'"'))
    {
        raw.to_string()
    } else {
        id.to_string()
    }
}

#[cfg(test)]
mod tests;
