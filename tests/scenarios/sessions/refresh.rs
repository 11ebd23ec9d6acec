//! Refresh: with 3-second access tokens the proxy refreshes shortly before expiry, once per
//! session however many requests arrive together, without a client or a running stream
//! noticing; a refresh the provider refuses ends the session.

use std::time::{Duration, Instant};

use palisade_e2e::sse_client;
use palisade_e2e::upstream::SseScript;

use super::{run_body, Site, SiteOptions};

fn short_lived() -> SiteOptions {
    SiteOptions {
        client: "web-short-lived",
        // A run longer than two access-token lifetimes.
        stream: SseScript {
            agui: true,
            count: 40,
            interval: Duration::from_millis(200),
            ..SseScript::default()
        },
        ..SiteOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_refresh_once_and_a_stream_runs_across_refreshes() {
    let site = Site::start(short_lived()).await;
    let (browser, landed) = site.signed_in("user").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let cookie = site.session_cookie(&browser).unwrap();
    let client = palisade_e2e::client();
    let get = |path: &'static str| {
        client
            .get(site.proxy.url(path))
            .header("cookie", format!("palisade-session={cookie}"))
            .send()
    };

    // A run that outlives the access token it started with.
    let stream = client
        .post(site.proxy.url("/agent"))
        .header("cookie", format!("palisade-session={cookie}"))
        .header("origin", site.origin())
        .json(&run_body())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reading = tokio::spawn(sse_client::read(stream, None, Duration::from_secs(30)));

    // Bursts of 20 concurrent calls until one of them refreshes: exactly one refresh, and
    // every call of every burst answered 200.
    let before = site.idp.grant_count("refresh_token").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refreshes = before;
    while refreshes == before {
        assert!(Instant::now() < deadline, "no refresh within 10 s");
        let burst = futures::future::join_all((0..20).map(|_| get("/app/x"))).await;
        for resp in burst {
            assert_eq!(resp.unwrap().status(), 200, "a call noticed the refresh");
        }
        refreshes = site.idp.grant_count("refresh_token").await;
    }
    assert_eq!(refreshes, before + 1, "one refresh for the whole burst");

    // Keep calling (paced) while the run streams on, past several lifetimes: refreshed again
    // and again, never a 401.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reading.is_finished() {
        assert!(Instant::now() < deadline, "the stream did not end");
        assert_eq!(get("/app/x").await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(site.idp.grant_count("refresh_token").await >= before + 2);

    // The stream ran through every refresh to its end.
    let got = reading.await.unwrap();
    let types = got.types();
    assert_eq!(types.len(), 42, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("RUN_FINISHED"));
    assert!(!types.iter().any(|t| t == "RUN_ERROR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_ends_the_session() {
    let site = Site::start(short_lived()).await;
    let (mut browser, landed) = site.signed_in("user").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    site.idp.refuse_tokens(true).await;
    // Once the token is due, the refresh is refused: the API call gets 401 SESSION_EXPIRED
    // (polled, bounded: the token is due within its 3-second lifetime).
    let deadline = Instant::now() + Duration::from_secs(10);
    let api = loop {
        let api = browser.fetch(&site.url("/app/x")).await;
        if api.status != 200 || Instant::now() > deadline {
            break api;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (api.status, api.error_code().as_str()),
        (401, "SESSION_EXPIRED")
    );
    // The session is gone, even once the provider would refresh again; a navigation goes to
    // sign-in.
    site.idp.refuse_tokens(false).await;
    let page = browser.navigate(&site.url("/app/x")).await;
    assert_eq!(
        (page.status, page.error_code().as_str()),
        (302, "LOGIN_REQUIRED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_refresh_a_session_once() {
    let redis = tokio::task::spawn_blocking(palisade_e2e::redis::RedisServer::start)
        .await
        .unwrap();
    let site = Site::start(SiteOptions {
        sessions_extra: format!("    store: {{redis_url: \"{}\"}}\n", redis.url()),
        ..short_lived()
    })
    .await;
    let replica = site.replica().await;
    let (browser, landed) = site.signed_in("user").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let cookie = format!(
        "palisade-session={}",
        site.session_cookie(&browser).unwrap()
    );
    let client = palisade_e2e::client();
    let urls = [site.proxy.url("/app/x"), replica.url("/app/x")];
    // Bursts of 10 calls on each replica at once, until one of them refreshes.
    let before = site.idp.grant_count("refresh_token").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refreshes = before;
    while refreshes == before {
        assert!(Instant::now() < deadline, "no refresh within 10 s");
        let calls = (0..20).map(|i| client.get(&urls[i % 2]).header("cookie", &cookie).send());
        for resp in futures::future::join_all(calls).await {
            assert_eq!(resp.unwrap().status(), 200, "a call noticed the refresh");
        }
        refreshes = site.idp.grant_count("refresh_token").await;
    }
    assert_eq!(refreshes, before + 1, "one refresh across both replicas");
    drop(redis);
}
