//! The scripted upstream itself: routing, `times`, forwarding, the record, stream shapes.

use super::{split, ScriptedUpstream};

#[tokio::test]
async fn routes_times_forward_and_the_record() {
    let backend = ScriptedUpstream::new()
        .json("/a2a", serde_json::json!({"ok": true}))
        .start()
        .await;
    let gateway = ScriptedUpstream::new()
        .respond("/a2a", 503, &[("retry-after", "1")], "warming up")
        .times(1)
        .forward("/a2a", &format!("http://{}", backend.addr))
        .start()
        .await;
    let http = crate::client_builder().build().unwrap();
    let post = |path: &str| {
        http.post(format!("http://{}{path}", gateway.addr))
            .header("x-probe", "1")
            .body("{\"n\":1}")
            .send()
    };
    let first = post("/a2a").await.unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "1");
    assert_eq!(first.text().await.unwrap(), "warming up");
    let second = post("/a2a?x=1").await.unwrap();
    assert_eq!(second.status(), 200, "used up, the forward answers");
    assert_eq!(second.text().await.unwrap(), "{\"ok\":true}");
    assert_eq!(post("/other").await.unwrap().status(), 404);

    let seen = gateway.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/a2a", "/a2a?x=1", "/other"]);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].header("X-Probe"), Some("1"));
    assert_eq!(seen[0].json()["n"], 1);
    let forwarded = backend.requests();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].path, "/a2a?x=1");
    assert_eq!(forwarded[0].header("x-probe"), Some("1"));
    assert_eq!(forwarded[0].body, b"{\"n\":1}");
}

#[tokio::test]
async fn streams_are_split_paced_and_end_as_told() {
    let up = ScriptedUpstream::new()
        .sse("/split", [serde_json::json!({"a": "é"})])
        .split_every(3)
        .sse("/whole", [serde_json::json!(1), serde_json::json!(2)])
        .line_ending("\r\n")
        .whole()
        .sse("/die", [serde_json::json!(1)])
        .then_die()
        .start()
        .await;
    let get = |path: &str| {
        crate::client()
            .get(format!("http://{}{path}", up.addr))
            .send()
    };
    let cut = get("/split").await.unwrap();
    assert_eq!(cut.headers()["transfer-encoding"], "chunked");
    assert_eq!(cut.text().await.unwrap(), "data: {\"a\":\"é\"}\n\n");
    let whole = get("/whole").await.unwrap();
    assert_eq!(whole.headers()["content-length"], "22");
    assert_eq!(
        whole.text().await.unwrap(),
        "data: 1\r\n\r\ndata: 2\r\n\r\n"
    );
    let died = get("/die").await.unwrap();
    assert!(died.text().await.is_err(), "no clean end after a reset");
    assert_eq!(split("abécd", 2), ["ab", "é", "cd"]);
}
