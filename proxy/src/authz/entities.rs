//! Building the Cedar request — principal, action, resource, context and the entities they
//! need — from what the proxy knows about a request ([`AuthzRequest`]).
//!
//! Entities are built per request and are few: the principal (parents `Role::"<role>"` and
//! `Tenant::"<id>"`), the resource (a catalogued `Tool` is prebuilt at load), the action with
//! its ancestors (prebuilt), and for tool calls an `Arguments` entity whose tags are the call's
//! arguments, filesystem paths normalized ([`super::arguments`]). Nothing is looked up from outside the request and the loaded policy set.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};
use serde_json::Value;

use super::catalog::{ToolCatalog, ToolSpec};
use super::context::{context_keys, context_pairs, ContextCache};
use super::request::{AuthzRequest, Resource, ResourceKind};
use crate::authn::{AuthMethod, Principal, PrincipalKind};
use crate::protocol::mcp::ToolAnnotations;

/// A Cedar request ready to evaluate, with what explain shows.
pub struct BuiltRequest {
    /// The Cedar request.
    pub request: cedar_policy::Request,
    /// Its entities and the uids it is about (shared with other requests of the same caller,
    /// resource and route).
    parts: Arc<EntityParts>,
    /// A tool call's own entity store, when it has arguments: `parts`' entities and its
    /// `Arguments::"call"`.
    call_entities: Option<Entities>,
    /// Action uid as text.
    action: Arc<str>,
    /// The action's id (`run_agent`).
    action_id: Arc<str>,
    /// When the resource is a catalogued tool: its pinned hints, which with its uid and the
    /// catalog make its entity (the key its pruned policy sets are cached under).
    catalogued_tool: Option<Option<ToolAnnotations>>,
}

impl BuiltRequest {
    /// The entities the request needs.
    pub fn entities(&self) -> &Entities {
        self.call_entities.as_ref().unwrap_or(&self.parts.entities)
    }

    /// Principal uid as text.
    pub fn principal(&self) -> &str {
        &self.parts.principal_text
    }

    /// Action uid as text.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The action's id, e.g. `run_agent`.
    pub fn action_id(&self) -> &str {
        &self.action_id
    }

    /// Resource uid as text.
    pub fn resource(&self) -> &str {
        &self.parts.resource_text
    }

    /// Uids the principal is `in` (itself and its parents), for slicing.
    pub fn principal_side(&self) -> &[String] {
        &self.parts.principal_side
    }

    /// When the resource is a catalogued tool: what to prune its policy set with.
    pub(super) fn tool_probe(&self) -> Option<super::slice::ToolProbe<'_>> {
        Some(super::slice::ToolProbe {
            hints: self.catalogued_tool?,
            request: &self.request,
            entities: self.entities(),
        })
    }
}

/// Prebuilt parts of requests for one schema and catalog.
pub struct EntityModel {
    /// Action id → its uid, the uid as text, the id shared, and its entities with ancestors.
    actions: HashMap<String, ActionParts>,
    ancestry: HashMap<String, Vec<String>>,
    resource_types: HashMap<String, Vec<String>>,
    tools: HashMap<String, Entity>,
    /// The catalog's tools (for a tool entity with pinned MCP annotations on top).
    catalog: HashMap<String, ToolSpec>,
    /// Catalogued tools' `path_arguments` (normalized before they reach Cedar).
    path_arguments: HashMap<String, std::collections::BTreeSet<String>>,
    /// Whether some policy names an action group, so requests need the action entities (their
    /// ancestry); when none does, `action in [...]` only ever compares actions for equality.
    action_groups_used: bool,
    /// Principal entities already built, by identity (a caller's entity is the same on each of
    /// its requests). Bounded; cleared when full.
    principals: dashmap::DashMap<PrincipalKey, (Entity, Vec<String>), super::Hasher>,
    /// Entity stores of argument-free requests, by everything they are built from. Bounded;
    /// cleared when full.
    entity_sets: dashmap::DashMap<EntitiesKey, Arc<EntityParts>, super::Hasher>,
    /// Context keys some policy reads; `None` when a policy uses `context` as a whole. Keys no
    /// policy reads are left out of the request (they cost parsing, e.g. `datetime`).
    context_keys: Option<HashSet<String>>,
    /// Contexts of requests, by the values policies read.
    contexts: ContextCache,
}

