//! Who may do what under the seed policies: running agents per role, plain HTTP for viewers, the
//! `admin` action on admin endpoints, and A2A methods in both protocol versions.

use palisade_e2e::{client, error_code};
use serde_json::{json, Value};

use super::{post, repo_policies, run_agent_decisions, run_input, seed_stack, stack_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_runs_agents_as_the_seed_policies_say() {
    let s = seed_stack().await;
    for (role, expected) in [
        ("admin", 200),
        ("developer", 200),
        ("agent_operator", 200),
        ("user", 200),
        ("viewer", 403),
    ] {
        let (status, body) = post(&s.proxy, "/agent", &s.issuer.role(role), &run_input(&[])).await;
        assert_eq!(status, expected, "{role}: {body}");
        if status == 403 {
            assert_eq!(error_code(body.as_bytes()), "FORBIDDEN");
            // The body names no policy internals.
            for secret in [
                "viewer",
                "policy",
                "cedar",
                "Action::",
                "Agent::",
                "user-agents",
            ] {
                assert!(!body.contains(secret), "403 body leaks `{secret}`: {body}");
            }
        }
    }
    let allowed = run_agent_decisions(&s.proxy, "allow", "enforce", "main");
    let denied = run_agent_decisions(&s.proxy, "deny", "enforce", "main");
    assert_eq!((allowed, denied), (4.0, 1.0));

    // No token: refused (by authentication, or as `Anonymous` by the policies).
    let resp = client()
        .post(s.proxy.url("/agent"))
        .json(&run_input(&[]))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(resp.status().as_u16(), 401 | 403),
        "{}",
        resp.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_map_methods_and_admin_endpoints_to_actions() {
    let s = seed_stack().await;
    // (method, path, role, expected status)
    let cases = [
        // viewer: read-only HTTP.
        ("GET", "/api/x", "viewer", 200),
        ("POST", "/api/x", "viewer", 403),
        ("POST", "/api/x", "user", 200),
        // `admin` on Route::"ops": admins only (and from loopback/10/8, which the test client is).
        ("GET", "/ops/admin/x", "admin", 200),
        ("GET", "/ops/admin/x", "developer", 403),
        // Paths are canonicalized once, before routing and the route rules: other spellings of
        // `/ops/admin` are `admin` too, and an encoded `/` is refused.
        ("GET", "/ops/%61dmin/x", "developer", 403),
        ("GET", "//ops//admin/x", "developer", 403),
        ("GET", "/ops;v=1/admin/x", "developer", 403),
        ("GET", "/ops/%61dmin/x", "admin", 200),
        ("GET", "/ops%2fadmin/x", "admin", 400),
        // The rest of the route is plain http_request.
        ("GET", "/ops/status", "developer", 200),
        ("GET", "/ops/status", "viewer", 200),
    ];
    for (method, path, role, expected) in cases {
        let request = match method {
            "GET" => client().get(s.proxy.url(path)),
            _ => client().post(s.proxy.url(path)).json(&json!({})),
        };
        let resp = request
            .bearer_auth(s.issuer.role(role))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "{method} {path} as {role}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_methods_map_to_actions_in_both_versions() {
    let s = seed_stack().await;
    let rpc =
        |id: u64, method: &str| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
    for (role, method, allowed) in [
        ("user", "message/send", true),
        ("user", "SendMessage", true),
        ("user", "message/stream", true),
        ("user", "tasks/get", true),
        ("user", "tasks/cancel", false),
        ("user", "CancelTask", false),
        ("agent_operator", "tasks/cancel", true),
        ("agent_operator", "CancelTask", true),
        ("agent_operator", "tasks/teleport", false),
    ] {
        let token = s.issuer.role(role);
        let (status, body) = post(&s.proxy, "/a2a", &token, &rpc(41, method)).await;
        assert_eq!(status, 200, "{role} {method}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        if allowed {
            assert_eq!(json["method"], "POST", "{method} reached the agent: {body}");
        } else {
            assert_eq!(json["id"], 41, "{role} {method}: {body}");
            assert_eq!(json["error"]["code"], -32030, "{role} {method}: {body}");
            assert_eq!(json["error"]["data"]["code"], "FORBIDDEN");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_admin_rule_does_not_take_an_unlisted_proxy_for_a_local_caller() {
    // The test client plays a reverse proxy on loopback that nobody listed in
    // edge.trusted_proxies: its address is every caller's, so it must not satisfy isLoopback().
    let p = repo_policies();
    let s = stack_with(&[("main", &p, "enforce")], "").await;
    for (header, value, want) in [
        (None, "", 200),
        (Some("x-forwarded-for"), "203.0.113.9", 403),
        (Some("x-real-ip"), "203.0.113.9", 403),
        (Some("via"), "1.1 edge", 403),
        (Some("forwarded"), "for=127.0.0.1", 403),
    ] {
        let mut req = client()
            .get(s.proxy.url("/ops/admin/x"))
            .bearer_auth(s.issuer.role("admin"));
        if let Some(h) = header {
            req = req.header(h, value);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            status,
            want,
            "{header:?}: {}",
            String::from_utf8_lossy(&body)
        );
        if want == 403 {
            assert_eq!(error_code(&body), "FORBIDDEN");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_admin_rule_sees_the_client_behind_a_trusted_proxy() {
    // The test client plays a reverse proxy on loopback, listed as trusted.
    let p = repo_policies();
    let s = stack_with(
        &[("main", &p, "enforce")],
        "edge:\n  trusted_proxies: [127.0.0.1]\n",
    )
    .await;
    let get = |forwarded_for: Option<&'static str>| {
        let mut req = client()
            .get(s.proxy.url("/ops/admin/x"))
            .bearer_auth(s.issuer.role("admin"));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap())
        }
    };
    // A client on the internet, even one that wrote `127.0.0.1` itself (the proxy appends the
    // real peer): the proxy's loopback address no longer satisfies `isLoopback()`.
    assert_eq!(get(Some("203.0.113.9")).await.0, 403);
    assert_eq!(get(Some("127.0.0.1, 203.0.113.9")).await.0, 403);
    // A client in the operations network, forwarded: allowed as the seed policy says.
    assert_eq!(get(Some("10.1.2.3")).await.0, 200);
    // A trusted proxy that does not say who its client is: refused, not taken for loopback.
    let (status, body) = get(None).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_REQUEST");
}
