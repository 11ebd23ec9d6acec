//! Sign-in through the provider's forms, the session on plain and AG-UI routes, and the
//! refusals of a tampered or redirected sign-in.

use palisade_e2e::browser::Browser;
use palisade_e2e::oidc::decode_unverified;
use palisade_e2e::sse_client;
use reqwest::Url;

use super::{run_body, Site, SiteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_then_the_cookie_is_the_same_identity_as_a_bearer_token() {
    let site = Site::start(SiteOptions::default()).await;

    // Without a session: a page navigation is sent to sign-in, an API call gets 401.
    let mut browser = Browser::new();
    let page = browser.navigate(&site.url("/app/page?x=1")).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert_eq!(page.error_code(), "LOGIN_REQUIRED");
    assert_eq!(
        page.header("location"),
        Some("/.palisade/login?return_to=%2Fapp%2Fpage%3Fx%3D1")
    );
    let api = browser.fetch(&site.url("/app/data")).await;
    assert_eq!(
        (api.status, api.error_code().as_str()),
        (401, "UNAUTHENTICATED")
    );

    // The sign-in: PKCE S256, state and nonce on the way to the provider.
    let login = browser.navigate(&page.location().unwrap()).await;
    assert_eq!(login.status, 302);
    let authorize = login.location().unwrap();
    assert!(authorize
        .as_str()
        .starts_with(&format!("{}/auth?", site.idp.issuer)));
    let params: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert_eq!(params["state"].len(), 43);
    assert_eq!(params["nonce"].len(), 43);
    assert_eq!(params["client_id"], "web");
    assert_eq!(params["resource"], "urn:palisade");
    assert_eq!(
        params["redirect_uri"],
        site.url("/.palisade/callback").as_str()
    );
    let provider = browser.navigate(&authorize).await;
    let back = browser.sign_in_at_provider(provider, "admin").await;
    let callback = browser.navigate(&back.location().unwrap()).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert_eq!(callback.header("location"), Some("/app/page?x=1"));
    let set = callback.set_cookies().join("\n");
    assert!(
        set.contains("palisade-session=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain HTTP: no Secure attribute: {set}"
    );
    // The cookie is opaque: no token reaches the browser.
    let cookie = site.session_cookie(&browser).expect("session cookie");
    assert!(!cookie.contains("eyJ"), "{cookie}");
    assert!(browser
        .cookie("127.0.0.1", "palisade-session-login")
        .is_none());

    // The session's identity is the bearer token's: same principal, roles, tenant.
    let landed = browser.navigate(&site.url("/app/page?x=1")).await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let by_session: serde_json::Value = serde_json::from_str(&landed.body).unwrap();
    let token = site.idp.token("admin").await;
    let by_bearer: serde_json::Value = palisade_e2e::client()
        .get(site.proxy.url("/app/page"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for header in [
        "x-palisade-principal",
        "x-palisade-roles",
        "x-palisade-tenant",
    ] {
        assert_eq!(
            by_session["headers"][header], by_bearer["headers"][header],
            "{header}"
        );
    }
    assert_eq!(
        by_session["headers"]["x-palisade-principal"],
        format!("User::\"{}|admin\"", site.idp.issuer)
    );
    let assertion = |v: &serde_json::Value| {
        decode_unverified(v["headers"]["x-palisade-assertion"].as_str().unwrap()).payload
    };
    assert_eq!(assertion(&by_session)["auth_method"], "session");
    assert_eq!(assertion(&by_bearer)["auth_method"], "jwt");
    assert_eq!(
        assertion(&by_session)["roles"],
        assertion(&by_bearer)["roles"]
    );
    // The same audit fields, `auth_method: session`.
    let request_id = landed.header("x-request-id").unwrap().to_string();
    let record = palisade_e2e::eventually(std::time::Duration::from_secs(10), || {
        site.audit()
            .into_iter()
            .find(|r| r["request_id"] == request_id.as_str())
    })
    .await
    .expect("the request was audited");
    assert_eq!(record["principal"]["auth_method"], "session", "{record}");
    assert_eq!(
        record["principal"]["id"], by_session["headers"]["x-palisade-principal"],
        "{record}"
    );
    // The upstream gets the identity headers, never the session cookie (a credential it could
    // replay) nor an invented Authorization header; the page's other cookies pass.
    assert!(by_session["headers"]["authorization"].is_null());
    let mut with_other = Browser::new();
    with_other.set_cookie("127.0.0.1", "palisade-session", &cookie);
    with_other.set_cookie("127.0.0.1", "theme", "dark");
    let echoed = with_other.fetch(&site.url("/app/x")).await;
    let echoed: serde_json::Value = serde_json::from_str(&echoed.body).unwrap();
    assert_eq!(echoed["headers"]["cookie"], "theme=dark", "{echoed}");

    // An AG-UI run streamed with the cookie.
    let resp = palisade_e2e::client()
        .post(site.proxy.url("/agent"))
        .header("cookie", format!("palisade-session={cookie}"))
        .header("origin", site.origin())
        .header("accept", "text/event-stream")
        .json(&run_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = sse_client::read(resp, None, std::time::Duration::from_secs(10)).await;
    let types = got.types();
    assert_eq!(types.first().map(String::as_str), Some("RUN_STARTED"));
    assert_eq!(
        types.last().map(String::as_str),
        Some("RUN_FINISHED"),
        "{types:?}"
    );

    // A cookie that does not open (forged, or sealed by another key) is no session.
    let mut forged = Browser::new();
    forged.set_cookie("127.0.0.1", "palisade-session", &format!("{cookie}x"));
    let api = forged.fetch(&site.url("/app/data")).await;
    assert_eq!(
        (api.status, api.error_code().as_str()),
        (401, "SESSION_EXPIRED")
    );
}

/// The authorization URL with `name` replaced by `value`.
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// Starts a sign-in in `browser`; the provider's authorization URL.
async fn start_sign_in(site: &Site, browser: &mut Browser) -> Url {
    let login = browser
        .navigate(&site.url("/.palisade/login?return_to=/app"))
        .await;
    assert_eq!(login.status, 302, "{}", login.body);
    login.location().unwrap()
}

/// Signs in at the provider from `authorize` and returns the callback URL it redirects to.
async fn through_provider(browser: &mut Browser, authorize: &Url) -> Url {
    let provider = browser.navigate(authorize).await;
    browser
        .sign_in_at_provider(provider, "developer")
        .await
        .location()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_state_nonce_pkce_and_open_redirects_are_refused() {
    let site = Site::start(SiteOptions::default()).await;
    let refused = |page: &palisade_e2e::browser::Page, what: &str| {
        assert_eq!(page.status, 400, "{what}: {}", page.body);
        assert_eq!(page.error_code(), "LOGIN_REJECTED", "{what}");
        assert!(page.body.contains(what), "{what}: {}", page.body);
        assert!(
            site.session_cookie_set(page).is_none(),
            "{what}: no session cookie"
        );
    };

    // Open redirects: return_to must be a path on this site.
    let mut browser = Browser::new();
    for target in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "evil",
    ] {
        let mut url = site.url("/.palisade/login");
        url.query_pairs_mut().append_pair("return_to", target);
        refused(&browser.navigate(&url).await, "return_to");
    }

    // State: the provider sends back a state that is not the sign-in's.
    let authorize = start_sign_in(&site, &mut browser).await;
    let tampered = with_param(&authorize, "state", "attacker-state");
    let callback = through_provider(&mut browser, &tampered).await;
    refused(&browser.navigate(&callback).await, "state does not match");

    // Nonce: the ID token carries another nonce than the sign-in's.
    let mut browser = Browser::new();
    let authorize = start_sign_in(&site, &mut browser).await;
    let tampered = with_param(&authorize, "nonce", "attacker-nonce");
    let callback = through_provider(&mut browser, &tampered).await;
    refused(&browser.navigate(&callback).await, "nonce does not match");

    // PKCE: a code issued for another challenge (an injected or stolen code) is not exchanged.
    let mut browser = Browser::new();
    let authorize = start_sign_in(&site, &mut browser).await;
    let other = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])
    };
    let tampered = with_param(&authorize, "code_challenge", &other);
    let callback = through_provider(&mut browser, &tampered).await;
    refused(
        &browser.navigate(&callback).await,
        "the code exchange was refused (invalid_grant)",
    );

    // A callback without the sign-in cookie (another browser, or replayed later).
    let mut browser = Browser::new();
    let authorize = start_sign_in(&site, &mut browser).await;
    let callback = through_provider(&mut browser, &authorize).await;
    let mut elsewhere = Browser::new();
    refused(
        &elsewhere.navigate(&callback).await,
        "no sign-in in progress",
    );
    // The untampered flow in the original browser still works, once.
    let done = browser.navigate(&callback).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.header("location"), Some("/app"));
    let replay = browser.navigate(&callback).await;
    refused(&replay, "no sign-in in progress");

    // The provider's own error comes back as a refusal too.
    let mut browser = Browser::new();
    let authorize = start_sign_in(&site, &mut browser).await;
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut denied = site.url("/.palisade/callback");
    denied
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("state", &state);
    refused(&browser.navigate(&denied).await, "access_denied");

    // Only GET starts a sign-in.
    let post = browser.submit(&site.url("/.palisade/login"), &[]).await;
    assert_eq!(
        (post.status, post.error_code().as_str()),
        (405, "METHOD_NOT_ALLOWED")
    );
}

impl Site {
    /// The session cookie a response sets, if any.
    fn session_cookie_set<'a>(&self, page: &'a palisade_e2e::browser::Page) -> Option<&'a str> {
        page.set_cookies()
            .into_iter()
            .find(|c| c.starts_with("palisade-session=") && !c.starts_with("palisade-session=;"))
    }
}
