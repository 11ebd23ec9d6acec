//! Unit tests: loading, strict validation errors, decisions per role and per ABAC rule built
//! from `Principal` values, slicing agrees with whole-set evaluation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::authn::{AuthMethod, Principal, PrincipalKind};

pub(crate) fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

pub(crate) fn seed_set() -> PolicySet {
    PolicySet::load("main", &policies_dir(), Mode::Enforce)
        .unwrap_or_else(|e| panic!("policies/ must load: {e:#?}"))
}

pub(crate) fn user(roles: &[&str]) -> Principal {
    let mut p = Principal::new(
        PrincipalKind::User,
        "https://idp.test|alice",
        AuthMethod::Jwt,
    );
    p.roles = roles.iter().map(|r| r.to_string()).collect();
    p.normalize()
}

/// Tuesday 2026-01-06 10:00 UTC: inside business hours.
pub(crate) fn facts(method: &str) -> RequestFacts {
    RequestFacts {
        method: method.into(),
        path: "/x".into(),
        ip: "127.0.0.1".parse::<IpAddr>().unwrap(),
        forwarded: false,
        time: time::macros::datetime!(2026-01-06 10:00 UTC),
        tls: false,
        request_bytes: 0,
        route: "r".into(),
        protocol: "http",
    }
}

fn decide(
    set: &PolicySet,
    p: Option<&Principal>,
    action: &str,
    resource: Resource,
    f: &RequestFacts,
) -> Decision {
    decide_args(set, p, action, resource, f, None)
}

fn decide_args(
    set: &PolicySet,
    p: Option<&Principal>,
    action: &str,
    resource: Resource,
    f: &RequestFacts,
    arguments: Option<&serde_json::Value>,
) -> Decision {
    let req = AuthzRequest {
        principal: p,
        action,
        resource: &resource,
        facts: f,
        arguments,
    };
    let d = set.decide(&req);
    // The sliced decision must equal the whole set's, and the request must fit the schema.
    let built = set.build(&req).unwrap();
    let (allowed, reasons, errors) =
        super::slice::tests::outcome(&built.request, set.policies(), built.entities());
    assert_eq!(
        d.allowed, allowed,
        "sliced and whole-set decisions differ for {action} {resource:?}"
    );
    assert_eq!(d.policies, reasons);
    assert_eq!(d.errors, errors, "sliced and whole-set errors differ");
    let complete = set.build_complete(&req).unwrap();
    assert_eq!(
        set.evaluate(&complete).allowed,
        d.allowed,
        "leaving unread context keys out changes nothing"
    );
    cedar_policy::Request::new(
        complete.request.principal().unwrap().clone(),
        complete.request.action().unwrap().clone(),
        complete.request.resource().unwrap().clone(),
        complete.request.context().unwrap().clone(),
        Some(set.schema()),
    )
    .unwrap_or_else(|e| panic!("request does not fit the schema: {e}"));
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    d
}

fn tool(name: &str) -> Resource {
    Resource::new(ResourceKind::Tool, name)
}
fn agent() -> Resource {
    Resource::new(ResourceKind::Agent, "assistant")
}

#[test]
fn seed_policies_load_strictly_with_ids_and_a_hash() {
    let set = seed_set();
    assert!(set.len() >= 15, "{}", set.len());
    assert_eq!(set.hash().len(), 64);
    let src = set.source("tenant-isolation").expect("annotated id");
    assert!(src.file.ends_with("abac.cedar"), "{src:?}");
    assert!(src.line > 1);
    assert!(set.catalog().tools.contains_key("run_shell"));
}

#[test]
fn roles_run_agents_as_the_seed_policies_say() {
    let set = seed_set();
    let f = facts("POST");
    for (role, allowed) in [
        ("admin", true),
        ("developer", true),
        ("agent_operator", true),
        ("user", true),
        ("viewer", false),
    ] {
        let p = user(&[role]);
        let d = decide(&set, Some(&p), "run_agent", agent(), &f);
        assert_eq!(d.allowed, allowed, "{role}: {d:?}");
    }
    let nobody = user(&[]);
    let d = decide(&set, Some(&nobody), "run_agent", agent(), &f);
    assert!(!d.allowed && d.policies.is_empty());
    let d = decide(&set, None, "run_agent", agent(), &f);
    assert!(!d.allowed);
    assert_eq!(d.principal, "Anonymous::\"127.0.0.1\"");
}

