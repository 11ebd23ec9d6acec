//! The `palisade-orchestrator` binary: config file, `--listen`, JSON logs, SIGTERM shutdown.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_palisade-orchestrator");

#[tokio::test]
async fn serves_from_a_config_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("orchestrator.yaml");
    // The file asks for a fixed port; --listen overrides it with port 0. No proxy in front, so
    // no assertion is required; sessions stay in memory.
    std::fs::write(
        &config,
        "listen: 127.0.0.1:1\nword_delay: 1ms\nidentity: {require_assertion: false}\n\
         store: {backend: sqlite, path: \":memory:\"}\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["-c", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The first log line is JSON and names the bound address.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a log line")
        .unwrap()
        .expect("stdout open");
    let log: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(log["level"], "INFO", "{log}");
    let addr = log["fields"]["listen"]
        .as_str()
        .expect("listen field")
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let health = http()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let run = http()
        .post(format!("http://{addr}/agent"))
        .body(
            r#"{"threadId":"t","runId":"r","messages":[{"id":"u","role":"user","content":"hi"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let body = run.text().await.unwrap();
    assert!(
        body.ends_with("data: {\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n")
    );

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn rejects_a_config_with_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "word_delay: 5\n").unwrap();
    let output = Command::new(BIN)
        .args(["-c", config.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("word_delay"), "{stderr}");
}

#[test]
fn validate_reports_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "max_iterations: 0\nmodel: {base_url: 'ftp://x'}\ntls: {ca_file: /nonexistent/ca.pem}\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let file = bad.display().to_string();
    for path in ["max_iterations", "model.base_url", "tls.ca_file"] {
        assert!(
            stderr.contains(&format!("{file}: {path}: ")),
            "{path}:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/orchestrator.yaml");
    let out = std::process::Command::new(BIN)
        .args(["validate", shipped])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn config_schema_prints_the_committed_schema() {
    let out = std::process::Command::new(BIN)
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed = include_str!("../../config/schema/orchestrator.schema.json");
    assert_eq!(printed, committed);
}

/// A client for the orchestrator under test (plain HTTP; rustls configured as the binaries do).
fn http() -> reqwest::Client {
    palisade_orchestrator::tls::Trust::default()
        .client_builder()
        .build()
        .unwrap()
}
