//! The A2A client against a real a2a-sdk agent: 1.0 `SendMessage`, 0.3 `message/send`, a retry
//! after a `503` from a gateway in front of it, and the final statuses when it never comes back.

use palisade_orchestrator::a2a::{
    A2aClient, A2aConfig, A2aOutcome, A2aProtocol, ERROR_MAX_RETRIES,
};

use super::peers::{flaky_gateway, Agent};

fn fast(cfg: A2aConfig) -> A2aConfig {
    A2aConfig {
        initial_backoff: std::time::Duration::from_millis(50),
        attempt_timeout: std::time::Duration::from_millis(10_000),
        ..cfg
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_1_0_and_message_send_0_3_against_a_real_agent() {
    let agent = tokio::task::spawn_blocking(|| Agent::start(true))
        .await
        .unwrap();
    let url = agent.url.parse().unwrap();
    for protocol in [A2aProtocol::V1, A2aProtocol::V0_3, A2aProtocol::Auto] {
        let client = A2aClient::new(
            &fast(A2aConfig {
                protocol,
                ..A2aConfig::default()
            }),
            &palisade_orchestrator::tls::Trust::default(),
        )
        .unwrap();
        match client.send(&url, "find the runbook").await {
            A2aOutcome::Completed {
                task_id,
                state,
                text,
                attempts,
                ..
            } => {
                assert_eq!(text, "Delegated: find the runbook", "{protocol:?}");
                assert_eq!(state, "completed", "{protocol:?}");
                assert!(task_id.is_some_and(|t| !t.is_empty()), "{protocol:?}");
                assert_eq!(attempts, 1);
            }
            other => panic!("{protocol:?}: {other:?}"),
        }
    }
    assert_eq!(agent.served().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_the_task_runs_once() {
    let agent = tokio::task::spawn_blocking(|| Agent::start(false))
        .await
        .unwrap();
    let gateway = flaky_gateway(&agent, 1).await;
    let client = A2aClient::new(
        &fast(A2aConfig::default()),
        &palisade_orchestrator::tls::Trust::default(),
    )
    .unwrap();
    let outcome = client
        .send(
            &format!("http://{}/a2a", gateway.addr).parse().unwrap(),
            "page the on-call",
        )
        .await;
    assert!(
        matches!(&outcome, A2aOutcome::Completed { text, attempts: 2, .. } if text == "Delegated: page the on-call"),
        "{outcome:?}"
    );
    assert_eq!(gateway.requests().len(), 2, "one 503, one forwarded");
    assert_eq!(agent.served().await, 1, "the agent ran the task once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stays_down_ends_in_error_max_retries() {
    let agent = tokio::task::spawn_blocking(|| Agent::start(false))
        .await
        .unwrap();
    let gateway = flaky_gateway(&agent, usize::MAX).await;
    let client = A2aClient::new(
        &fast(A2aConfig {
            max_retries: 2,
            ..A2aConfig::default()
        }),
        &palisade_orchestrator::tls::Trust::default(),
    )
    .unwrap();
    let outcome = client
        .send(
            &format!("http://{}/a2a", gateway.addr).parse().unwrap(),
            "x",
        )
        .await;
    assert!(
        matches!(&outcome, A2aOutcome::Failed { status: ERROR_MAX_RETRIES, attempts: 3, detail } if detail.contains("503")),
        "{outcome:?}"
    );
    assert_eq!(gateway.requests().len(), 3);
    assert_eq!(agent.served().await, 0);
}