#[test]
fn decisions_name_the_deciding_policies_and_the_set() {
    let set = seed_set();
    let p = user(&["user"]);
    let d = decide(&set, Some(&p), "run_agent", agent(), &facts("POST"));
    assert_eq!(d.policies, ["user-agents"]);
    assert_eq!(&*d.policy_set_hash, set.hash());
    assert_eq!(d.mode, Mode::Enforce);
    assert_eq!(d.action, "Action::\"run_agent\"");
    assert_eq!(d.resource, "Agent::\"assistant\"");
}

#[test]
fn tool_risk_by_role() {
    let set = seed_set();
    let f = facts("POST");
    let user_p = user(&["user"]);
    let dev = user(&["developer"]);
    assert!(decide(&set, Some(&user_p), "call_tool", tool("search_docs"), &f).allowed);
    assert!(!decide(&set, Some(&user_p), "call_tool", tool("read_file"), &f).allowed);
    assert!(decide(&set, Some(&dev), "call_tool", tool("read_file"), &f).allowed);
    assert!(!decide(&set, Some(&dev), "call_tool", tool("write_file"), &f).allowed);
    let viewer = user(&["viewer"]);
    assert!(decide(&set, Some(&viewer), "list_tools", tool("search_docs"), &f).allowed);
    assert!(!decide(&set, Some(&viewer), "call_tool", tool("search_docs"), &f).allowed);
}

