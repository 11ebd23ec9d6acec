//! Loading and validating policy sets: strict errors with file and line, reload keeping the
//! last good set, config validation, the seed policy tests.

use super::*;

fn write_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn seed_schema() -> String {
    std::fs::read_to_string(policies_dir().join("palisade.cedarschema")).unwrap()
}

#[test]
fn validation_errors_carry_file_line_and_message() {
    let bad = "// a comment\n\n@id(\"typo\")\npermit (principal, action == Action::\"call_tool\", resource)\nwhen { resource.rsik == \"low\" };\n";
    let dir = write_dir(&[("s.cedarschema", &seed_schema()), ("bad.cedar", bad)]);
    let errors = PolicySet::load("t", dir.path(), Mode::Enforce)
        .err()
        .expect("invalid");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert!(e.file.ends_with("bad.cedar"), "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(
        e.message.contains("typo") && e.message.contains("rsik"),
        "{e}"
    );
}

#[test]
fn deeply_nested_policies_are_refused_before_the_parser_recurses() {
    // 200,000 levels would overflow the parser's stack (and abort the process) if parsed.
    let deep = format!(
        "// ((( in a comment don't count\n@id(\"deep\")\npermit (principal, action, resource)\nwhen {{ {}true{} }};\n",
        "(".repeat(200_000),
        ")".repeat(200_000)
    );
    let dir = write_dir(&[("s.cedarschema", &seed_schema()), ("deep.cedar", &deep)]);
    let errors = PolicySet::load("t", dir.path(), Mode::Enforce)
        .err()
        .expect("refused");
    let e = &errors[0];
    assert!(e.file.ends_with("deep.cedar"), "{e}");
    // The `{` of `when` (column 6) is level 1, so the 128th `(` is the first too deep.
    assert_eq!((e.line, e.column), (Some(4), Some(8 + 127)), "{e}");
    assert!(e.message.contains("nested more than 128 deep"), "{e}");
    // Brackets in strings and comments, and ordinary nesting, are fine.
    let fine = "// (((((\n@id(\"ok\")\npermit (principal, action, resource)\nwhen { ((((true)))) && \"((((\" == \"(((\\\"((\" };\n";
    let dir = write_dir(&[("s.cedarschema", &seed_schema()), ("ok.cedar", fine)]);
    assert!(PolicySet::load("t", dir.path(), Mode::Enforce).is_ok());
}

#[test]
fn parse_errors_and_duplicate_ids_are_reported() {
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "a.cedar",
            "@id(\"x\")\npermit (principal, action, resource);\n",
        ),
        (
            "b.cedar",
            "@id(\"x\")\npermit (principal, action, resource);\n\npermit (principal,\n",
        ),
    ]);
    let errors = PolicySet::load("t", dir.path(), Mode::Enforce)
        .err()
        .expect("invalid");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("b.cedar:") && e.contains("unexpected")),
        "{text:#?}"
    );
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "a.cedar",
            "@id(\"x\")\npermit (principal, action, resource);\n",
        ),
        (
            "b.cedar",
            "\n\n@id(\"x\")\nforbid (principal, action, resource);\n",
        ),
    ]);
    let errors = PolicySet::load("t", dir.path(), Mode::Enforce)
        .err()
        .expect("invalid");
    assert_eq!(
        errors[0].to_string().split(": ").nth(1),
        Some("policy id `x` is used twice")
    );
    assert_eq!(errors[0].line, Some(3));
}

#[test]
fn policies_without_id_are_named_by_file_and_line() {
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "p.cedar",
            "\npermit (principal, action == Action::\"run_agent\", resource);\n",
        ),
    ]);
    let set = PolicySet::load("t", dir.path(), Mode::Shadow).unwrap();
    assert!(set.source("p.cedar:2").is_some());
    let d = set.decide(&AuthzRequest {
        principal: None,
        action: "run_agent",
        resource: &agent(),
        facts: &facts("POST"),
        arguments: None,
    });
    assert!(d.allowed && !d.blocks());
    assert_eq!(d.policies, ["p.cedar:2"]);
}

