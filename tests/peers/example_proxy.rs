//! Palisade started in-process from an example's own `palisade.yaml`, with only its addresses
//! (and what a test names) overridden the way an operator would: `PALISADE_*` variables.

use std::time::{Duration, Instant};

use palisade_proxy::config::Config;
use palisade_proxy::server::{self, Running, StartOptions};

use crate::peer::workspace;

/// Starts `examples/<example>/palisade.yaml` on free loopback ports (public and admin) with
/// `overrides` (`("PALISADE_UPSTREAMS__AGENT__ADDRESS", "127.0.0.1:1234")`, …) applied.
pub fn start(example: &str, overrides: &[(&str, String)]) -> Running {
    start_edited(example, &[], overrides)
}

/// [`start`], after replacing each `(text, with)` in the file (for fields `PALISADE_*`
/// variables cannot reach); each `text` must occur in it.
pub fn start_edited(
    example: &str,
    edits: &[(&str, String)],
    overrides: &[(&str, String)],
) -> Running {
    let path = workspace()
        .join("examples")
        .join(example)
        .join("palisade.yaml");
    let mut yaml = std::fs::read_to_string(&path).unwrap();
    for (text, with) in edits {
        assert!(yaml.contains(text), "{} has no `{text}`", path.display());
        yaml = yaml.replace(text, with);
    }
    let mut env = vec![
        (
            "PALISADE_LISTENERS__0__ADDRESS".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "PALISADE_ADMIN__ADDRESS".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("PALISADE_SERVER__LOG_LEVEL".to_string(), "warn".to_string()),
    ];
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let config = Config::from_yaml(&yaml, env)
        .unwrap_or_else(|e| panic!("{} is invalid:\n{e}", path.display()));
    server::start(config, StartOptions::default()).expect("palisade starts")
}

/// Waits (up to 20 s) until the admin listener's `/readyz` answers 200 (issuers loaded keys).
pub async fn wait_ready(proxy: &Running) {
    let url = format!("http://{}/readyz", proxy.admin);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = match palisade_e2e::client().get(&url).send().await {
            Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(e) => Err(e.to_string()),
        };
        if matches!(status, Ok((200, _))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered 200: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `http://<public listener><path>`.
pub fn url(proxy: &Running, path: &str) -> String {
    format!("http://{}{}", proxy.listeners[0], path)
}

/// An AG-UI run input with no messages.
pub const RUN_INPUT: &str = r#"{"threadId":"t1","runId":"r1","messages":[],"tools":[],"context":[],"state":{},"forwardedProps":{}}"#;
