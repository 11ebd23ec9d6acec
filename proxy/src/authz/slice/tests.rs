//! Unit tests of the slices' guards and pruning against Cedar's whole-set evaluation.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};

use super::*;

/// The policies of `text`, each under its `@id`.
fn set(text: &str) -> PolicySet {
    let parsed = PolicySet::from_str(text).expect("policies parse");
    let mut set = PolicySet::new();
    for p in parsed.policies() {
        let id = p.annotation("id").unwrap_or(p.id().as_ref()).to_string();
        set.add(p.new_id(PolicyId::new(id))).unwrap();
    }
    set
}

fn guard_text(policy: &str) -> Option<String> {
    let set = set(policy);
    let policy = set.policies().next().unwrap();
    guard_of(policy).map(|g| {
        g.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

#[test]
fn a_guard_is_the_leading_resource_only_part_of_the_condition() {
    let cases = [
        (
            r#"forbid (principal, action, resource) when { resource has tenant } unless { principal has tenant && principal.tenant == resource.tenant };"#,
            Some(r#"permit(principal, action, resource) when { resource has tenant };"#),
        ),
        (
            r#"forbid (principal, action, resource) when { resource.tags.contains("x") && (context.hour < 8 || resource.risk == "high") && resource.risk == "low" };"#,
            Some(r#"permit(principal, action, resource) when { resource.tags.contains("x") };"#),
        ),
        (
            r#"forbid (principal, action, resource) unless { resource.risk == "low" } when { resource.catalogued };"#,
            Some(
                r#"permit(principal, action, resource) unless { resource.risk == "low" } when { resource.catalogued };"#,
            ),
        ),
        (
            r#"permit (principal in Role::"a", action == Action::"approve", resource is Tool) when { resource.risk != "high" };"#,
            Some(
                r#"permit(principal, action, resource is Tool) when { resource.risk != "high" };"#,
            ),
        ),
        (
            r#"permit (principal, action, resource is Agent);"#,
            Some(r#"permit(principal, action, resource is Agent);"#),
        ),
        // Nothing to test: no condition reads the resource alone first.
        (
            r#"permit (principal in Role::"admin", action, resource);"#,
            None,
        ),
        (
            r#"forbid (principal, action, resource) when { context.a && resource.risk == "high" };"#,
            None,
        ),
        (
            r#"forbid (principal, action, resource) when { principal.mfa } when { resource.risk == "high" };"#,
            None,
        ),
        (
            r#"forbid (principal, action, resource) unless { principal.scopes.containsAll(resource.required_credentials) };"#,
            None,
        ),
        // A clause that reads anything else ends the guard, `unless` included: later
        // clauses are not tested (Cedar would stop at an error in the one before them).
        (
            r#"forbid (principal, action, resource) when { resource.catalogued } unless { principal.mfa } when { resource.risk == "high" };"#,
            Some(r#"permit(principal, action, resource) when { resource.catalogued };"#),
        ),
        (
            r#"forbid (principal, action, resource) unless { resource.catalogued && context.mfa };"#,
            None,
        ),
        (
            r#"forbid (principal, action, resource) when { resource.hasTag("a") && resource.getTag("a") == "b" && ip("10.0.0.1").isLoopback() };"#,
            Some(
                r#"permit(principal, action, resource) when { resource.hasTag("a") } when { resource.getTag("a") == "b" } when { ip("10.0.0.1").isLoopback() };"#,
            ),
        ),
        // The resource scope is kept as it is: its `in` reads the resource's own ancestors.
        (
            r#"permit (principal, action, resource is Tool in Tool::"group");"#,
            Some(r#"permit(principal, action, resource is Tool in Tool::"group");"#),
        ),
        // An entity literal depends on the entity store, not the resource alone.
        (
            r#"permit (principal, action, resource) when { resource == Tool::"a" };"#,
            None,
        ),
        (
            r#"permit (principal, action, resource) when { resource.owner == User::"a" };"#,
            None,
        ),
    ];
    for (policy, expected) in cases {
        assert_eq!(guard_text(policy).as_deref(), expected, "{policy}");
    }
}

fn tool(attrs: &[(&str, RestrictedExpression)]) -> Entity {
    let attrs: HashMap<String, RestrictedExpression> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Entity::new(
        EntityUid::from_str(r#"Tool::"t""#).unwrap(),
        attrs,
        HashSet::new(),
    )
    .unwrap()
}

fn request(context: &[(&str, bool)]) -> Request {
    Request::new(
        EntityUid::from_str(r#"User::"u""#).unwrap(),
        EntityUid::from_str(r#"Action::"call_tool""#).unwrap(),
        EntityUid::from_str(r#"Tool::"t""#).unwrap(),
        Context::from_pairs(
            context
                .iter()
                .map(|(k, v)| (k.to_string(), RestrictedExpression::new_bool(*v))),
        )
        .unwrap(),
        None,
    )
    .unwrap()
}

/// Decision, reasons and errors (each sorted) of `set` for `r`.
pub(in crate::authz) fn outcome(
    r: &Request,
    set: &PolicySet,
    e: &Entities,
) -> (bool, Vec<String>, Vec<String>) {
    let response = Authorizer::new().is_authorized(r, set, e);
    let sorted = |items: Vec<String>| {
        let mut items = items;
        items.sort();
        items
    };
    let diagnostics = response.diagnostics();
    (
        response.decision() == cedar_policy::Decision::Allow,
        sorted(diagnostics.reason().map(|p| p.to_string()).collect()),
        sorted(diagnostics.errors().map(|e| e.to_string()).collect()),
    )
}

const POLICIES: &str = r#"
    @id("pruned-when") forbid (principal, action, resource) when { resource.risk == "high" && context.mfa };
    @id("pruned-unless") forbid (principal, action, resource) unless { resource.risk == "low" };
    @id("pruned-is") permit (principal, action, resource is Agent);
    @id("kept-error") forbid (principal, action, resource) when { resource.nope == "x" && context.mfa };
    @id("kept-context-first") forbid (principal, action, resource) when { context.mfa && resource.risk == "high" };
    @id("kept-true") permit (principal, action, resource) when { resource.risk == "low" && context.ok };
    @id("kept-literal") permit (principal, action, resource) when { resource == Tool::"other" };
    @id("kept-no-guard") permit (principal == User::"u", action, resource);
"#;

#[test]
fn pruning_drops_only_policies_false_without_error_and_decides_as_the_whole_set() {
    let whole = set(POLICIES);
    let actions = HashMap::from([("call_tool".to_string(), Vec::new())]);
    let slices = Slices::build(&whole, &actions);
    let entities = Entities::from_entities(
        [tool(&[(
            "risk",
            RestrictedExpression::new_string("low".into()),
        )])],
        None,
    )
    .unwrap();
    let side = [r#"User::"u""#.to_string()];
    for context in [
        vec![("mfa", true), ("ok", true)],
        vec![("mfa", false), ("ok", true)],
        vec![("mfa", true), ("ok", false)],
        vec![("mfa", false)],
        vec![],
    ] {
        let r = request(&context);
        let probe = ToolProbe {
            hints: None,
            request: &r,
            entities: &entities,
        };
        let pruned = slices
            .candidates("call_tool", r#"Tool::"t""#, &side, Some(probe))
            .unwrap();
        let mut ids: Vec<String> = pruned.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "kept-context-first",
                "kept-error",
                "kept-literal",
                "kept-no-guard",
                "kept-true"
            ],
            "{context:?}"
        );
        assert_eq!(
            outcome(&r, &pruned, &entities),
            outcome(&r, &whole, &entities),
            "{context:?}"
        );
    }
    // Without a probe (not a catalogued tool) nothing is pruned.
    let all = slices
        .candidates("call_tool", r#"Tool::"t""#, &side, None)
        .unwrap();
    assert_eq!(all.policies().count(), whole.policies().count());
}

#[test]
fn pruned_sets_are_kept_per_tool_and_hints() {
    let whole = set(
        r#"@id("read-only") permit (principal, action, resource) when { resource has read_only && resource.read_only };"#,
    );
    let actions = HashMap::from([("call_tool".to_string(), Vec::new())]);
    let slices = Slices::build(&whole, &actions);
    let r = request(&[]);
    let side = [r#"User::"u""#.to_string()];
    let bare = Entities::from_entities([tool(&[])], None).unwrap();
    let hinted = Entities::from_entities(
        [tool(&[("read_only", RestrictedExpression::new_bool(true))])],
        None,
    )
    .unwrap();
    let hints = ToolAnnotations {
        read_only: Some(true),
        ..ToolAnnotations::default()
    };
    let count = |hints, entities: &Entities| {
        let probe = ToolProbe {
            hints,
            request: &r,
            entities,
        };
        slices
            .candidates("call_tool", r#"Tool::"t""#, &side, Some(probe))
            .map_or(0, |s| s.policies().count())
    };
    assert_eq!(count(None, &bare), 0, "no hint: the policy cannot apply");
    assert_eq!(count(Some(hints), &hinted), 1, "the hinted tool keeps it");
    assert_eq!(count(None, &bare), 0);
    assert!(
        outcome(&r, &whole, &hinted).0,
        "and it permits the hinted tool"
    );
}

#[test]
fn a_set_cache_is_bounded_by_sets_and_by_policies_held() {
    let cache: SetCache<u32, u32> = SetCache::default();
    cache.insert(1, 1, CACHED_POLICIES - 10);
    cache.insert(2, 2, 5);
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(1), Some(2)));
    // Holding 10 more would pass the bound on policies: emptied, then kept.
    cache.insert(3, 3, 10);
    assert_eq!(
        (cache.get(&1), cache.get(&2), cache.get(&3)),
        (None, None, Some(3))
    );
    for k in 10..10 + CACHED_SETS as u32 {
        cache.insert(k, k, 0);
        assert!(cache.sets.len() <= CACHED_SETS);
    }
    assert_eq!(cache.get(&3), None, "emptied when full of sets");
}
