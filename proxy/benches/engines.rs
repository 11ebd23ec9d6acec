//! Authorization engines compared on the same rules and the same requests: Cedar (the
//! `cedar-policy` crate three ways, and Palisade's own decision path on top of it), Rego
//! (`regorus`) and CEL (`cel-interpreter`).
//!
//! The rules, written once per language ([`CEDAR_RULES`], [`REGO_POLICY`], [`CEL_RULE`]):
//! - RBAC: role `user` may `http_request` on a `Route` and `call_tool` on a `Tool`; role `admin`
//!   may do anything;
//! - tenant match: a tool with a `tenant` attribute may be called only by a principal of that
//!   tenant (a forbid, whatever the role);
//! - tool risk: calling a `high`-risk tool needs MFA (`context.mfa`), forbidden otherwise.
//!
//! Every figure includes building the engine's input for the request from the application's
//! own description of it ([`Req`] plus the tool attributes in [`TOOLS`]), except
//! `cedar/prebuilt`, the decision alone:
//!
//! | variant          | input built per request                                              |
//! |------------------|----------------------------------------------------------------------|
//! | `cedar/prebuilt` | nothing: `Request` and `Entities` built once, `is_authorized` alone   |
//! | `cedar/typed`    | `Entity::new` + `RestrictedExpression`, `Context::from_pairs`         |
//! | `cedar/json`     | `Entities::from_json_value`, `Context::from_json_value`               |
//! | `palisade`       | `palisade_proxy::authz::PolicySet::decide` (its entity/context caches)|
//! | `rego/native`    | a `regorus::Value` built natively, `set_input` + `eval_rule`          |
//! | `rego/json`      | a `serde_json::Value` converted to `regorus::Value`, then the same    |
//! | `cel/native`     | a child `Context` with `cel_interpreter::Value` maps, `execute`       |
//! | `cel/json`       | a child `Context` with variables from `serde_json::Value`s, `execute` |
//!
//! Before anything is timed, every variant decides every request and must agree with the
//! expected decision: the bench panics otherwise. After criterion's report it prints a summary
//! table (mean µs per decision, the median of 3 batches of [`ITERS`] after a warm-up, and the
//! ratio to `cedar/prebuilt`). The numbers depend on the machine (and its load): compare the
//! variants of one run, not runs of different machines.
//!
//! The Rego and CEL engines are optional dependencies behind the `engine-bench` feature, so
//! the default build (and CI's `cargo clippy --all-targets`) never compiles them:
//!
//! `cargo bench -p palisade-proxy --bench engines --features engine-bench`
//!
//! (add `-- --warm-up-time 1 --measurement-time 2` for a shorter run).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet as CedarPolicySet, Request, RestrictedExpression,
};
use cel_interpreter::objects::{Key, Map as CelMap};
use cel_interpreter::{Context as CelContext, Program, Value as CelValue};
use criterion::{BenchmarkId, Criterion};
use palisade_proxy::authn::{AuthMethod, Principal, PrincipalKind};
use palisade_proxy::authz::{
    AuthzRequest, Mode, PolicyFiles, PolicySet, RequestFacts, Resource, ResourceKind,
};
use regorus::{Engine, Value as RegoValue};
use serde_json::{json, Value as Json};

// ---- the scenario -------------------------------------------------------------------------

/// The rules in Cedar: for the three `cedar/*` variants (no schema) and for Palisade (validated
/// against `policies/palisade.cedarschema`). Cedar denies by default and a forbid overrides
/// every permit.
const CEDAR_RULES: &str = r#"
@id("user-http")
permit (principal in Role::"user", action == Action::"http_request", resource is Route);

@id("user-tools")
permit (principal in Role::"user", action == Action::"call_tool", resource is Tool);

@id("admin-all")
permit (principal in Role::"admin", action, resource);

@id("tenant-match")
forbid (principal, action == Action::"call_tool", resource is Tool)
when { resource has tenant }
unless { principal has tenant && principal.tenant == resource.tenant };

