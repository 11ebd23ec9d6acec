//! What a policy set reads and names, from the policies' JSON form (Cedar's EST): the
//! attributes it tests, the entities and literals it compares them with, the CIDRs it checks
//! addresses against — the raw material of the analysis [`super::Domain`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::authz::PolicySet;

/// What one or more policy sets read and name.
#[derive(Debug, Clone, Default)]
pub struct PolicyFacts {
    /// Attributes read, as `var.attr` (`principal.mfa`, `context.ip`, …).
    pub reads: BTreeSet<String>,
    /// Entity literals, as (type, id).
    pub entities: BTreeSet<(String, String)>,
    /// String literals an attribute is compared with (`==`, `!=`, `contains`, `like`…), by
    /// attribute name.
    pub literals: BTreeMap<String, BTreeSet<String>>,
    /// Arguments of `ip("…")`.
    pub addresses: BTreeSet<String>,
    /// Entity types tested with `is`.
    pub types: BTreeSet<String>,
    /// Tenants of catalogued tools.
    pub tool_tenants: BTreeSet<String>,
    /// Scopes catalogued tools require.
    pub tool_credentials: BTreeSet<String>,
    /// Catalogued tool names.
    pub tools: BTreeSet<String>,
    /// Action id → the resource types the schema lets it apply to.
    pub actions: BTreeMap<String, BTreeSet<String>>,
    /// Per policy: the actions its scope names (`None`: any) and what it reads (`var.attr`,
    /// `is:<type>` for type tests, `entity:<type>` for entity literals).
    pub scoped: Vec<(Option<BTreeSet<String>>, BTreeSet<String>)>,
}

impl PolicyFacts {
    /// Adds what `set` reads and names (its policies, catalog and schema).
    pub fn add_set(&mut self, set: &PolicySet) {
        // `in Action::"group"` matches the group's members: a scope naming a group counts as
        // "any action" (conservative).
        let groups: BTreeSet<String> = set
            .schema()
            .action_groups()
            .map(|g| g.id().unescaped().to_string())
            .collect();
        for policy in set.policies().policies() {
            if let Ok(json) = policy.to_json() {
                let before = std::mem::take(&mut self.reads);
                self.walk(&json);
                let reads = std::mem::replace(&mut self.reads, before);
                self.reads.extend(reads.iter().cloned());
                let actions =
                    scope_actions(&json).filter(|ids| !ids.iter().any(|id| groups.contains(id)));
                self.scoped.push((actions, reads));
            }
        }
        for (name, tool) in &set.catalog().tools {
            self.tools.insert(name.clone());
            self.tool_tenants.extend(tool.tenant.iter().cloned());
            self.tool_credentials
                .extend(tool.required_credentials.iter().cloned());
        }
        let schema = set.schema();
        for uid in schema.actions() {
            let types: BTreeSet<String> = schema
                .resources_for_action(uid)
                .map(|it| it.map(ToString::to_string).collect())
                .unwrap_or_default();
            if !types.is_empty() {
                self.actions
                    .entry(uid.id().unescaped().to_string())
                    .or_default()
                    .extend(types);
            }
        }
    }

    /// These facts as far as requests for `action` go: only what the policies whose scope
    /// can match `action` read (a dimension no such policy reads cannot change its decisions).
    pub fn for_action(&self, action: &str) -> Self {
        let mut facts = self.clone();
        facts.reads = self
            .scoped
            .iter()
            .filter(|(actions, _)| actions.as_ref().is_none_or(|a| a.contains(action)))
            .flat_map(|(_, reads)| reads.iter().cloned())
            .collect();
        facts
    }

    /// Whether some policy reads `var.attr`.
    pub fn reads(&self, attr: &str) -> bool {
        self.reads.contains(attr)
    }

