//! Policy sets over time and side by side: a shadow set decides and records but never blocks, and
//! a reload that fails validation keeps the last good set live (and the proxy ready).

use std::path::Path;
use std::time::Duration;

use palisade_e2e::{client, eventually, Proxy};

use super::{metric, post, repo_policies, run_agent_decisions, run_input, stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_sets_decide_and_record_but_never_block() {
    let deny_all = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_policies().join("palisade.cedarschema"),
        deny_all.path().join("palisade.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        deny_all.path().join("lockdown.cedar"),
        "@id(\"lockdown\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let seed = repo_policies();
    let s = stack(&[
        ("main", &seed, "enforce"),
        ("next", deny_all.path(), "shadow"),
    ])
    .await;
    let (status, _) = post(&s.proxy, "/agent", &s.issuer.role("user"), &run_input(&[])).await;
    assert_eq!(
        status, 200,
        "the enforcing set allows; the shadow deny does not block"
    );
    assert_eq!(run_agent_decisions(&s.proxy, "deny", "shadow", "next"), 1.0);

    // A shadow set alone never blocks.
    let s = stack(&[("next", deny_all.path(), "shadow")]).await;
    let viewer = s.issuer.role("viewer");
    let (status, _) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 200);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Waits until `palisade_policy_reloads_total{result}` is at least 1.
async fn reload_seen(proxy: &Proxy, result: &str) -> bool {
    let line = format!("palisade_policy_reloads_total{{result=\"{result}\"}}");
    eventually(Duration::from_secs(10), || {
        (metric(proxy, &line) >= 1.0).then_some(())
    })
    .await
    .is_some()
}

async fn readyz(proxy: &Proxy) -> u16 {
    let resp = client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_policies(), dir.path());
    let s = stack(&[("main", dir.path(), "enforce")]).await;
    let viewer = s.issuer.role("viewer");
    let (status, _) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 403);
    assert_eq!(readyz(&s.proxy).await, 200);

    // A policy that fails strict validation: refused, the old set stays live.
    std::fs::write(
        dir.path().join("viewer-agents.cedar"),
        "@id(\"viewer-agents\")\npermit (principal in Role::\"viewer\", action == Action::\"run_agent\", resource)\nwhen { resource.owner == \"me\" };\n",
    )
    .unwrap();
    assert!(
        reload_seen(&s.proxy, "failure").await,
        "the broken file was seen and refused"
    );
    let (status, _) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 403, "still the last good set");
    let (status, _) = post(&s.proxy, "/agent", &s.issuer.role("user"), &run_input(&[])).await;
    assert_eq!(status, 200, "still the last good set");
    assert_eq!(
        readyz(&s.proxy).await,
        200,
        "a refused reload does not make the proxy unready"
    );

    // Fixed: the new set goes live.
    std::fs::write(
        dir.path().join("viewer-agents.cedar"),
        "@id(\"viewer-agents\")\npermit (principal in Role::\"viewer\", action == Action::\"run_agent\", resource);\n",
    )
    .unwrap();
    assert!(reload_seen(&s.proxy, "success").await);
    let (status, body) = post(&s.proxy, "/agent", &viewer, &run_input(&[])).await;
    assert_eq!(status, 200, "{body}");
}