@id("high-risk-needs-mfa")
forbid (principal, action == Action::"call_tool", resource is Tool)
when { resource.risk == "high" }
unless { context.mfa };
"#;

/// The rules in Rego. Rego has no permit/forbid: `allow` is "some permit and no forbid", and
/// `default allow := false` makes everything else a deny. A forbid whose body is undefined
/// (a missing attribute) does not fire, as a Cedar policy that errors is skipped.
const REGO_POLICY: &str = r#"
package bench
import rego.v1

default allow := false

allow if {
	permit
	not forbid
}

permit if "admin" in input.principal.roles

permit if {
	"user" in input.principal.roles
	input.action == "http_request"
	input.resource.type == "Route"
}

permit if {
	"user" in input.principal.roles
	input.action == "call_tool"
	input.resource.type == "Tool"
}

same_tenant if input.principal.tenant == input.resource.tenant

forbid if {
	input.action == "call_tool"
	input.resource.type == "Tool"
	_ = input.resource.tenant
	not same_tenant
}

forbid if {
	input.action == "call_tool"
	input.resource.type == "Tool"
	input.resource.risk == "high"
	not input.context.mfa
}
"#;

/// The rule the Rego engine evaluates.
const REGO_RULE: &str = "data.bench.allow";

/// The rules in CEL: one boolean expression, `(any permit) && !(any forbid)`. An evaluation
/// error (a missing key) is taken as a deny; `has()` guards the optional `tenant`s.
const CEL_RULE: &str = r#"
("admin" in principal.roles
  || ("user" in principal.roles
      && ((action == "http_request" && resource.type == "Route")
          || (action == "call_tool" && resource.type == "Tool"))))
&& !(action == "call_tool" && resource.type == "Tool" && has(resource.tenant)
     && !(has(principal.tenant) && principal.tenant == resource.tenant))
&& !(action == "call_tool" && resource.type == "Tool" && resource.risk == "high"
     && !context.mfa)
"#;

/// What the application knows of a tool (Palisade: its catalog, `policies/tools.yaml`).
struct Tool {
    name: &'static str,
    risk: &'static str,
    tenant: Option<&'static str>,
}

const TOOLS: [Tool; 3] = [
    Tool {
        name: "search",
        risk: "low",
        tenant: Some("acme"),
    },
    Tool {
        name: "deploy",
        risk: "high",
        tenant: None,
    },
    Tool {
        name: "other_crm",
        risk: "low",
        tenant: Some("other"),
    },
];

fn tool(name: &str) -> &'static Tool {
    TOOLS
        .iter()
        .find(|t| t.name == name)
        .expect("every requested tool is in TOOLS")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Route,
    Tool,
}

/// One request, as the application has it before any engine sees it.
struct Req {
    name: &'static str,
    what: &'static str,
    principal: &'static str,
    roles: &'static [&'static str],
    tenant: Option<&'static str>,
    mfa: bool,
    action: &'static str,
    kind: Kind,
    resource: &'static str,
    allow: bool,
}

const REQUESTS: [Req; 5] = [
    Req {
        name: "A_route",
        what: "user, acme, no MFA: http_request on Route \"api\"",
        principal: "u-7",
        roles: &["user"],
        tenant: Some("acme"),
        mfa: false,
        action: "http_request",
        kind: Kind::Route,
        resource: "api",
        allow: true,
    },
    Req {
        name: "B_tool_low",
        what: "user, acme, no MFA: call_tool on low-risk \"search\" (tenant acme)",
        principal: "u-7",
        roles: &["user"],
        tenant: Some("acme"),
        mfa: false,
        action: "call_tool",
        kind: Kind::Tool,
        resource: "search",
        allow: true,
    },
    Req {
        name: "C_high_no_mfa",
        what: "user, acme, no MFA: call_tool on high-risk \"deploy\"",
        principal: "u-7",
        roles: &["user"],
        tenant: Some("acme"),
        mfa: false,
        action: "call_tool",
        kind: Kind::Tool,
        resource: "deploy",
        allow: false,
    },
    Req {
        name: "D_other_tenant",
        what: "user, acme, no MFA: call_tool on \"other_crm\" (tenant other)",
        principal: "u-7",
        roles: &["user"],
        tenant: Some("acme"),
        mfa: false,
        action: "call_tool",
        kind: Kind::Tool,
        resource: "other_crm",
        allow: false,
    },
    Req {
        name: "E_admin_mfa",
        what: "admin, acme, MFA: call_tool on high-risk \"deploy\"",
        principal: "root-1",
        roles: &["admin"],
        tenant: Some("acme"),
        mfa: true,
        action: "call_tool",
        kind: Kind::Tool,
        resource: "deploy",
        allow: true,
    },
];

