//! The policy studio (`docs/policy-studio.md`) in real headless Chromium, driven over
//! WebDriver: the page served by a whole in-process proxy's admin listener, a denied request
//! sent through the proxy first so the audit trail has one to explain.
//!
//! Also browser sessions (`sessions.rs`): sign-in at the real OpenID provider and an AG-UI run
//! by the official client from the page.
//!
//! Needs `chromium` and `chromium-driver` (tests/run.sh installs them); fails, never skips,
//! without them. `PALISADE_UPDATE_SCREENSHOTS=1` writes the screenshots to `docs/studio/`.

mod sessions;

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_e2e::webdriver::{Browser, ChromeDriver};
use palisade_e2e::{client, eventually, upstream, TestProxy};
use serde_json::json;

const TOKEN: &str = "studio-browser-admin-token-0123456789abcdef";

/// Saves `png` as `docs/studio/<name>.png` when `PALISADE_UPDATE_SCREENSHOTS=1`.
fn keep_screenshot(name: &str, png: &[u8]) {
    if std::env::var("PALISADE_UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/studio");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_studio_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .upstream("echo", echo.addr)
        .route("api", "/api", "echo", "")
        .top_yaml(&format!(
            "authentication:\n  revocation: {{admin_token_file: \"{}\"}}\n\
             authorization:\n  policy_sets:\n    - {{name: main, path: builtin, mode: enforce}}\n\
             audit:\n  file: {{path: \"{}\"}}\n",
            token_file.display(),
            audit_file.display()
        ))
        .start();

    // An anonymous request: no seed policy permits it, so it is denied and audited.
    let resp = client().get(proxy.url("/api/report")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let audited = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&audit_file)
            .ok()
            .filter(|t| t.contains(&request_id))
    })
    .await;
    assert!(audited.is_some(), "the denied request was not audited");

    let driver = ChromeDriver::start();
    let browser = Browser::open(&driver).await;
    browser
        .goto(&proxy.admin_url(&format!("/admin/studio#token={TOKEN}")))
        .await;

    // The live set loads and validates.
    browser
        .wait_for(
            "the live set to validate",
            "const v = document.getElementById('validation');\
             return v.classList.contains('ok') && v.textContent;",
        )
        .await;
    let url = browser.execute("return location.href;", json!([])).await;
    assert!(
        !url.as_str().unwrap().contains(TOKEN),
        "the token is taken out of the address bar"
    );
    keep_screenshot("overview", &browser.screenshot().await);

    // Type an error into roles.cedar line 7 (`permit (principal in Role::"admin", …`).
    browser
        .click_on("#tabs button[data-file='roles.cedar']")
        .await;
    let editor = browser.find("#editor").await;
    editor.click().await;
    let at = browser
        .execute(
            "const ed = document.getElementById('editor');\
             const at = ed.value.indexOf('permit (principal in Role::\"admin\"') + 'permit ('.length;\
             ed.setSelectionRange(at, at); return at;",
            json!([]),
        )
        .await;
    assert!(at.as_i64().unwrap() > 8, "line 7 of roles.cedar: {at}");
    editor.send_keys("oops ").await;
    let error = browser
        .wait_for(
            "the error to be reported",
            "const e = document.querySelector('#validation .error');\
             return e && e.textContent;",
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(error.starts_with("roles.cedar:7:"), "reported at {error}");
    let marked = browser
        .execute(
            "return [...document.querySelectorAll('#gutter .err')].map(e => e.dataset.line);",
            json!([]),
        )
        .await;
    assert_eq!(marked, json!(["7"]), "line 7 is marked in the gutter");
    keep_screenshot(
        "validation-error",
        &browser.find("#editor-pane").await.screenshot().await,
    );

    // Fix it: delete what was typed.
    editor.send_keys(&"\u{E003}".repeat(5)).await;
    browser
        .wait_for(
            "the fixed set to validate",
            "const v = document.getElementById('validation');\
             return v.classList.contains('ok') && v.textContent;",
        )
        .await;

    // Compose: an agent operator without MFA calls run_shell.
    browser
        .execute(
            "document.getElementById('p-type').value = 'User';\
             document.querySelector('#p-roles input[data-role=\"agent_operator\"]').checked = true;\
             document.getElementById('p-mfa').checked = false;",
            json!([]),
        )
        .await;
    browser.click_on("#action option[value='call_tool']").await;
    browser
        .click_on("#resource-type option[value='Tool']")
        .await;
    let resource = browser.find("#resource-id").await;
    browser
        .execute(
            "document.getElementById('resource-id').value = '';",
            json!([]),
        )
        .await;
    resource.send_keys("run_shell").await;
    browser.click_on("#decide").await;
    let verdict = browser
        .wait_for(
            "the decision",
            "const v = document.querySelector('#decision [data-set=edited] [data-verdict]');\
             return v && v.dataset.verdict;",
        )
        .await;
    assert_eq!(verdict, "deny");
    let live = browser
        .execute(
            "return document.querySelector('#decision [data-set=live] [data-verdict]').dataset.verdict;",
            json!([]),
        )
        .await;
    assert_eq!(live, "deny", "the live set decides the same");
    let panel = browser.find("#decision").await.text().await;
    assert!(
        !panel.contains("null") && !panel.contains("changes this decision"),
        "{panel}"
    );
    let policy = browser
        .find("#decision [data-set=edited] .policy-link")
        .await
        .text()
        .await;
    assert_eq!(policy, "high-risk-needs-mfa");
    let highlighted = browser
        .wait_for(
            "the deciding policy to be highlighted",
            "const tab = document.querySelector('#tabs button.active').dataset.file;\
             const lines = [...document.querySelectorAll('#backdrop span.hl')].map(s => s.textContent);\
             return lines.length && {tab, lines};",
        )
        .await;
    assert_eq!(highlighted["tab"], "abac.cedar");
    let lines: Vec<&str> = highlighted["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("high-risk-needs-mfa")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("unless { context.mfa }")),
        "{lines:?}"
    );
    keep_screenshot("decision", &browser.screenshot().await);

    // The denied request from the audit trail, in the explainer.
    browser
        .click_on("#audit-filter option[value='denied']")
        .await;
    browser.click_on("#audit-refresh").await;
    browser
        .wait_for(
            "the denied record in the list",
            &format!(
                "return !!document.querySelector('.audit-row[data-request-id=\"{request_id}\"]');"
            ),
        )
        .await;
    browser
        .click_on(&format!(
            ".audit-row[data-request-id=\"{request_id}\"] .explain-btn"
        ))
        .await;
    let explained = browser
        .wait_for(
            "the explanation",
            "const v = document.querySelector('#explainer-decision [data-set=live] [data-verdict]');\
             return v && v.dataset.verdict;",
        )
        .await;
    assert_eq!(explained, "deny");
    let text = browser.find("#explainer-text").await.text().await;
    assert!(text.contains("Route::\"api\""), "{text}");
    assert!(text.contains("no permit applies"), "{text}");
    keep_screenshot(
        "explainer",
        &browser.find("#audit-panel").await.screenshot().await,
    );

    // The who-can matrix.
    browser
        .click_on("#wc-action option[value='call_tool']")
        .await;
    browser.click_on("#wc-run").await;
    let cell = browser
        .wait_for(
            "the matrix",
            "const c = document.querySelector('#wc-table td[data-role=admin][data-tool=run_shell]');\
             return c && c.dataset.outcome;",
        )
        .await;
    assert_eq!(cell, "mfa", "admins need MFA for run_shell");
    let viewer = browser
        .execute(
            "return document.querySelector('#wc-table td[data-role=viewer][data-tool=run_shell]').dataset.outcome;",
            json!([]),
        )
        .await;
    assert_eq!(viewer, "deny");
    // Fold the panels above so the whole matrix is in the viewport (element screenshots are
    // clipped to it).
    browser
        .execute(
            "for (const id of ['compose-panel', 'tests-panel', 'audit-panel'])\
               document.getElementById(id).open = false;",
            json!([]),
        )
        .await;
    keep_screenshot(
        "who-can",
        &browser.find("#whocan-panel").await.screenshot().await,
    );

    browser.close().await;
    drop(driver);
    proxy.stop().await;
}
