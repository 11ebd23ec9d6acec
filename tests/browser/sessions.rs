//! Browser sessions in real headless Chromium: the page behind a `session` route sends the
//! browser to sign-in, Chromium fills the real OpenID provider's login and consent forms
//! (`tests/oidc`), lands back on the page, and the page streams an AG-UI run with the official
//! client (`@ag-ui/client`, bundled for the browser by esbuild from
//! `tests/peers/agui-client/browser.mjs`) — carried by the HttpOnly session cookie alone, across
//! refreshes of 3-second access tokens.

use std::path::Path;
use std::time::Duration;

use palisade_e2e::browser::random_cookie_key;
use palisade_e2e::oidc::{client_secret, Idp};
use palisade_e2e::upstream::ScriptedUpstream;
use palisade_e2e::webdriver::{Browser, ChromeDriver};
use palisade_e2e::{eventually, TestProxy};
use serde_json::{json, Value};

const PAGE: &str = "<!doctype html><html><head><title>agent app</title>\
    <script src=\"/app/agui.js\"></script></head><body><h1 id=\"app\">agent app</h1></body></html>";

/// `@ag-ui/client` bundled for the browser into `out` (esbuild from the pinned devDependency).
fn bundle(out: &Path) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/agui-client");
    let esbuild = dir.join("node_modules/.bin/esbuild");
    assert!(
        esbuild.exists(),
        "esbuild is not installed: run `npm ci --prefix tests/peers/agui-client` (tests/run.sh does)"
    );
    let status = std::process::Command::new(&esbuild)
        .current_dir(&dir)
        .args([
            "browser.mjs",
            "--bundle",
            "--format=iife",
            "--platform=browser",
        ])
        .arg(format!("--outfile={}", out.display()))
        .status()
        .expect("esbuild runs");
    assert!(status.success(), "esbuild failed");
    std::fs::read(out).unwrap()
}

/// A run of `words` text deltas, `pace` apart, as an AG-UI agent streams it.
fn run_events(words: usize) -> Vec<Value> {
    let mut events = vec![
        json!({"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"}),
        json!({"type": "TEXT_MESSAGE_START", "messageId": "m2", "role": "assistant"}),
    ];
    events.extend((0..words).map(
        |i| json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m2", "delta": format!("w{i} ")}),
    ));
    events.push(json!({"type": "TEXT_MESSAGE_END", "messageId": "m2"}));
    events.push(json!({"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_stream_an_agui_run_with_the_official_client_in_chromium() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = bundle(&dir.path().join("agui.js"));
    std::fs::write(dir.path().join("secret"), client_secret("web-short-lived")).unwrap();
    std::fs::write(dir.path().join("cookie.key"), random_cookie_key()).unwrap();
    let site = ScriptedUpstream::new()
        .respond(
            "/app/agui.js",
            200,
            &[("content-type", "text/javascript")],
            script,
        )
        .respond("/app", 200, &[("content-type", "text/html")], PAGE)
        .start()
        .await;
    // 20 words 200 ms apart: the run outlives its 3-second access token.
    let agent = ScriptedUpstream::new()
        .sse("/", run_events(20))
        .pace(Duration::from_millis(200))
        .start()
        .await;
    let path = |f: &str| dir.path().join(f).display().to_string();
    let proxy = TestProxy::new()
        .upstream("site", site.addr)
        .upstream("agent", agent.addr)
        .route("app", "/app", "site", "auth: session")
        .route("agent", "/agent", "agent", "auth: session\nprotocol: agui")
        .top_yaml(&format!(
            "authentication:\n  issuers:\n    - issuer: \"{iss}\"\n      audiences: [palisade]\n      \
             keys: {{discovery: true}}\n  sessions:\n    issuer: \"{iss}\"\n    \
             client_id: web-short-lived\n    client_secret_file: \"{secret}\"\n    \
             scopes: [openid, email, \"agents:run\"]\n    \
             authorization_params: {{resource: \"urn:palisade\"}}\n    refresh_before: 1s\n    \
             cookie: {{key_file: \"{key}\"}}\n",
            iss = idp.issuer,
            secret = path("secret"),
            key = path("cookie.key"),
        ))
        .start();
    eventually(Duration::from_secs(10), || {
        proxy.running.lifecycle.is_ready().then_some(())
    })
    .await
    .expect("ready once the IdP's keys loaded");

    let driver = ChromeDriver::start();
    let browser = Browser::open(&driver).await;
    browser.goto(&proxy.url("/app/")).await;

    // Sent to the provider's login form: any login, any password.
    browser
        .wait_for(
            "the provider's login form",
            "return document.querySelector('input[name=login]') !== null;",
        )
        .await;
    browser
        .find("input[name=login]")
        .await
        .send_keys("developer")
        .await;
    browser
        .find("input[name=password]")
        .await
        .send_keys("x")
        .await;
    browser.click_on("button[type=submit]").await;
    browser
        .wait_for(
            "the provider's consent form",
            "return document.querySelector('input[name=prompt][value=consent]') !== null;",
        )
        .await;
    browser.click_on("button[type=submit]").await;

    // Back on the page, signed in; the session cookie is HttpOnly: no script sees it.
    browser
        .wait_for(
            "the app page after sign-in",
            "return document.getElementById('app') !== null && window.AgUi !== undefined;",
        )
        .await;
    let here = browser.execute("return location.href;", json!([])).await;
    assert_eq!(here, proxy.url("/app/"));
    let cookies = browser.execute("return document.cookie;", json!([])).await;
    assert!(
        !cookies.as_str().unwrap_or("").contains("palisade-session"),
        "{cookies}"
    );

    // The official AG-UI client streams a run from the page, with the cookie alone.
    let refreshes = idp.grant_count("refresh_token").await;
    let run = browser
        .execute(
            "return window.AgUi.runAgent('/agent', arguments[0]);",
            json!([{
                "threadId": "t1", "runId": "r1",
                "messages": [{"id": "m1", "role": "user", "content": "hello"}]
            }]),
        )
        .await;
    assert_eq!(run["outcome"], "finished", "{run}");
    let types: Vec<&str> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"RUN_STARTED"), "{types:?}");
    assert_eq!(types.last(), Some(&"RUN_FINISHED"), "{types:?}");
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "TEXT_MESSAGE_CONTENT")
            .count(),
        20
    );
    // The run outlived the token it started with; the next call from the page refreshes it
    // without the page noticing.
    let again = browser
        .execute(
            "return window.AgUi.runAgent('/agent', arguments[0]);",
            json!([{"threadId": "t1", "runId": "r2", "messages": []}]),
        )
        .await;
    assert_eq!(again["outcome"], "finished", "{again}");
    assert!(idp.grant_count("refresh_token").await > refreshes);

    // Logout: to the provider's end-session page; confirming there ends the provider's own
    // session and comes back here; the page then needs a new sign-in.
    browser.goto(&proxy.url("/.palisade/logout")).await;
    browser
        .wait_for(
            "the provider's sign-out page",
            "return document.querySelector('button[name=logout][value=yes]') !== null;",
        )
        .await;
    browser.click_on("button[name=logout][value=yes]").await;
    let home = proxy.url("/");
    browser
        .wait_for(
            "the way back after the provider's sign-out",
            &format!("return location.href === {home:?};"),
        )
        .await;
    browser.goto(&proxy.url("/app/")).await;
    browser
        .wait_for(
            "the provider's login form again",
            "return document.querySelector('input[name=login]') !== null;",
        )
        .await;
    browser.close().await;
}