    /// The ids of entity literals of type `ty`.
    pub fn entity_ids<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entities
            .iter()
            .filter(move |(t, _)| t == ty)
            .map(|(_, id)| id.as_str())
    }

    /// String literals compared with attribute `attr`.
    pub fn literals(&self, attr: &str) -> impl Iterator<Item = &str> {
        self.literals
            .get(attr)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.walk(i)),
            Value::Object(map) => {
                self.node(map);
                map.values().for_each(|i| self.walk(i));
            }
            _ => {}
        }
    }

    fn node(&mut self, map: &Map<String, Value>) {
        // An entity literal: `{"type": "Role", "id": "admin"}` (scope constraints, `__entity`).
        if let (Some(Value::String(ty)), Some(Value::String(id))) = (map.get("type"), map.get("id"))
        {
            self.entities.insert((ty.clone(), id.clone()));
            self.reads.insert(format!("entity:{ty}"));
        }
        if let Some(Value::String(ty)) = map.get("entity_type") {
            self.types.insert(ty.clone());
            self.reads.insert(format!("is:{ty}"));
        }
        for (op, body) in map {
            match op.as_str() {
                "." | "has" => {
                    if let Some((var, attr)) = access(body) {
                        self.reads.insert(format!("{var}.{attr}"));
                    }
                }
                "==" | "!=" | "contains" | "containsAll" | "containsAny" | "in" => {
                    let (Some(left), Some(right)) = (body.get("left"), body.get("right")) else {
                        continue;
                    };
                    for (side, other) in [(left, right), (right, left)] {
                        if let Some(attr) = side.get(".").and_then(|b| b.get("attr")) {
                            if let Some(attr) = attr.as_str() {
                                let mut found = Vec::new();
                                strings(other, &mut found);
                                self.literals
                                    .entry(attr.to_string())
                                    .or_default()
                                    .extend(found);
                            }
                        }
                    }
                }
                "like" => {
                    if let (Some(attr), Some(pattern)) = (
                        body.get("left")
                            .and_then(|l| l.get("."))
                            .and_then(|b| b.get("attr"))
                            .and_then(Value::as_str),
                        body.get("pattern"),
                    ) {
                        // A pattern's literal parts, glued: a value that matches when the
                        // pattern's wildcards match nothing.
                        let mut text = String::new();
                        if let Value::Array(parts) = pattern {
                            for p in parts {
                                if let Some(lit) = p.get("Literal").and_then(Value::as_str) {
                                    text.push_str(lit);
                                }
                            }
                        }
                        self.literals
                            .entry(attr.to_string())
                            .or_default()
                            .insert(text);
                    }
                }
                "ip" => {
                    let mut found = Vec::new();
                    strings(body, &mut found);
                    self.addresses.extend(found);
                }
                _ => {}
            }
        }
    }
}

/// The action ids a policy's scope names: `None` for `action` alone, for an action group
/// (conservatively: any action) or anything not understood.
fn scope_actions(policy: &Value) -> Option<BTreeSet<String>> {
    let scope = policy.get("action")?;
    let id = |e: &Value| -> Option<String> {
        (e.get("type")?.as_str()? == "Action").then_some(())?;
        e.get("id")?.as_str().map(String::from)
    };
    let ids: Vec<String> = match scope.get("op")?.as_str()? {
        "==" => vec![id(scope.get("entity")?)?],
        "in" => match (scope.get("entity"), scope.get("entities")) {
            (Some(e), _) => vec![id(e)?],
            (None, Some(Value::Array(list))) => list.iter().map(id).collect::<Option<Vec<_>>>()?,
            _ => return None,
        },
        _ => return None,
    };
    Some(ids.into_iter().collect())
}

/// `{"left": {"Var": v}, "attr": a}` → (v, a).
fn access(body: &Value) -> Option<(&str, &str)> {
    let var = body.get("left")?.get("Var")?.as_str()?;
    let attr = body.get("attr")?.as_str()?;
    Some((var, attr))
}

/// String values (`{"Value": "x"}`, sets of them) inside `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(s)) = map.get("Value") {
                out.push(s.clone());
            }
            for (k, inner) in map {
                if k == "Value" || k == "Set" {
                    strings(inner, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        _ => {}
    }
}