/// One variant: decides `REQUESTS[i]`, input building included.
type Decide = Box<dyn FnMut(usize) -> bool>;

// ---- Cedar ----------------------------------------------------------------------------------

fn cedar_policies() -> CedarPolicySet {
    CEDAR_RULES.parse().expect("the Cedar rules parse")
}

/// Entity type names, parsed once (as an application would).
struct CedarTypes {
    user: EntityTypeName,
    role: EntityTypeName,
    tenant: EntityTypeName,
    route: EntityTypeName,
    tool: EntityTypeName,
    action: EntityTypeName,
}

impl CedarTypes {
    fn new() -> Self {
        let ty = |t: &str| EntityTypeName::from_str(t).expect("entity type name");
        Self {
            user: ty("User"),
            role: ty("Role"),
            tenant: ty("Tenant"),
            route: ty("Route"),
            tool: ty("Tool"),
            action: ty("Action"),
        }
    }
}

fn cedar_uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// The request and entities of `r` with the typed API.
fn cedar_typed(t: &CedarTypes, r: &Req) -> (Request, Entities) {
    let principal = cedar_uid(&t.user, r.principal);
    let mut parents: HashSet<EntityUid> = r.roles.iter().map(|x| cedar_uid(&t.role, x)).collect();
    let mut attrs = HashMap::with_capacity(2);
    if let Some(tenant) = r.tenant {
        parents.insert(cedar_uid(&t.tenant, tenant));
        attrs.insert(
            "tenant".to_string(),
            RestrictedExpression::new_string(tenant.to_string()),
        );
    }
    attrs.insert("mfa".to_string(), RestrictedExpression::new_bool(r.mfa));
    let principal_entity = Entity::new(principal.clone(), attrs, parents).expect("principal");
    let (resource, resource_entity) = match r.kind {
        Kind::Route => {
            let uid = cedar_uid(&t.route, r.resource);
            (uid.clone(), Entity::with_uid(uid))
        }
        Kind::Tool => {
            let spec = tool(r.resource);
            let uid = cedar_uid(&t.tool, r.resource);
            let mut attrs = HashMap::with_capacity(2);
            attrs.insert(
                "risk".to_string(),
                RestrictedExpression::new_string(spec.risk.to_string()),
            );
            if let Some(tenant) = spec.tenant {
                attrs.insert(
                    "tenant".to_string(),
                    RestrictedExpression::new_string(tenant.to_string()),
                );
            }
            let entity = Entity::new(uid.clone(), attrs, HashSet::new()).expect("tool");
            (uid, entity)
        }
    };
    let entities =
        Entities::from_entities([principal_entity, resource_entity], None).expect("entities");
    let context = Context::from_pairs([("mfa".to_string(), RestrictedExpression::new_bool(r.mfa))])
        .expect("context");
    let request = Request::new(
        principal,
        cedar_uid(&t.action, r.action),
        resource,
        context,
        None,
    )
    .expect("request");
    (request, entities)
}

