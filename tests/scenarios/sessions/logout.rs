//! Logout: the session deleted everywhere (a second replica sharing Redis included), the access
//! token's `jti` revoked, the refresh token revoked at the provider (RFC 7009), and the browser
//! sent to the provider's RP-initiated logout.

use std::time::Duration;

use palisade_e2e::oidc::client_secret;
use palisade_e2e::redis::RedisServer;
use palisade_e2e::{client, error_code};

use super::{Site, SiteOptions};

/// A bearer call with `token` to `url`: status and error code (empty on success).
async fn bearer(url: &str, token: &str) -> (u16, String) {
    let resp = client().get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    let code = if status == 200 {
        String::new()
    } else {
        error_code(&body)
    };
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_here_at_the_provider_and_on_a_second_replica() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let site = Site::start(SiteOptions {
        sessions_extra: format!("    store: {{redis_url: \"{}\"}}\n", redis.url()),
        authn_extra: format!(
            "  revocation: {{redis_url: \"{}\", sync_interval: 200ms}}\n",
            redis.url()
        ),
        ..SiteOptions::default()
    })
    .await;
    let replica = site.replica().await;
    let on_replica = |path: &str| reqwest::Url::parse(&replica.url(path)).unwrap();

    let (mut browser, landed) = site.signed_in("admin").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let cookie = site.session_cookie(&browser).unwrap();
    // The session is in Redis: the other replica knows it.
    let there = browser.fetch(&on_replica("/app/x")).await;
    assert_eq!(there.status, 200, "{}", there.body);
    // The tokens the proxy holds (only the provider's test route shows them).
    let grants = site.idp.grants().await;
    let access = grants["last"]["access_token"].as_str().unwrap().to_string();
    let refresh = grants["last"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(bearer(&site.proxy.url("/app/x"), &access).await.0, 200);

    // Logout: cookie cleared, and off to the provider's end-session endpoint.
    let out = browser.navigate(&site.url("/.palisade/logout")).await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("palisade-session=;") && c.contains("Max-Age=0")),
        "{:?}",
        out.set_cookies()
    );
    let end = out.location().unwrap();
    assert!(end
        .as_str()
        .starts_with(&format!("{}/session/end?", site.idp.issuer)));
    let params: std::collections::HashMap<_, _> = end.query_pairs().into_owned().collect();
    assert_eq!(params["client_id"], "web");
    assert_eq!(params["post_logout_redirect_uri"], site.url("/").as_str());
    assert_eq!(
        palisade_e2e::oidc::decode_unverified(&params["id_token_hint"]).payload["aud"],
        "web"
    );
    let provider_page = browser.navigate(&end).await;
    assert_eq!(provider_page.status, 200, "{}", provider_page.body);
    assert!(
        provider_page.body.contains("sign-out"),
        "{}",
        provider_page.body
    );
    assert!(site.session_cookie(&browser).is_none());

    // A kept copy of the cookie is dead on both replicas at once (deleted from Redis).
    browser.set_cookie("127.0.0.1", "palisade-session", &cookie);
    for url in [site.url("/app/x"), on_replica("/app/x")] {
        let api = browser.fetch(&url).await;
        assert_eq!(
            (api.status, api.error_code().as_str()),
            (401, "SESSION_EXPIRED"),
            "{url}"
        );
    }
    let page = browser.navigate(&on_replica("/app/x")).await;
    assert_eq!(
        (page.status, page.error_code().as_str()),
        (302, "LOGIN_REQUIRED")
    );

    // The session's access token died with it: here at once, on the replica within its sync.
    assert_eq!(
        bearer(&site.proxy.url("/app/x"), &access).await,
        (401, "TOKEN_REVOKED".to_string())
    );
    let replica_url = replica.url("/app/x");
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = bearer(&replica_url, &access).await;
        if last.0 == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // bounded poll: 100 × 50 ms
    }
    assert_eq!(last, (401, "TOKEN_REVOKED".to_string()));

    // The provider revoked the refresh token (RFC 7009): it refreshes nothing any more.
    let resp = client()
        .post(site.idp.token_endpoint())
        .basic_auth("web", Some(client_secret("web")))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    // Logging out without a session still clears the cookie and goes to the provider.
    let mut stranger = palisade_e2e::browser::Browser::new();
    let out = stranger.navigate(&site.url("/.palisade/logout")).await;
    assert_eq!(out.status, 302);
    drop(redis);
}