/// An action's prebuilt parts.
struct ActionParts {
    uid: EntityUid,
    text: Arc<str>,
    id: Arc<str>,
    entities: Vec<Entity>,
}

/// What the entity store of a request is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntitiesKey {
    principal: PrincipalKey,
    resource: Resource,
    route: String,
    protocol: &'static str,
    action: Option<String>,
    /// The store is a tool call's base: without `Arguments::"call"`, which each call adds.
    call_base: bool,
}

/// A request's entity store and the uids it is about (with their text, made once).
struct EntityParts {
    entities: Entities,
    principal: EntityUid,
    principal_text: String,
    resource: EntityUid,
    resource_text: String,
    principal_side: Vec<String>,
}

/// Most entity stores kept by [`EntityModel`].
const ENTITY_CACHE: usize = 8192;

/// The fields of a [`Principal`] its entity is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PrincipalKey {
    kind: &'static str,
    id: String,
    email: Option<String>,
    tenant: Option<String>,
    roles: Vec<String>,
    groups: Vec<String>,
    scopes: Vec<String>,
    mfa: bool,
    auth_method: &'static str,
    actor: Option<String>,
}

impl PrincipalKey {
    fn of(p: &Principal) -> Self {
        Self {
            kind: p.kind.entity_type(),
            id: p.id.clone(),
            email: p.email.clone(),
            tenant: p.tenant.clone(),
            roles: p.roles.clone(),
            groups: p.groups.clone(),
            scopes: p.scopes.clone(),
            mfa: p.mfa,
            auth_method: p.auth_method.as_str(),
            actor: p.actor().map(str::to_string),
        }
    }
}

/// Most principal entities kept by [`EntityModel`].
const PRINCIPAL_CACHE: usize = 4096;