#[test]
fn shadow_denials_never_block() {
    let dir = write_dir(&[("s.cedarschema", &seed_schema())]);
    let set = PolicySet::load("next", dir.path(), Mode::Shadow).unwrap();
    let d = set.decide(&AuthzRequest {
        principal: None,
        action: "run_agent",
        resource: &agent(),
        facts: &facts("POST"),
        arguments: None,
    });
    assert!(!d.allowed);
    assert!(!d.blocks());
}

#[test]
fn reload_keeps_the_last_good_set() {
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "p.cedar",
            "@id(\"all\")\npermit (principal, action, resource);\n",
        ),
    ]);
    let spec = AuthzSpec {
        policy_sets: vec![PolicySetSpec {
            name: "main".into(),
            path: dir.path().display().to_string(),
            mode: ModeSpec::Enforce,
        }],
        reload_interval: std::time::Duration::ZERO,
        step_up: Default::default(),
    };
    let authz = Authz::from_spec(&spec, Vec::new()).unwrap().unwrap();
    let first = authz.primary().hash().to_string();
    assert_eq!(
        authz.reload(),
        vec![("main".to_string(), ReloadOutcome::Unchanged)]
    );

    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action, resource) when { nope };",
    )
    .unwrap();
    let outcome = authz.reload();
    assert!(
        matches!(&outcome[0].1, ReloadOutcome::Failed(e) if e[0].file.ends_with("p.cedar")),
        "{outcome:?}"
    );
    assert_eq!(authz.primary().hash(), first, "the last good set stays");

    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"none\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let outcome = authz.reload();
    assert!(
        matches!(&outcome[0].1, ReloadOutcome::Reloaded(h) if *h != first),
        "{outcome:?}"
    );
    assert!(authz.primary().source("none").is_some());

    // A poll takes a change only when the next poll reads the same files: a file caught
    // half-written (here: cut between policies, still valid) is not applied on first sight.
    let applied = authz.primary().hash().to_string();
    let unchanged = vec![("main".to_string(), ReloadOutcome::Unchanged)];
    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"none\")\nforbid (principal, action, resource);\n@id(\"all\")\n",
    )
    .unwrap();
    assert_eq!(
        authz.reload_sets(true),
        unchanged,
        "a half-written file, first sight"
    );
    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"all\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    assert_eq!(
        authz.reload_sets(true),
        unchanged,
        "written on: another first sight"
    );
    assert_eq!(authz.primary().hash(), applied, "nothing applied meanwhile");
    let outcome = authz.reload_sets(true);
    assert!(
        matches!(&outcome[0].1, ReloadOutcome::Reloaded(h) if *h != applied),
        "the same files on the next poll: {outcome:?}"
    );
    assert!(authz.primary().source("all").is_some());
}

#[test]
fn a_schema_without_a_route_action_is_refused() {
    let schema = seed_schema().replace("action run_agent in", "action run_agent_renamed in");
    let dir = write_dir(&[("s.cedarschema", &schema)]);
    let spec = AuthzSpec {
        policy_sets: vec![PolicySetSpec {
            name: "main".into(),
            path: dir.path().display().to_string(),
            mode: ModeSpec::Enforce,
        }],
        reload_interval: std::time::Duration::ZERO,
        step_up: Default::default(),
    };
    let target = Target {
        action: "run_agent".into(),
        resource: agent(),
    };
    let errors = Authz::from_spec(&spec, vec![target]).err().unwrap();
    assert!(errors[0].1.contains("no action `run_agent`"), "{errors:?}");
}

#[test]
fn seed_policy_tests_pass() {
    let set = seed_set();
    let files = runtests::find_test_files(&policies_dir().join("tests"));
    assert!(!files.is_empty());
    let mut n = 0;
    for file in files {
        for outcome in runtests::run_file(&set, &file).unwrap() {
            n += 1;
            assert!(
                outcome.failure.is_none(),
                "{}: {}: {:?}",
                outcome.file.display(),
                outcome.name,
                outcome.failure
            );
        }
    }
    assert!(n >= 10, "{n} cases");
}

#[test]
fn builtin_is_the_seed_directory() {
    let builtin = PolicySet::load("main", Path::new(load::BUILTIN), Mode::Enforce).unwrap();
    assert_eq!(builtin.hash(), seed_set().hash());
}