/// The request and entities of `r` from Cedar's JSON formats.
fn cedar_json(r: &Req) -> (Request, Entities) {
    let principal_uid = json!({"type": "User", "id": r.principal});
    let mut parents: Vec<Json> = r
        .roles
        .iter()
        .map(|x| json!({"type": "Role", "id": x}))
        .collect();
    let mut attrs = json!({"mfa": r.mfa});
    if let Some(tenant) = r.tenant {
        parents.push(json!({"type": "Tenant", "id": tenant}));
        attrs["tenant"] = json!(tenant);
    }
    let (resource_uid, resource_attrs) = match r.kind {
        Kind::Route => (json!({"type": "Route", "id": r.resource}), json!({})),
        Kind::Tool => {
            let spec = tool(r.resource);
            let mut attrs = json!({"risk": spec.risk});
            if let Some(tenant) = spec.tenant {
                attrs["tenant"] = json!(tenant);
            }
            (json!({"type": "Tool", "id": r.resource}), attrs)
        }
    };
    let principal = EntityUid::from_json(principal_uid.clone()).expect("principal uid");
    let resource = EntityUid::from_json(resource_uid.clone()).expect("resource uid");
    let action =
        EntityUid::from_json(json!({"type": "Action", "id": r.action})).expect("action uid");
    let entities = Entities::from_json_value(
        json!([
            {"uid": principal_uid, "attrs": attrs, "parents": parents},
            {"uid": resource_uid, "attrs": resource_attrs, "parents": []},
        ]),
        None,
    )
    .expect("entities");
    let context = Context::from_json_value(json!({"mfa": r.mfa}), None).expect("context");
    let request = Request::new(principal, action, resource, context, None).expect("request");
    (request, entities)
}

fn allowed(
    authorizer: &Authorizer,
    policies: &CedarPolicySet,
    built: &(Request, Entities),
) -> bool {
    authorizer
        .is_authorized(&built.0, policies, &built.1)
        .decision()
        == Decision::Allow
}

// ---- Palisade -------------------------------------------------------------------------------

/// Palisade's policy set: the repository's schema and catalog (`policies/`), with the bench's
/// rules in place of the seed policies and the bench's tools added to the catalog.
fn palisade_set() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files = PolicyFiles::read(&dir).expect("policies/ readable");
    files.policies = vec![(PathBuf::from("engines.cedar"), CEDAR_RULES.to_string())];
    let (_, catalog) = files.catalog.as_mut().expect("policies/tools.yaml");
    for t in &TOOLS {
        let tenant = t
            .tenant
            .map(|x| format!(", tenant: {x}"))
            .unwrap_or_default();
        catalog.push_str(&format!("  {}: {{risk: {}{tenant}}}\n", t.name, t.risk));
    }
    PolicySet::from_files("engines", &files, Mode::Enforce)
        .unwrap_or_else(|e| panic!("the bench rules validate against the schema: {e:?}"))
}

/// What authentication and routing hand Palisade's authorization stage for `r`.
struct PalisadeInput {
    principal: Principal,
    resource: Resource,
    facts: RequestFacts,
}

fn palisade_input(r: &Req) -> PalisadeInput {
    let mut principal = Principal::new(PrincipalKind::User, r.principal, AuthMethod::Jwt);
    principal.roles = r.roles.iter().map(|x| x.to_string()).collect();
    principal.tenant = r.tenant.map(str::to_string);
    principal.mfa = r.mfa;
    let (resource, route, protocol) = match r.kind {
        Kind::Route => (
            Resource::new(ResourceKind::Route, r.resource),
            "api",
            "http",
        ),
        Kind::Tool => (Resource::new(ResourceKind::Tool, r.resource), "mcp", "mcp"),
    };
    let facts = RequestFacts {
        method: "POST".into(),
        path: format!("/{route}"),
        ip: IpAddr::from([10, 1, 2, 3]),
        forwarded: false,
        time: time::OffsetDateTime::now_utc(),
        tls: true,
        request_bytes: 512,
        route: route.into(),
        protocol,
    };
    PalisadeInput {
        principal: principal.normalize(),
        resource,
        facts,
    }
}

fn palisade_decide(set: &PolicySet, input: &PalisadeInput, action: &str) -> bool {
    set.decide(&AuthzRequest {
        principal: Some(&input.principal),
        action,
        resource: &input.resource,
        facts: &input.facts,
        arguments: None,
    })
    .allowed
}

