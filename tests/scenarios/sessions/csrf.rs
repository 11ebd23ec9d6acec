//! CSRF: a state-changing request that carries the session cookie must come from this site
//! (`Sec-Fetch-Site: same-origin`, or this `Origin`, or one the route's CORS allows with
//! credentials); bearer tokens are not affected.

use palisade_e2e::client;

use super::{Site, SiteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_with_the_cookie_are_refused() {
    let site = Site::start(SiteOptions {
        app_extra: "cors: {allow_origins: [\"https://app.example\"], allow_credentials: true}"
            .into(),
        ..SiteOptions::default()
    })
    .await;
    let (browser, landed) = site.signed_in("developer").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let cookie = format!(
        "palisade-session={}",
        site.session_cookie(&browser).unwrap()
    );
    let post = |headers: &[(&str, &str)]| {
        let mut request = client()
            .post(site.proxy.url("/app/x"))
            .header("cookie", &cookie)
            .body("{}");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let own = site.origin();
    for (headers, expected) in [
        (vec![("origin", own.as_str())], 200),
        (vec![("sec-fetch-site", "same-origin")], 200),
        // The route's CORS lets this origin call with credentials.
        (vec![("origin", "https://app.example")], 200),
        (vec![("origin", "https://evil.example")], 403),
        (vec![("origin", "null")], 403),
        (vec![("sec-fetch-site", "cross-site")], 403),
        (vec![("sec-fetch-site", "same-site")], 403),
        (vec![], 403),
    ] {
        let resp = post(&headers).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        assert_eq!(status, expected, "{headers:?}: {body:?}");
        if expected == 403 {
            assert_eq!(
                palisade_e2e::error_code(&body),
                "CSRF_REJECTED",
                "{headers:?}"
            );
        }
    }
    // Reads are not state-changing: a GET with the cookie needs no Origin.
    let get = client()
        .get(site.proxy.url("/app/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    // A bearer token is not sent by the browser on its own: no Origin needed.
    let token = site.idp.token("developer").await;
    let resp = client()
        .post(site.proxy.url("/app/x"))
        .bearer_auth(token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A cross-site form cannot sign the user out.
    let out = client()
        .post(site.proxy.url("/.palisade/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 403);
    assert_eq!(
        palisade_e2e::error_code(&out.bytes().await.unwrap()),
        "CSRF_REJECTED"
    );
}