impl EntityModel {
    /// Prebuilds action entities from `schema` and tool entities from `catalog`.
    /// `policies` tells whether any policy names an action group.
    pub fn new(
        schema: &Schema,
        catalog: &ToolCatalog,
        policies: &cedar_policy::PolicySet,
    ) -> Result<Self, String> {
        let action_entities = schema.action_entities().map_err(|e| e.to_string())?;
        let mut actions = HashMap::new();
        let mut ancestry = HashMap::new();
        let mut resource_types = HashMap::new();
        for uid in schema.actions() {
            let id = uid.id().unescaped().to_string();
            let ancestors: Vec<EntityUid> = action_entities
                .ancestors(uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            let entities = std::iter::once(uid)
                .chain(ancestors.iter())
                .filter_map(|u| action_entities.get(u).cloned())
                .collect();
            ancestry.insert(
                id.clone(),
                ancestors
                    .iter()
                    .map(|a| a.id().unescaped().to_string())
                    .collect(),
            );
            let types = schema
                .resources_for_action(uid)
                .map(|it| it.map(|t| t.to_string()).collect())
                .unwrap_or_default();
            resource_types.insert(id.clone(), types);
            actions.insert(
                id.clone(),
                ActionParts {
                    uid: uid.clone(),
                    text: uid.to_string().into(),
                    id: id.into(),
                    entities,
                },
            );
        }
        let mut tools = HashMap::new();
        let mut path_arguments = HashMap::new();
        for (name, spec) in &catalog.tools {
            tools.insert(name.clone(), tool_entity(name, Some(spec), None)?);
            if !spec.path_arguments.is_empty() {
                path_arguments.insert(name.clone(), spec.path_arguments.clone());
            }
        }
        let groups: Vec<String> = schema
            .action_groups()
            .map(|g| format!("Action::{}", Value::String(g.id().unescaped().to_string())))
            .collect();
        let action_groups_used = policies.policies().any(|p| {
            let text = p.to_cedar().unwrap_or_default();
            groups.iter().any(|g| text.contains(g.as_str()))
        });
        let context_keys = context_keys(policies);
        Ok(Self {
            contexts: ContextCache::new(context_keys.as_ref()),
            actions,
            ancestry,
            resource_types,
            tools,
            catalog: catalog.tools.clone().into_iter().collect(),
            path_arguments,
            action_groups_used,
            principals: dashmap::DashMap::default(),
            entity_sets: dashmap::DashMap::default(),
            context_keys,
        })
    }

    /// Action id → ids of its ancestors (action groups).
    pub fn action_ancestry(&self) -> &HashMap<String, Vec<String>> {
        &self.ancestry
    }

    /// Checks that `action` exists and applies to resources of `resource`'s type.
    pub fn check_target(&self, action: &str, resource: &Resource) -> Result<(), String> {
        let types = self
            .resource_types
            .get(action)
            .ok_or_else(|| format!("the schema has no action `{action}`"))?;
        let ty = resource.kind.entity_type();
        if !types.iter().any(|t| t == ty) {
            return Err(format!(
                "action `{action}` does not apply to `{ty}` resources (it takes: {})",
                types.join(", ")
            ));
        }
        Ok(())
    }

    /// Builds the Cedar request and entities for `req`.
    pub fn build(&self, req: &AuthzRequest<'_>) -> Result<BuiltRequest, String> {
        self.build_with(req, self.context_keys.as_ref(), true)
    }

    /// Like [`EntityModel::build`], with every context key of the schema even when no policy
    /// reads it (`policy explain`, and tests that check requests against the schema).
    pub fn build_complete(&self, req: &AuthzRequest<'_>) -> Result<BuiltRequest, String> {
        self.build_with(req, None, false)
    }

    fn build_with(
        &self,
        req: &AuthzRequest<'_>,
        keys: Option<&HashSet<String>>,
        cached: bool,
    ) -> Result<BuiltRequest, String> {
        let action = self
            .actions
            .get(req.action)
            .ok_or_else(|| format!("the schema has no action `{}`", req.action))?;
        let tool = req.resource.kind == ResourceKind::Tool;
        let (parts, call_entities) = self.entities(req)?;
        let build = || {
            let mut pairs = context_pairs(req, keys);
            if tool {
                pairs.push((
                    "arguments".into(),
                    RestrictedExpression::new_entity_uid(arguments_uid()?),
                ));
                pairs.push((
                    "route".into(),
                    RestrictedExpression::new_string(req.facts.route.clone()),
                ));
            }
            Context::from_pairs(pairs).map_err(|e| e.to_string())
        };
        let context = if cached {
            self.contexts.get_or_build(req, tool, build)?
        } else {
            build()?
        };
        let request = cedar_policy::Request::new(
            parts.principal.clone(),
            action.uid.clone(),
            parts.resource.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let catalogued_tool =
            (tool && self.catalog.contains_key(&req.resource.id)).then_some(req.resource.hints);
        Ok(BuiltRequest {
            request,
            parts,
            call_entities,
            action: action.text.clone(),
            action_id: action.id.clone(),
            catalogued_tool,
        })
    }

    /// The entities of `req`, cached per (principal, resource, route): as they are when the
    /// request has no tool arguments (its entities are then the same on every such request);
    /// for a tool call with arguments, the store without them, and the call's own store (that
    /// one and its `Arguments::"call"`; adding one entity to a built store costs less than
    /// building the store again with it).
    fn entities(
        &self,
        req: &AuthzRequest<'_>,
    ) -> Result<(Arc<EntityParts>, Option<Entities>), String> {
        let call_base = req.resource.kind == ResourceKind::Tool
            && req
                .arguments
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty());
        let Some(p) = req.principal else {
            return Ok((self.build_entities(req, true)?, None));
        };
        let key = EntitiesKey {
            principal: PrincipalKey::of(p),
            resource: req.resource.clone(),
            route: req.facts.route.clone(),
            protocol: req.facts.protocol,
            action: self.action_groups_used.then(|| req.action.to_string()),
            call_base,
        };
        let parts = match self.entity_sets.get(&key) {
            Some(hit) => hit.value().clone(),
            None => {
                let parts = self.build_entities(req, !call_base)?;
                if self.entity_sets.len() >= ENTITY_CACHE {
                    self.entity_sets.clear();
                }
                self.entity_sets.insert(key, parts.clone());
                parts
            }
        };
        if !call_base {
            return Ok((parts, None));
        }
        let paths = self.path_arguments.get(&req.resource.id);
        let call = parts
            .entities
            .clone()
            .add_entities([arguments_entity(req.arguments, paths)?], None)
            .map_err(|e| e.to_string())?;
        Ok((parts, Some(call)))
    }

    /// The entity store of `req` and the uids it is about; a tool's `Arguments::"call"` is in
    /// it when `with_arguments`.
    fn build_entities(
        &self,
        req: &AuthzRequest<'_>,
        with_arguments: bool,
    ) -> Result<Arc<EntityParts>, String> {
        let (principal, principal_side) = self.principal_entity(req.principal, req.facts.ip)?;
        let principal_uid = principal.uid();
        let resource = self.resource_entity(req)?;
        let resource_uid = resource.uid();
        let mut entities: Vec<Entity> = Vec::with_capacity(5);
        entities.push(principal);
        entities.push(resource);
        if self.action_groups_used {
            if let Some(action) = self.actions.get(req.action) {
                entities.extend(action.entities.iter().cloned());
            }
        }
        if with_arguments && req.resource.kind == ResourceKind::Tool {
            let paths = self.path_arguments.get(&req.resource.id);
            entities.push(arguments_entity(req.arguments, paths)?);
        }
        Ok(Arc::new(EntityParts {
            entities: Entities::from_entities(entities, None).map_err(|e| e.to_string())?,
            principal_text: principal_uid.to_string(),
            principal: principal_uid,
            resource_text: resource_uid.to_string(),
            resource: resource_uid,
            principal_side,
        }))
    }

    /// The principal's entity, from the cache when this identity was seen before.
    fn principal_entity(
        &self,
        principal: Option<&Principal>,
        ip: IpAddr,
    ) -> Result<(Entity, Vec<String>), String> {
        let Some(p) = principal else {
            return principal_entity(None, ip);
        };
        let key = PrincipalKey::of(p);
        if let Some(hit) = self.principals.get(&key) {
            return Ok(hit.value().clone());
        }
        let built = principal_entity(Some(p), ip)?;
        if self.principals.len() >= PRINCIPAL_CACHE {
            self.principals.clear();
        }
        self.principals.insert(key, built.clone());
        Ok(built)
    }

    fn resource_entity(&self, req: &AuthzRequest<'_>) -> Result<Entity, String> {
        let r = req.resource;
        let uid = uid(r.kind.entity_type(), &r.id)?;
        let attrs = match r.kind {
            ResourceKind::Tool => {
                return match (self.tools.get(&r.id), &r.hints) {
                    (Some(tool), None) => Ok(tool.clone()),
                    (_, hints) => tool_entity(&r.id, self.catalog.get(&r.id), hints.as_ref()),
                }
            }
            ResourceKind::Route => HashMap::from([(
                "protocol".to_string(),
                RestrictedExpression::new_string(req.facts.protocol.to_string()),
            )]),
            ResourceKind::Agent => HashMap::from([(
                "route".to_string(),
                RestrictedExpression::new_string(req.facts.route.clone()),
            )]),
            ResourceKind::Thread => HashMap::new(),
        };
        Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
    }
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(ty).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn string_set(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().cloned().map(RestrictedExpression::new_string))
}

/// The principal entity and the uids it is `in` (itself and its parents).
fn principal_entity(
    principal: Option<&Principal>,
    ip: IpAddr,
) -> Result<(Entity, Vec<String>), String> {
    let anonymous;
    let p = match principal {
        Some(p) => p,
        None => {
            anonymous = Principal::new(
                PrincipalKind::Anonymous,
                ip.to_string(),
                AuthMethod::Anonymous,
            );
            &anonymous
        }
    };
    let me = uid(p.kind.entity_type(), &p.id)?;
    let mut parents = HashSet::with_capacity(p.roles.len() + 1);
    let mut side = Vec::with_capacity(p.roles.len() + 2);
    side.push(me.to_string());
    for role in &p.roles {
        let r = uid("Role", role)?;
        side.push(r.to_string());
        parents.insert(r);
    }
    let mut attrs = HashMap::with_capacity(8);
    if let Some(tenant) = &p.tenant {
        let t = uid("Tenant", tenant)?;
        side.push(t.to_string());
        parents.insert(t);
        attrs.insert(
            "tenant".into(),
            RestrictedExpression::new_string(tenant.clone()),
        );
    }
    if let Some(email) = &p.email {
        attrs.insert(
            "email".into(),
            RestrictedExpression::new_string(email.clone()),
        );
    }
    attrs.insert("roles".into(), string_set(&p.roles));
    attrs.insert("groups".into(), string_set(&p.groups));
    attrs.insert("scopes".into(), string_set(&p.scopes));
    attrs.insert("mfa".into(), RestrictedExpression::new_bool(p.mfa));
    if let Some(actor) = p.actor() {
        attrs.insert(
            "actor".into(),
            RestrictedExpression::new_string(actor.to_string()),
        );
    }
    attrs.insert(
        "auth_method".into(),
        RestrictedExpression::new_string(p.auth_method.as_str().into()),
    );
    let entity = Entity::new(me, attrs, parents).map_err(|e| e.to_string())?;
    Ok((entity, side))
}

/// `Tool::"<name>"`: the catalog's attributes (or an uncatalogued tool's), and the tool's pinned
/// MCP annotations when its route has a tool lock. Its attributes are strings, sets of strings
/// and bools, never entity references, and it has no parents: pruning a catalogued tool's slice
/// (`slice::guard_of`) relies on its value depending on nothing else in the store.
fn tool_entity(
    name: &str,
    spec: Option<&ToolSpec>,
    hints: Option<&ToolAnnotations>,
) -> Result<Entity, String> {
    let set = |values: Option<&std::collections::BTreeSet<String>>| {
        RestrictedExpression::new_set(
            values
                .into_iter()
                .flatten()
                .cloned()
                .map(RestrictedExpression::new_string),
        )
    };
    let mut attrs = HashMap::from([
        (
            "risk".to_string(),
            RestrictedExpression::new_string(spec.map_or("high", |s| s.risk.as_str()).into()),
        ),
        ("tags".to_string(), set(spec.map(|s| &s.tags))),
        (
            "required_credentials".to_string(),
            set(spec.map(|s| &s.required_credentials)),
        ),
        (
            "catalogued".to_string(),
            RestrictedExpression::new_bool(spec.is_some()),
        ),
    ]);
    if let Some(tenant) = spec.and_then(|s| s.tenant.clone()) {
        attrs.insert("tenant".into(), RestrictedExpression::new_string(tenant));
    }
    for (attr, value) in hints.into_iter().flat_map(|h| h.attributes()) {
        attrs.insert(attr.into(), RestrictedExpression::new_bool(value));
    }
    Entity::new(uid("Tool", name)?, attrs, HashSet::new()).map_err(|e| e.to_string())
}

fn arguments_uid() -> Result<EntityUid, String> {
    uid("Arguments", "call")
}

/// `Arguments::"call"`, one tag per top-level argument: strings as is (paths normalized), other
/// values as JSON ([`super::arguments`]).
fn arguments_entity(
    arguments: Option<&Value>,
    path_arguments: Option<&std::collections::BTreeSet<String>>,
) -> Result<Entity, String> {
    let tags: HashMap<String, RestrictedExpression> =
        super::arguments::argument_tags(arguments, path_arguments)
            .into_iter()
            .map(|(k, v)| (k, RestrictedExpression::new_string(v)))
            .collect();
    Entity::new_with_tags(
        uid("Arguments", "call")?,
        HashMap::new(),
        HashSet::new(),
        tags,
    )
    .map_err(|e| e.to_string())
}