// ---- Rego and CEL: one input document -------------------------------------------------------

/// The input of `r` for Rego and CEL, as JSON:
/// `{principal: {id, roles, tenant?, mfa}, action, resource: {type, id, risk?, tenant?},
/// context: {mfa}}`.
fn plain_json(r: &Req) -> Json {
    let mut principal = json!({"id": r.principal, "roles": r.roles, "mfa": r.mfa});
    if let Some(tenant) = r.tenant {
        principal["tenant"] = json!(tenant);
    }
    let resource = match r.kind {
        Kind::Route => json!({"type": "Route", "id": r.resource}),
        Kind::Tool => {
            let spec = tool(r.resource);
            let mut v = json!({"type": "Tool", "id": r.resource, "risk": spec.risk});
            if let Some(tenant) = spec.tenant {
                v["tenant"] = json!(tenant);
            }
            v
        }
    };
    json!({
        "principal": principal,
        "action": r.action,
        "resource": resource,
        "context": {"mfa": r.mfa},
    })
}

// ---- Rego -----------------------------------------------------------------------------------

/// A regorus engine with the policy loaded. `set_input` and `eval_rule` take `&mut self` and
/// reset the evaluation state on every call, so one engine serves every request here without
/// a clone; the engine is not `Sync` (`Rc` inside), so a multi-threaded server would keep one
/// per thread (or clone a loaded one).
fn rego_engine() -> Engine {
    let mut engine = Engine::new();
    engine
        .add_policy("bench.rego".to_string(), REGO_POLICY.to_string())
        .expect("the Rego policy parses");
    engine
}

fn rego_allowed(engine: &mut Engine, input: RegoValue) -> bool {
    engine.set_input(input);
    engine.eval_rule(REGO_RULE.to_string()).expect("eval_rule") == RegoValue::from(true)
}

/// The same document as [`plain_json`], built as a `regorus::Value`.
fn rego_input(r: &Req) -> RegoValue {
    let s = |x: &str| RegoValue::from(x);
    let mut principal = BTreeMap::new();
    principal.insert(s("id"), s(r.principal));
    principal.insert(
        s("roles"),
        RegoValue::from(r.roles.iter().map(|x| s(x)).collect::<Vec<_>>()),
    );
    if let Some(tenant) = r.tenant {
        principal.insert(s("tenant"), s(tenant));
    }
    principal.insert(s("mfa"), RegoValue::from(r.mfa));
    let mut resource = BTreeMap::new();
    resource.insert(s("id"), s(r.resource));
    match r.kind {
        Kind::Route => {
            resource.insert(s("type"), s("Route"));
        }
        Kind::Tool => {
            let spec = tool(r.resource);
            resource.insert(s("type"), s("Tool"));
            resource.insert(s("risk"), s(spec.risk));
            if let Some(tenant) = spec.tenant {
                resource.insert(s("tenant"), s(tenant));
            }
        }
    }
    let mut context = BTreeMap::new();
    context.insert(s("mfa"), RegoValue::from(r.mfa));
    let mut input = BTreeMap::new();
    input.insert(s("principal"), RegoValue::from(principal));
    input.insert(s("action"), s(r.action));
    input.insert(s("resource"), RegoValue::from(resource));
    input.insert(s("context"), RegoValue::from(context));
    RegoValue::from(input)
}

// ---- CEL ------------------------------------------------------------------------------------

/// The root context, built once: `Context::default()` registers every built-in function (a
/// hash map of boxed closures), so each request gets a child scope holding only its variables.
fn cel_root() -> CelContext<'static> {
    CelContext::default()
}

fn cel_program() -> Program {
    Program::compile(CEL_RULE).expect("the CEL rule compiles")
}

fn cel_allowed(program: &Program, ctx: &CelContext<'_>) -> bool {
    // An evaluation error denies (fail closed).
    matches!(program.execute(ctx), Ok(CelValue::Bool(true)))
}

