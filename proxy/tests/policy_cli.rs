//! `palisade policy who-can | diff | explain` on the seed policies and on edited copies of
//! them: known answers, the diff's exit codes (a CI gate), explain's schema check and
//! `--from-audit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn run(args: &[&str]) -> Output {
    palisade().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The seed policies in a temporary directory, `roles.cedar` edited by replacing `from`.
fn edited_seed(from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "palisade.cedarschema",
        "roles.cedar",
        "abac.cedar",
        "tools.yaml",
    ] {
        let mut text = std::fs::read_to_string(policies().join(name)).unwrap();
        if name == "roles.cedar" {
            assert!(text.contains(from), "`{from}` not in roles.cedar");
            text = text.replacen(from, to, 1);
        }
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn who_can_call_a_high_risk_tool_is_operators_and_admins_with_mfa() {
    let p = policies();
    let out = run(&[
        "policy",
        "who-can",
        "-p",
        p.to_str().unwrap(),
        "--action",
        "call_tool",
        "--resource",
        "run_shell",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("who can call_tool on Tool::\"run_shell\": 18 of "),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("authenticated"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains("admin ")
            && rows[0].contains("REQUIRED")
            && rows[0].ends_with("admin-all")
    );
    assert!(
        rows[1].contains("agent_operator")
            && rows[1].contains("tools:exec")
            && rows[1].ends_with("operator-high-risk-tools")
    );

    let out = run(&[
        "policy",
        "who-can",
        "-p",
        p.to_str().unwrap(),
        "-a",
        "call_tool",
        "-r",
        "Tool::\"run_shell\"",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, (role, policy)) in rows.iter().zip([
        ("admin", "admin-all"),
        ("agent_operator", "operator-high-risk-tools"),
    ]) {
        assert_eq!(row["shape"]["role"], role);
        assert_eq!(row["shape"]["mfa"], "yes");
        assert_eq!(row["needs_mfa"], true);
        assert_eq!(row["policies"], serde_json::json!([policy]));
    }
}

#[test]
fn who_can_refuses_a_resource_the_action_does_not_take() {
    let p = policies();
    let out = run(&[
        "policy",
        "who-can",
        "-p",
        p.to_str().unwrap(),
        "-a",
        "run_agent",
        "-r",
        "Route::\"agent\"",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("(it takes: Agent)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn diff_exits_1_and_names_a_widened_permit() {
    let new = edited_seed(
        "permit (principal in Role::\"viewer\", action == Action::\"a2a_get_task\", resource);",
        "permit (principal in Role::\"viewer\", action in [Action::\"a2a_get_task\", Action::\"a2a_cancel\"], resource);",
    );
    let p = policies();
    let out = run(&[
        "policy",
        "diff",
        p.to_str().unwrap(),
        new.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("MORE PERMISSIVE (denied before, allowed now): 1"),
        "{text}"
    );
    assert!(
        text.contains("LESS PERMISSIVE (allowed before, denied now): 0"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("a2a_cancel"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("viewer"), "{row}");
    assert!(
        row.contains("deny (no permit)") && row.ends_with("allow by viewer-tasks"),
        "{row}"
    );

    let out = run(&[
        "policy",
        "diff",
        p.to_str().unwrap(),
        new.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let more = json["more_permissive"].as_array().unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0]["action"], "a2a_cancel");
    assert_eq!(more[0]["shape"]["role"], "viewer");
    assert_eq!(more[0]["new_policies"], serde_json::json!(["viewer-tasks"]));
}

#[test]
fn diff_exits_0_on_a_narrowing_and_lists_it_as_less_permissive() {
    let new = edited_seed(
        "permit (principal in Role::\"viewer\", action == Action::\"a2a_get_task\", resource);",
        "permit (principal in Role::\"viewer\", action == Action::\"a2a_get_task\", resource)\nwhen { principal.mfa };",
    );
    let p = policies();
    let out = run(&[
        "policy",
        "diff",
        p.to_str().unwrap(),
        new.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("MORE PERMISSIVE (denied before, allowed now): 0"),
        "{text}"
    );
    assert!(
        text.contains("LESS PERMISSIVE (allowed before, denied now): 1"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("a2a_get_task"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("viewer") && row.contains(" no "), "{row}");
    assert!(
        row.contains("allow by viewer-tasks") && row.ends_with("deny (no permit)"),
        "{row}"
    );
}

#[test]
fn diff_exits_2_when_a_directory_does_not_load() {
    let broken = edited_seed(
        "permit (principal in Role::\"admin\"",
        "permit (principal in Rolle::\"admin\"",
    );
    let p = policies();
    let out = run(&[
        "policy",
        "diff",
        p.to_str().unwrap(),
        broken.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("roles.cedar"), "{}", stderr(&out));
    let out = run(&[
        "policy",
        "diff",
        "/nonexistent/policies",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_refuses_an_action_on_a_resource_type_the_schema_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("req.json");
    std::fs::write(
        &file,
        r#"{"principal": {"type": "User", "id": "https://idp|v", "roles": ["viewer"]},
            "action": "run_agent", "resource": "Route::\"agent\""}"#,
    )
    .unwrap();
    let p = policies();
    let out = run(&[
        "policy",
        "explain",
        "-p",
        p.to_str().unwrap(),
        "-r",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("action `run_agent` does not apply to `Route` resources (it takes: Agent)"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("DENY"));
}

#[test]
fn explain_from_audit_rebuilds_the_request_of_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    // Two records as docs/operations.md shows them: an anonymous one, then a viewer denied
    // `http_request` with POST (viewers may only read).
    let anonymous = r#"{"action":"Action::\"http_request\"","bytes_in":0,"bytes_out":231,"client_ip":"127.0.0.1","config_hash":"3f9a","decision":{"allowed":false,"mode":"enforce","policies":[],"policy_set":"main","policy_set_hash":"5f0c"},"duration_ms":0.412,"error_code":"FORBIDDEN","guardrails":[],"hash":"9a1e","method":"GET","path":"/forbid","prev_hash":"77c2","principal":{"auth_method":"anonymous","id":"Anonymous::\"127.0.0.1\"","roles":[],"tenant":null,"type":"Anonymous"},"rate_limit":"not_reached","reason":"forbidden","request_id":"load-16","resource":"Route::\"forbid\"","route":"forbid","seq":17,"status":403,"stream":null,"timestamp":"2026-11-25T21:02:11.532Z","tool_calls":[],"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","upstream_status":null}"#;
    let viewer = r#"{"action":"Action::\"http_request\"","bytes_in":12,"bytes_out":180,"client_ip":"10.1.2.3","config_hash":"3f9a","decision":{"allowed":false,"mode":"enforce","policies":[],"policy_set":"main","policy_set_hash":"5f0c"},"duration_ms":1.5,"error_code":"FORBIDDEN","guardrails":[],"hash":"aa11","method":"POST","path":"/api/items","prev_hash":"9a1e","principal":{"auth_method":"jwt","id":"User::\"https://idp.test|vic\"","roles":["viewer"],"tenant":"acme","type":"User"},"rate_limit":"not_reached","reason":"forbidden","request_id":"req-18","resource":"Route::\"api\"","route":"api","seq":18,"status":403,"stream":null,"timestamp":"2026-11-25T21:02:12.000Z","tool_calls":[],"trace_id":"4bf92f3577b34da6a3ce929d0e0e4737","upstream_status":null}"#;
    std::fs::write(&file, format!("{anonymous}\n{viewer}\n")).unwrap();
    let p = policies();
    let at = format!("{}:2", file.display());
    let out = run(&[
        "policy",
        "explain",
        "-p",
        p.to_str().unwrap(),
        "--from-audit",
        &at,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("decision:   DENY"), "{text}");
    assert!(
        text.contains("principal:  User::\"https://idp.test|vic\""),
        "{text}"
    );
    assert!(text.contains("resource:   Route::\"api\""), "{text}");
    assert!(
        text.contains("audit record: seq 18, request req-18"),
        "{text}"
    );
    assert!(
        text.contains("recorded decision: DENY (same as now)"),
        "{text}"
    );
    assert!(
        text.contains("a different set than these policies"),
        "{text}"
    );
    assert!(text.contains("principal.mfa (assumed false)"), "{text}");

    let out = run(&[
        "policy",
        "explain",
        "-p",
        p.to_str().unwrap(),
        "--from-audit",
        &at,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"]["allowed"], false);
    assert_eq!(json["context"]["method"], "POST");
    assert_eq!(json["context"]["path"], "/api/items");
    assert_eq!(
        json["context"]["time"]["__extn"]["arg"],
        "2026-11-25T21:02:11.998Z"
    );
    assert_eq!(json["audit"]["seq"], 18);
    let user = json["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uid"]["type"] == "User")
        .unwrap();
    assert_eq!(user["attrs"]["roles"], serde_json::json!(["viewer"]));
    assert_eq!(user["attrs"]["tenant"], "acme");
    assert_eq!(user["attrs"]["mfa"], false);
    assert_eq!(
        user["parents"],
        serde_json::json!([{"type": "Role", "id": "viewer"}, {"type": "Tenant", "id": "acme"}])
    );

    // Line 1 (anonymous) and lines that are not there.
    let out = run(&[
        "policy",
        "explain",
        "-p",
        p.to_str().unwrap(),
        "--from-audit",
        &format!("{}:1", file.display()),
    ]);
    assert!(
        stdout(&out).contains("principal:  Anonymous::\"127.0.0.1\""),
        "{}",
        stdout(&out)
    );
    for bad in [
        format!("{}:3", file.display()),
        format!("{}:0", file.display()),
    ] {
        let out = run(&[
            "policy",
            "explain",
            "-p",
            p.to_str().unwrap(),
            "--from-audit",
            &bad,
        ]);
        assert!(!out.status.success());
        assert!(!stderr(&out).is_empty());
    }
}