/// The policies a decision evaluates for `resource`: the sliced set, pruned when it is a
/// catalogued tool.
fn evaluated(set: &PolicySet, p: &Principal, action: &str, resource: Resource) -> Vec<String> {
    let f = facts("POST");
    let req = AuthzRequest {
        principal: Some(p),
        action,
        resource: &resource,
        facts: &f,
        arguments: None,
    };
    let built = set.build(&req).unwrap();
    let slice = set.slices.candidates(
        built.action_id(),
        built.resource(),
        built.principal_side(),
        built.tool_probe(),
    );
    let mut ids: Vec<String> = slice
        .iter()
        .flat_map(|s| s.policies())
        .map(|p| p.id().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_catalogued_tool_is_decided_without_the_policies_its_entity_rules_out() {
    let set = seed_set();
    let p = user(&["user"]);
    // get_time: low risk, tags [read, builtin], no tenant, no required credentials. Of the
    // forbids for every tool only required-credentials tests the principal before the tool.
    assert_eq!(
        evaluated(&set, &p, "call_tool", tool("get_time")),
        ["required-credentials", "user-tools"]
    );
    // An uncatalogued tool is not pruned (its name is the caller's), so every forbid stays.
    assert_eq!(
        evaluated(&set, &p, "call_tool", tool("no_such_tool")),
        [
            "business-hours",
            "high-risk-needs-mfa",
            "no-parent-segments",
            "no-system-paths",
            "required-credentials",
            "tenant-isolation",
            "uncatalogued-tools",
            "user-tools"
        ]
    );
    // The forbids a tool's attributes make live stay: a tenant's tool keeps tenant isolation,
    // a filesystem tool the path rules.
    assert_eq!(
        evaluated(&set, &p, "call_tool", tool("acme_crm_lookup")),
        ["required-credentials", "tenant-isolation", "user-tools"]
    );
    assert_eq!(
        evaluated(&set, &user(&["developer"]), "call_tool", tool("read_file")),
        [
            "developer-tools",
            "no-parent-segments",
            "no-system-paths",
            "required-credentials"
        ]
    );
}

#[test]
fn high_risk_tools_need_mfa() {
    let set = seed_set();
    let f = facts("POST");
    let mut op = user(&["agent_operator"]);
    let d = decide(&set, Some(&op), "call_tool", tool("write_file"), &f);
    assert!(!d.allowed);
    assert_eq!(d.policies, ["high-risk-needs-mfa"]);
    op.mfa = true;
    assert!(decide(&set, Some(&op), "call_tool", tool("write_file"), &f).allowed);
}

#[test]
fn required_credentials_come_from_scopes() {
    let set = seed_set();
    let f = facts("POST");
    let mut op = user(&["agent_operator"]);
    op.mfa = true;
    let d = decide(&set, Some(&op), "call_tool", tool("run_shell"), &f);
    assert_eq!(d.policies, ["required-credentials"]);
    op.scopes = vec!["tools:exec".into()];
    assert!(decide(&set, Some(&op), "call_tool", tool("run_shell"), &f).allowed);
}

#[test]
fn tenant_isolation() {
    let set = seed_set();
    let f = facts("POST");
    let mut p = user(&["user"]);
    let d = decide(&set, Some(&p), "call_tool", tool("acme_crm_lookup"), &f);
    assert_eq!(d.policies, ["tenant-isolation"]);
    p.tenant = Some("globex".into());
    assert!(!decide(&set, Some(&p), "call_tool", tool("acme_crm_lookup"), &f).allowed);
    p.tenant = Some("acme".into());
    assert!(decide(&set, Some(&p), "call_tool", tool("acme_crm_lookup"), &f).allowed);
}

#[test]
fn business_hours() {
    let set = seed_set();
    let dev = user(&["developer"]);
    let mut f = facts("POST");
    assert!(decide(&set, Some(&dev), "call_tool", tool("send_email"), &f).allowed);
    f.time = time::macros::datetime!(2026-01-06 19:30 UTC);
    assert_eq!(
        decide(&set, Some(&dev), "call_tool", tool("send_email"), &f).policies,
        ["business-hours"]
    );
    f.time = time::macros::datetime!(2026-01-10 10:00 UTC); // a Saturday
    assert!(!decide(&set, Some(&dev), "call_tool", tool("send_email"), &f).allowed);
}

#[test]
fn admin_ip_allow_list() {
    let set = seed_set();
    let admin = user(&["admin"]);
    let route = Resource::new(ResourceKind::Route, "admin-api");
    let mut f = facts("GET");
    assert!(decide(&set, Some(&admin), "admin", route.clone(), &f).allowed);
    f.ip = "10.1.2.3".parse().unwrap();
    assert!(decide(&set, Some(&admin), "admin", route.clone(), &f).allowed);
    f.ip = "203.0.113.9".parse().unwrap();
    let d = decide(&set, Some(&admin), "admin", route, &f);
    assert_eq!(d.policies, ["admin-ip-allowlist"]);
}

#[test]
fn tool_arguments_are_visible_to_policies() {
    let set = seed_set();
    let dev = user(&["developer"]);
    let f = facts("POST");
    let ok = serde_json::json!({"path": "/srv/data.txt"});
    let etc = serde_json::json!({"path": "/etc/shadow", "lines": 3});
    let call = |arguments| {
        decide_args(
            &set,
            Some(&dev),
            "call_tool",
            tool("read_file"),
            &f,
            arguments,
        )
    };
    assert!(call(Some(&ok)).allowed);
    assert_eq!(call(Some(&etc)).policies, ["no-system-paths"]);
    // Calls share the caller's store without arguments; each adds its own to a copy.
    for (arguments, allowed) in [(Some(&ok), true), (None, true), (Some(&etc), false)] {
        assert_eq!(call(arguments).allowed, allowed, "{arguments:?}");
    }
}

#[test]
fn path_arguments_reach_policies_normalized() {
    let set = seed_set();
    let dev = user(&["developer"]);
    let f = facts("POST");
    let call = |tool_name: &str, path: &str| {
        let args = serde_json::json!({"path": path});
        decide_args(
            &set,
            Some(&dev),
            "call_tool",
            tool(tool_name),
            &f,
            Some(&args),
        )
    };
    for (path, policies) in [
        ("//etc/passwd", vec!["no-system-paths"]),
        ("/etc//./passwd", vec!["no-system-paths"]),
        (
            "/tmp/../etc/passwd",
            vec!["no-parent-segments", "no-system-paths"],
        ),
        (
            "/../../etc/shadow",
            vec!["no-parent-segments", "no-system-paths"],
        ),
        ("/etc", vec!["no-system-paths"]),
        ("/root/.ssh/id_ed25519", vec!["no-system-paths"]),
        ("/proc/self/root/etc/passwd", vec!["no-system-paths"]),
        ("/proc/1/root", vec!["no-system-paths"]),
        ("//proc//self/root//etc/passwd", vec!["no-system-paths"]),
        ("/proc/self/cwd/x", vec!["no-system-paths"]),
        ("/proc/self/root/../etc/passwd", vec!["no-parent-segments"]),
        // Relative: `path` is a catalogued path argument of read_file.
        ("./data/../../etc/passwd", vec!["no-parent-segments"]),
        ("../etc/passwd", vec!["no-parent-segments"]),
    ] {
        let d = call("read_file", path);
        assert!(!d.allowed, "{path} allowed");
        let mut got = d.policies.clone();
        got.sort();
        assert_eq!(got, policies, "{path}");
    }
    for path in [
        "//srv//data/x.txt",
        "/srv/./data/x.txt",
        "data/x.txt",
        "/etcetera/x",
    ] {
        assert!(call("read_file", path).allowed, "{path} refused");
    }
}

#[test]
fn uncatalogued_tools_are_admin_only() {
    let set = seed_set();
    let f = facts("POST");
    let d = decide(
        &set,
        Some(&user(&["developer"])),
        "use_tool",
        tool("mystery"),
        &f,
    );
    assert!(!d.allowed);
    let mut admin = user(&["admin"]);
    admin.mfa = true; // unknown tools count as high risk
    assert!(decide(&set, Some(&admin), "use_tool", tool("mystery"), &f).allowed);
}

#[test]
fn viewer_http_is_read_only() {
    let set = seed_set();
    let v = user(&["viewer"]);
    let route = Resource::new(ResourceKind::Route, "api");
    assert!(decide(&set, Some(&v), "http_request", route.clone(), &facts("GET")).allowed);
    assert!(!decide(&set, Some(&v), "http_request", route, &facts("POST")).allowed);
}

mod loading;

#[test]
fn cached_contexts_follow_every_value_policies_read() {
    // Contexts are cached by the values policies read (`ip`, `forwarded`, `hour`, `weekday`,
    // `mfa`): going back and forth between values must never reuse the other value's context.
    let set = seed_set();
    let admin = user(&["admin"]);
    let route = Resource::new(ResourceKind::Route, "admin-api");
    let mut f = facts("GET");
    for _ in 0..2 {
        f.ip = "127.0.0.1".parse().unwrap();
        f.forwarded = false;
        assert!(decide(&set, Some(&admin), "admin", route.clone(), &f).allowed);
        f.forwarded = true;
        assert!(!decide(&set, Some(&admin), "admin", route.clone(), &f).allowed);
        f.forwarded = false;
        f.ip = "203.0.113.9".parse().unwrap();
        assert!(!decide(&set, Some(&admin), "admin", route.clone(), &f).allowed);
    }
    let mut op = user(&["agent_operator"]);
    for _ in 0..2 {
        op.mfa = false;
        assert!(!decide(&set, Some(&op), "call_tool", tool("write_file"), &f).allowed);
        op.mfa = true;
        assert!(decide(&set, Some(&op), "call_tool", tool("write_file"), &f).allowed);
    }
    // A policy reading a per-request key (`path`) turns the cache off and still decides right.
    let mut files = PolicyFiles::read(&policies_dir()).unwrap();
    files.policies.push((
        PathBuf::from("path.cedar"),
        "@id(\"no-secrets\")\nforbid (principal, action == Action::\"http_request\", resource)\nwhen { context.path like \"/secret*\" };\n".into(),
    ));
    let set = PolicySet::from_files("main", &files, Mode::Enforce).unwrap();
    let u = user(&["user"]);
    let api = Resource::new(ResourceKind::Route, "api");
    for _ in 0..2 {
        f.path = "/public".into();
        assert!(decide(&set, Some(&u), "http_request", api.clone(), &f).allowed);
        f.path = "/secret/x".into();
        assert_eq!(
            decide(&set, Some(&u), "http_request", api.clone(), &f).policies,
            ["no-secrets"]
        );
    }
}

proptest::proptest! {
    /// A policy id's text in a decision is Cedar's display of it, whatever the id holds.
    #[test]
    fn policy_id_text_is_cedars_display(
        id in proptest::prop_oneof!["[\\x00-\\x7f]{0,16}", proptest::prelude::any::<String>()]
    ) {
        let id = cedar_policy::PolicyId::new(&id);
        proptest::prop_assert_eq!(super::policy_id_text(&id), id.to_string());
    }
}

#[test]
fn policy_id_text_escapes_as_cedar_does() {
    for raw in [
        "policy0",
        "a b/c.cedar#3",
        "quote\"d",
        "it's",
        "back\\slash",
        "tab\there",
        "\u{301}x",
        "é",
    ] {
        let id = cedar_policy::PolicyId::new(raw);
        assert_eq!(super::policy_id_text(&id), id.to_string(), "{raw:?}");
    }
}