fn cel_map<const N: usize>(entries: [(&str, CelValue); N]) -> CelValue {
    let map: HashMap<Key, CelValue> = entries
        .into_iter()
        .map(|(k, v)| (Key::from(k), v))
        .collect();
    CelValue::Map(CelMap { map: Arc::new(map) })
}

fn cel_str(s: &str) -> CelValue {
    CelValue::String(Arc::new(s.to_string()))
}

/// The variables of [`plain_json`], built as `cel_interpreter::Value`s.
fn cel_vars(r: &Req) -> [(&'static str, CelValue); 4] {
    let roles = CelValue::List(Arc::new(r.roles.iter().map(|x| cel_str(x)).collect()));
    let mut principal = cel_map([
        ("id", cel_str(r.principal)),
        ("roles", roles),
        ("mfa", CelValue::Bool(r.mfa)),
    ]);
    if let (Some(tenant), CelValue::Map(m)) = (r.tenant, &mut principal) {
        Arc::get_mut(&mut m.map)
            .expect("fresh map")
            .insert(Key::from("tenant"), cel_str(tenant));
    }
    let resource = match r.kind {
        Kind::Route => cel_map([("type", cel_str("Route")), ("id", cel_str(r.resource))]),
        Kind::Tool => {
            let spec = tool(r.resource);
            let mut map = HashMap::with_capacity(4);
            map.insert(Key::from("type"), cel_str("Tool"));
            map.insert(Key::from("id"), cel_str(r.resource));
            map.insert(Key::from("risk"), cel_str(spec.risk));
            if let Some(tenant) = spec.tenant {
                map.insert(Key::from("tenant"), cel_str(tenant));
            }
            CelValue::Map(CelMap { map: Arc::new(map) })
        }
    };
    [
        ("principal", principal),
        ("action", cel_str(r.action)),
        ("resource", resource),
        ("context", cel_map([("mfa", CelValue::Bool(r.mfa))])),
    ]
}

// ---- the variants ---------------------------------------------------------------------------

fn variants() -> Vec<(&'static str, Decide)> {
    let mut out: Vec<(&'static str, Decide)> = Vec::new();

    // 1. cedar/prebuilt: the decision alone.
    let authorizer = Authorizer::new();
    let policies = cedar_policies();
    let types = CedarTypes::new();
    let prebuilt: Vec<(Request, Entities)> =
        REQUESTS.iter().map(|r| cedar_typed(&types, r)).collect();
    out.push((
        "cedar/prebuilt",
        Box::new(move |i| allowed(&authorizer, &policies, &prebuilt[i])),
    ));

    // 2. cedar/typed.
    let authorizer = Authorizer::new();
    let policies = cedar_policies();
    out.push((
        "cedar/typed",
        Box::new(move |i| allowed(&authorizer, &policies, &cedar_typed(&types, &REQUESTS[i]))),
    ));

    // 3. cedar/json.
    let authorizer = Authorizer::new();
    let policies = cedar_policies();
    out.push((
        "cedar/json",
        Box::new(move |i| allowed(&authorizer, &policies, &cedar_json(&REQUESTS[i]))),
    ));

    // 4. palisade: the identity, resource and request facts are what earlier stages hand the
    // authorization stage; `decide` builds the entities and context (through its caches).
    let set = palisade_set();
    let inputs: Vec<PalisadeInput> = REQUESTS.iter().map(palisade_input).collect();
    out.push((
        "palisade",
        Box::new(move |i| palisade_decide(&set, &inputs[i], REQUESTS[i].action)),
    ));

    // 5. rego/native.
    let mut engine = rego_engine();
    out.push((
        "rego/native",
        Box::new(move |i| rego_allowed(&mut engine, rego_input(&REQUESTS[i]))),
    ));

    // 6. rego/json: the same document as a serde_json::Value, converted by regorus
    // (`Value::from(serde_json::Value)`, its serde deserializer; `set_input_json` would parse
    // a string instead).
    let mut engine = rego_engine();
    out.push((
        "rego/json",
        Box::new(move |i| rego_allowed(&mut engine, RegoValue::from(plain_json(&REQUESTS[i])))),
    ));

    // 7. cel/native.
    let program = cel_program();
    let root = cel_root();
    out.push((
        "cel/native",
        Box::new(move |i| {
            let mut ctx = root.new_inner_scope();
            for (name, value) in cel_vars(&REQUESTS[i]) {
                ctx.add_variable_from_value(name, value);
            }
            cel_allowed(&program, &ctx)
        }),
    ));

    // 8. cel/json: variables from serde_json values (cel-interpreter's serde serializer).
    let program = cel_program();
    let root = cel_root();
    out.push((
        "cel/json",
        Box::new(move |i| {
            let mut ctx = root.new_inner_scope();
            if let Json::Object(vars) = plain_json(&REQUESTS[i]) {
                for (name, value) in vars {
                    ctx.add_variable(name, value).expect("serde_json converts");
                }
            }
            cel_allowed(&program, &ctx)
        }),
    ));

    out
}

/// Every variant must give the expected decision on every request before anything is timed.
fn check(variants: &mut [(&'static str, Decide)]) {
    let mut wrong = Vec::new();
    for (i, r) in REQUESTS.iter().enumerate() {
        for (name, decide) in variants.iter_mut() {
            let got = decide(i);
            if got != r.allow {
                wrong.push(format!(
                    "{name} on {} ({}): {} (expected {})",
                    r.name,
                    r.what,
                    verdict(got),
                    verdict(r.allow)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the engines disagree:\n  {}",
        wrong.join("\n  ")
    );
}

fn verdict(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

fn bench(c: &mut Criterion, variants: &mut [(&'static str, Decide)]) {
    let mut group = c.benchmark_group("engines");
    for (name, decide) in variants.iter_mut() {
        for (i, r) in REQUESTS.iter().enumerate() {
            group.bench_function(BenchmarkId::new(*name, r.name), |b| {
                b.iter(|| decide(black_box(i)))
            });
        }
    }
    group.finish();
}

// ---- the summary ----------------------------------------------------------------------------

/// Decisions per timed batch.
const ITERS: u32 = 20_000;
/// Decisions before the first batch.
const WARM_UP: u32 = 2_000;

/// Mean µs per decision of `REQUESTS[i]`: the median of 3 batches of [`ITERS`].
fn mean_us(decide: &mut Decide, i: usize) -> f64 {
    for _ in 0..WARM_UP {
        black_box(decide(black_box(i)));
    }
    let mut batches = [0.0f64; 3];
    for batch in &mut batches {
        let t = Instant::now();
        for _ in 0..ITERS {
            black_box(decide(black_box(i)));
        }
        *batch = t.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS);
    }
    batches.sort_by(f64::total_cmp);
    batches[1]
}

fn summary(variants: &mut [(&'static str, Decide)]) {
    let table: Vec<(&str, Vec<f64>)> = variants
        .iter_mut()
        .map(|(name, decide)| {
            let means = (0..REQUESTS.len()).map(|i| mean_us(decide, i)).collect();
            (*name, means)
        })
        .collect();
    let base = &table[0].1;
    println!(
        "\nengines: mean µs per decision (median of 3 batches of {ITERS}), ×: ratio to {}",
        table[0].0
    );
    for r in &REQUESTS {
        println!("  {:<15} {:<5} {}", r.name, verdict(r.allow), r.what);
    }
    let mut header = format!("{:<15}", "variant");
    for r in &REQUESTS {
        header.push_str(&format!(" {:>17}", r.name));
    }
    println!("{header}");
    for (name, means) in &table {
        let mut line = format!("{name:<15}");
        for (m, b) in means.iter().zip(base) {
            line.push_str(&format!(" {m:>8.2} ({:>5.1}×)", m / b));
        }
        println!("{line}");
    }
}

fn main() {
    let mut variants = variants();
    check(&mut variants);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &mut variants);
    c.final_summary();
    // Not under `cargo test --benches` (criterion's test mode runs each bench once).
    if std::env::args().any(|a| a == "--bench") {
        summary(&mut variants);
    }
}
