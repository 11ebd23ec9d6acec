//! Approvals in Redis: a second replica decides a call held on the first; a pending approval
//! survives a restart (re-announced by the webhook) and the client's retry of the same call
//! collects the grant.

use palisade_e2e::issuer::Issuer;
use palisade_e2e::redis::RedisServer;
use palisade_e2e::upstream;
use serde_json::{json, Value};

use super::{decide, policy_dir, stack_over, tool_call, wait_pending};

fn redis_yaml(redis: &RedisServer, webhook: Option<std::net::SocketAddr>) -> String {
    let mut y = format!(
        "  timeout: 30s\n  redis: {{url: \"{}\", poll_interval: 50ms}}\n",
        redis.url()
    );
    if let Some(addr) = webhook {
        y.push_str(&format!(
            "  webhook: {{url: \"http://{addr}/hook\", timeout: 2s}}\n"
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_approves_a_call_held_on_the_first() {
    let redis = RedisServer::start();
    let hook = upstream::echo().await;
    let issuer = Issuer::new();
    let dir = policy_dir();
    let policies = tempfile::tempdir().unwrap();
    for f in ["palisade.cedarschema", "approvals.cedar", "tools.yaml"] {
        std::fs::copy(dir.path().join(f), policies.path().join(f)).unwrap();
    }
    let a = stack_over(issuer, dir, &redis_yaml(&redis, Some(hook.addr))).await;
    let b = stack_over(Issuer::new(), policies, &redis_yaml(&redis, None)).await;
    let ops = a.issuer.token("alice", &["ops"], json!({}));
    let held = {
        let (url, ops) = (a.proxy.url("/mcp"), ops.clone());
        tokio::spawn(async move {
            let resp = palisade_e2e::client()
                .post(url)
                .bearer_auth(ops)
                .json(&tool_call(1, "run_shell", json!({"cmd": "ls"})))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    // Both replicas see it.
    let on_a = wait_pending(&a.proxy, 1).await;
    let on_b = wait_pending(&b.proxy, 1).await;
    assert_eq!(on_a, on_b);
    let id = on_b[0]["id"].as_str().unwrap().to_string();
    // The webhook announced it, with the request id the caller can match.
    let announced = palisade_e2e::eventually(std::time::Duration::from_secs(10), || {
        hook.requests().into_iter().next()
    })
    .await
    .expect("the webhook announced the approval");
    assert_eq!(announced.method, "POST");
    assert_eq!(announced.path, "/hook");
    let payload: Value = serde_json::from_slice(&announced.body).unwrap();
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["status"], "pending");
    assert_eq!(payload["tool"], "run_shell");
    assert_eq!(payload["request_id"], on_a[0]["request_id"]);
    assert!(payload["expires_at"].as_str().unwrap().ends_with('Z'));

    // B's issuer is another one: its tokens mean nothing on A, but B verifies its own approver.
    let boss = b.issuer.token("boss", &["approver"], json!({}));
    let (status, body) = decide(&b.proxy, &id, "approve", Some(&boss), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "POST", "the echo server answered: {body}");
    assert_eq!(a.echo.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_survives_a_restart_and_the_retry_collects_it() {
    let redis = RedisServer::start();
    let hook = upstream::echo().await;
    let issuer = Issuer::new();
    let first = stack_over(issuer, policy_dir(), &redis_yaml(&redis, Some(hook.addr))).await;
    let ops = first.issuer.token("alice", &["ops"], json!({}));
    let call = tool_call(2, "write_file", json!({"path": "/srv/motd", "text": "hi"}));
    let cut = {
        let (url, ops, call) = (first.proxy.url("/mcp"), ops.clone(), call.clone());
        tokio::spawn(async move {
            palisade_e2e::client()
                .post(url)
                .bearer_auth(ops)
                .json(&call)
                .send()
                .await
        })
    };
    let id = wait_pending(&first.proxy, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The proxy stops with the call still held; its client is cut off.
    let super::Stack {
        proxy,
        issuer,
        _dirs: (_, policies),
        ..
    } = first;
    proxy.stop().await;
    assert!(
        cut.await.unwrap().is_err_or_not_ok(),
        "the held call did not go through"
    );

    // A new process over the same Redis: the approval is still pending, and announced again.
    let second = stack_over(issuer, policies, &redis_yaml(&redis, Some(hook.addr))).await;
    let list = wait_pending(&second.proxy, 1).await;
    assert_eq!(list[0]["id"], id.as_str());
    palisade_e2e::eventually(std::time::Duration::from_secs(10), || {
        (hook.requests().len() >= 2).then_some(())
    })
    .await
    .expect("re-announced after the restart");
    let boss = second.issuer.token("boss", &["approver"], json!({}));
    assert_eq!(
        decide(&second.proxy, &id, "approve", Some(&boss), json!({}))
            .await
            .0,
        200
    );
    // The client retries the same call (same principal, tool and arguments): it collects the
    // grant instead of opening a new approval.
    let (status, body) = super::call(&second.proxy, "/mcp", &ops, &call).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "POST");
    assert_eq!(second.echo.requests().len(), 1);
}

/// A response that is an error or a non-2xx status.
trait CutOff {
    fn is_err_or_not_ok(&self) -> bool;
}

impl CutOff for reqwest::Result<reqwest::Response> {
    fn is_err_or_not_ok(&self) -> bool {
        match self {
            Err(_) => true,
            Ok(r) => !r.status().is_success(),
        }
    }
}