#[test]
fn config_validation_reports_policy_errors_under_the_field_path() {
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "p.cedar",
            "\n@id(\"x\")\npermit (principal, action, resource) when { principal.nope };\n",
        ),
    ]);
    let yaml = format!(
        "authorization:\n  policy_sets:\n    - path: \"{}\"\n    - name: other\n      path: \"{}\"\n",
        dir.path().display(),
        dir.path().display()
    );
    let errors = crate::config::Config::from_yaml(&yaml, Vec::new())
        .expect_err("invalid")
        .field_errors();
    let at: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(
        at.contains(&"authorization.policy_sets"),
        "two enforcing sets: {errors:?}"
    );
    let policy = errors
        .iter()
        .find(|e| e.path == "authorization.policy_sets[0].path")
        .expect("the broken policy is reported");
    assert!(policy.message.contains("p.cedar:3:"), "{}", policy.message);

    let route = "upstreams: {u: {address: \"127.0.0.1:1\"}}\nroutes:\n  - name: r\n    match: {path_prefix: /}\n    upstream: u\n    authorization:\n      rules:\n        - {action: run_agent, resource: 'Nope::\"x\"', methods: [get]}\n";
    let errors = crate::config::Config::from_yaml(route, Vec::new())
        .expect_err("invalid")
        .field_errors();
    let at: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(
        at.contains(&"routes[0].authorization.rules[0].resource"),
        "{errors:?}"
    );
    assert!(
        at.contains(&"routes[0].authorization.rules[0].methods[0]"),
        "{errors:?}"
    );
}

#[test]
fn action_groups_in_policies_resolve() {
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "p.cedar",
            "@id(\"any\")\npermit (principal, action in Action::\"any\", resource);\n",
        ),
    ]);
    let set = PolicySet::load("t", dir.path(), Mode::Enforce).unwrap();
    let d = decide(&set, Some(&user(&[])), "run_agent", agent(), &facts("POST"));
    assert!(d.allowed, "{d:?}");
    // Unused groups: the request carries no action entities, and `in [...]` is equality.
    let seed = seed_set();
    let d = decide(
        &seed,
        Some(&user(&["developer"])),
        "call_tool",
        tool("search_docs"),
        &facts("POST"),
    );
    assert_eq!(d.policies, ["developer-tools"]);
}

#[test]
fn principal_entities_are_cached_by_identity() {
    let set = seed_set();
    let f = facts("POST");
    let mut p = user(&["user"]);
    assert!(decide(&set, Some(&p), "run_agent", agent(), &f).allowed);
    // Same id, different roles: a different entity, not the cached one.
    p.roles = vec!["viewer".into()];
    assert!(!decide(&set, Some(&p), "run_agent", agent(), &f).allowed);
    p.roles = vec!["user".into()];
    assert!(decide(&set, Some(&p), "run_agent", agent(), &f).allowed);
}

#[test]
fn sighup_reloads_the_policies() {
    let dir = write_dir(&[
        ("s.cedarschema", &seed_schema()),
        (
            "p.cedar",
            "@id(\"a\")\npermit (principal, action, resource);\n",
        ),
    ]);
    let spec = AuthzSpec {
        policy_sets: vec![PolicySetSpec {
            name: "main".into(),
            path: dir.path().display().to_string(),
            mode: ModeSpec::Enforce,
        }],
        reload_interval: std::time::Duration::ZERO, // no polling: only the signal reloads
        step_up: Default::default(),
    };
    let authz = std::sync::Arc::new(Authz::from_spec(&spec, Vec::new()).unwrap().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = crate::telemetry::Metrics::new(prometheus::Registry::new()).unwrap();
    authz.watch(runtime.handle(), metrics.clone(), true);
    let before = authz.primary().hash().to_string();
    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"b\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    // SAFETY: raising a signal the runtime has a handler for.
    unsafe { libc::raise(libc::SIGHUP) };
    // The reload counts its success after it stored the new set: wait for the count, the
    // last thing it does (waiting for the set raced with the count).
    let reloads = metrics.policy_reloads.with_label_values(&["success"]);
    runtime.block_on(async {
        for _ in 0..500 {
            if reloads.get() > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("SIGHUP did not reload");
    });
    assert_ne!(authz.primary().hash(), before);
    assert!(authz.primary().source("b").is_some());
    assert_eq!(reloads.get(), 1);
}
