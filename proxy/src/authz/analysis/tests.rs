//! who-can and diff on the seed policies, with known answers, and on edited copies of them.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::authz::tests::{policies_dir, seed_set};
use crate::authz::{Mode, Resource};

fn tool(name: &str) -> Resource {
    Resource::parse(&format!("Tool::\"{name}\"")).unwrap()
}

fn shape(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// The seed policies copied to a temporary directory, with `edit` applied to `file`.
fn edited_copy(file: &str, edit: impl Fn(String) -> String) -> (tempfile::TempDir, PolicySet) {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "palisade.cedarschema",
        "roles.cedar",
        "abac.cedar",
        "tools.yaml",
    ] {
        let text = std::fs::read_to_string(policies_dir().join(name)).unwrap();
        let text = if name == file {
            edit(text.clone())
        } else {
            text
        };
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let set = PolicySet::load("new", dir.path(), Mode::Enforce)
        .unwrap_or_else(|e| panic!("edited copy must load: {e:#?}"));
    (dir, set)
}

fn replace_once(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` not in the policy text");
    text.replacen(from, to, 1)
}

#[test]
fn who_can_call_run_shell_needs_mfa_and_the_exec_scope() {
    let set = seed_set();
    let answer = who_can(&set, "call_tool", &tool("run_shell")).unwrap();
    let rows: Vec<_> = answer
        .rows
        .iter()
        .map(|r| (r.shape.clone(), r.needs_mfa, r.policies.clone()))
        .collect();
    let expect = |role: &str, policy: &str| {
        (
            shape(&[
                ("type", "authenticated"),
                ("role", role),
                ("tenant", "*"),
                ("mfa", "yes"),
                ("scopes", "tools:exec"),
                ("network", "*"),
                ("method", "*"),
                ("time", "*"),
            ]),
            true,
            vec![policy.to_string()],
        )
    };
    assert_eq!(
        rows,
        [
            expect("admin", "admin-all"),
            expect("agent_operator", "operator-high-risk-tools")
        ]
    );
    // Tenants (none, acme, other) × the three times: every one of them.
    assert_eq!(answer.permitted, 2 * 3 * 3);
    assert!(answer.text().contains("REQUIRED"), "{}", answer.text());
}

#[test]
fn who_can_call_a_tenant_tool_is_that_tenant_only() {
    let set = seed_set();
    let answer = who_can(&set, "call_tool", &tool("acme_crm_lookup")).unwrap();
    let roles: Vec<(&str, &str, &str)> = answer
        .rows
        .iter()
        .map(|r| {
            (
                r.shape["role"].as_str(),
                r.shape["tenant"].as_str(),
                r.shape["mfa"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("admin", "acme", "*"),
            ("agent_operator", "acme", "*"),
            ("developer", "acme", "*"),
            ("user", "acme", "*"),
        ]
    );
    assert!(answer.rows.iter().all(|r| !r.needs_mfa));
}

#[test]
fn who_can_reach_admin_endpoints_is_admins_from_the_operations_networks() {
    let set = seed_set();
    let route = Resource::parse("Route::\"admin\"").unwrap();
    let answer = who_can(&set, "admin", &route).unwrap();
    let networks: Vec<(&str, &str)> = answer
        .rows
        .iter()
        .map(|r| (r.shape["role"].as_str(), r.shape["network"].as_str()))
        .collect();
    assert_eq!(networks, [("admin", "loopback"), ("admin", "10.0.0.0/8")]);
    // `outside` and `forwarded` are in the domain, and denied.
    let labels: Vec<&str> = answer
        .domain
        .networks
        .iter()
        .map(|n| n.label.as_str())
        .collect();
    assert_eq!(labels, ["loopback", "10.0.0.0/8", "outside", "forwarded"]);
}

#[test]
fn who_can_refuses_an_action_on_the_wrong_resource_type() {
    let set = seed_set();
    let route = Resource::parse("Route::\"agent\"").unwrap();
    let err = who_can(&set, "run_agent", &route).unwrap_err();
    assert!(err.contains("takes: Agent"), "{err}");
}

#[test]
fn diff_of_a_set_with_itself_is_empty() {
    let set = seed_set();
    let d = diff(&set, &set).unwrap();
    assert!(d.more_permissive.is_empty() && d.less_permissive.is_empty());
    assert!(d.evaluated > 1000, "{}", d.evaluated);
}

#[test]
fn diff_names_a_widened_permit_as_more_permissive() {
    let old = seed_set();
    let (_dir, new) = edited_copy("roles.cedar", |t| {
        replace_once(
            t,
            "when { resource.risk == \"low\" };\n\n@id(\"user-http\")",
            "when { resource.risk == \"low\" || resource.risk == \"medium\" };\n\n@id(\"user-http\")",
        )
    });
    let d = diff(&old, &new).unwrap();
    assert!(d.more_permissive());
    assert!(d.less_permissive.is_empty(), "{}", d.text());
    // Users may now use and list every medium-risk tool: delegate_to_agent, read_file,
    // send_email (in business hours, use/call), by user-tools.
    let mut widened: Vec<(String, String)> = d
        .more_permissive
        .iter()
        .map(|c| (c.action.clone(), c.resource.clone()))
        .collect();
    widened.dedup();
    for action in ["call_tool", "list_tools", "use_tool"] {
        for t in ["delegate_to_agent", "read_file", "send_email"] {
            assert!(
                widened.contains(&(action.to_string(), format!("Tool::\"{t}\""))),
                "{action} {t} missing:\n{}",
                d.text()
            );
        }
    }
    assert_eq!(widened.len(), 9, "{}", d.text());
    for c in &d.more_permissive {
        assert_eq!(c.shape["role"], "user");
        assert_eq!(c.new_policies, ["user-tools"]);
        assert!(c.old_policies.is_empty(), "denied by default before");
    }
    assert!(d.text().contains("MORE PERMISSIVE"));
}

#[test]
fn diff_lists_a_narrowed_permit_as_less_permissive_only() {
    let old = seed_set();
    let (_dir, new) = edited_copy("roles.cedar", |t| {
        replace_once(
            t,
            "when { context.method == \"GET\" || context.method == \"HEAD\" };",
            "when { context.method == \"GET\" };",
        )
    });
    let d = diff(&old, &new).unwrap();
    assert!(!d.more_permissive(), "{}", d.text());
    let rows: Vec<(&str, &str, &str, &str)> = d
        .less_permissive
        .iter()
        .map(|c| {
            (
                c.action.as_str(),
                c.shape["role"].as_str(),
                c.shape["method"].as_str(),
                c.shape["tenant"].as_str(),
            )
        })
        .collect();
    // Every route the domain has (`other`, none named by the seed policies).
    assert_eq!(rows, [("http_request", "viewer", "HEAD", "*")]);
    assert_eq!(d.less_permissive[0].old_policies, ["viewer-read"]);
    assert!(d.less_permissive[0].new_policies.is_empty());
}

#[test]
fn domain_draws_values_from_the_policies() {
    let set = seed_set();
    let d = domain_of(&[&set], "call_tool");
    let roles: Vec<_> = d.roles.iter().map(|r| r.as_deref()).collect();
    assert_eq!(
        roles,
        [
            None,
            Some("admin"),
            Some("agent_operator"),
            Some("developer"),
            Some("user"),
            Some("viewer")
        ]
    );
    let tenants: Vec<_> = d.tenants.iter().map(|t| t.as_deref()).collect();
    assert_eq!(tenants, [None, Some("acme"), Some("other")]);
    assert_eq!(
        d.scopes,
        [Vec::<String>::new(), vec!["tools:exec".to_string()]]
    );
    // No policy on call_tool reads the address or the method.
    assert_eq!(d.networks.len(), 1);
    assert_eq!(d.methods, ["POST"]);
    assert_eq!(d.times.len(), 3);
    let http = domain_of(&[&set], "http_request");
    assert_eq!(http.methods, ["POST", "GET", "HEAD"]);
    assert_eq!(http.mfa, [false]);
    assert!(Path::new(&policies_dir()).exists());
}
