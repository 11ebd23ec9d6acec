//! Config hot reload under load: routes and upstreams change live with no request failed, a
//! stream started before the reload finishes under its old configuration, changes that need a
//! restart and invalid files are refused with the running configuration kept, and TLS
//! certificates reload when their files change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_e2e::upstream::{self, SseScript};
use palisade_e2e::{eventually, sse_client, TestProxy};

/// The config of one version: `api` and `events` routes to upstream `app`, plus `extra`.
fn version(app: std::net::SocketAddr, events: std::net::SocketAddr, audit: &str) -> TestProxy {
    TestProxy::new()
        .server_yaml("reload_interval: 50ms")
        .upstream("app", app)
        .upstream("events", events)
        .route("api", "/api", "app", "")
        .route("events", "/events", "events", "")
        .top_yaml(&format!(
            "audit:\n  file: {{path: \"{audit}\", fsync: batch}}\n  queue_capacity: 4096\n"
        ))
}

async fn readyz(proxy: &palisade_e2e::Proxy) -> String {
    palisade_e2e::client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn field<'a>(readyz: &'a str, name: &str) -> Option<&'a str> {
    readyz
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// Replaces the config file whole, as a deployment or an editor's save does (a new file renamed
/// over the old): `std::fs::write` truncates first, and the 50 ms poll can read the half-written
/// file, which Palisade refuses too, making one more failure than the test counts.
fn replace(file: &std::path::Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let next = file.with_extension("next");
    std::fs::write(&next, text)?;
    std::fs::rename(&next, file)
}

/// Polls `/readyz` until `name` reads `value`.
async fn wait_for(proxy: &palisade_e2e::Proxy, name: &str, value: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = readyz(proxy).await;
        if field(&body, name) == Some(value) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {value}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_moves_traffic_and_fails_no_request() {
    let (old, new) = (upstream::echo().await, upstream::echo().await);
    let events = upstream::sse(SseScript {
        interval: Duration::from_millis(40),
        count: 30,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (file, audit) = (
        dir.path().join("palisade.yaml"),
        dir.path().join("audit.jsonl"),
    );
    let audit_s = audit.display().to_string();
    let proxy = version(old.addr, events.addr, &audit_s).start_from_file(&file);
    let first = readyz(&proxy).await;
    assert!(first.starts_with("ready\n"), "{first}");
    let first_hash = field(&first, "config_hash").unwrap().to_string();
    assert_eq!(first_hash.len(), 16);

    // Load: 4 clients on kept-alive connections until told to stop (bounded in count and time).
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, url) = (stop.clone(), proxy.url("/api/x"));
        load.push(tokio::spawn(async move {
            let client = palisade_e2e::client();
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && ok < 20_000 && Instant::now() < deadline {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    // A stream that starts before the reload and must finish whole after it.
    let stream = {
        let url = proxy.url("/events/run");
        tokio::spawn(async move {
            let resp = palisade_e2e::client().get(&url).send().await.unwrap();
            sse_client::read(resp, None, Duration::from_secs(10)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = palisade_e2e::client();
    assert_eq!(
        client
            .get(proxy.url("/new/x"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // v2: `app` moves to the new upstream and a route is added.
    let v2 = version(new.addr, events.addr, &audit_s).route("added", "/new", "app", "");
    replace(&file, v2.yaml()).unwrap();
    let body = wait_for(&proxy, "config_reloads", "1").await;
    let second_hash = field(&body, "config_hash").unwrap().to_string();
    assert_ne!(second_hash, first_hash);
    assert_eq!(
        client
            .get(proxy.url("/new/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Every request that starts from now on goes to `new` (requests that started under v1 may
    // still be finishing on `old`: those are not counted, whatever the machine's load).
    for i in 0..20 {
        let url = proxy.url(&format!("/api/after/{i}"));
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }
    let after = |u: &upstream::Upstream| {
        u.requests()
            .iter()
            .filter(|r| r.path.starts_with("/api/after/"))
            .count()
    };
    assert_eq!(after(&old), 0, "the old upstream still gets new requests");
    assert_eq!(after(&new), 20, "the new upstream gets every new request");

    // A change that needs a restart is refused whole: v2 stays, traffic goes on.
    let moved = v2.yaml().replace(
        "admin:\n  address: 127.0.0.1:0\n",
        "admin:\n  address: 127.0.0.1:1\n",
    );
    replace(&file, moved).unwrap();
    let body = wait_for(&proxy, "config_reload_failures", "1").await;
    assert_eq!(field(&body, "config_hash"), Some(second_hash.as_str()));
    let error = field(&body, "config_last_reload_error").unwrap();
    assert!(
        error.starts_with("admin: changed, but the admin listener is bound at start"),
        "{error}"
    );

    // An invalid file is refused with the field's path; v2 stays.
    let invalid = v2.yaml().replace("upstream: app", "upstream: nowhere");
    replace(&file, invalid).unwrap();
    let body = wait_for(&proxy, "config_reload_failures", "2").await;
    assert_eq!(field(&body, "config_hash"), Some(second_hash.as_str()));
    let error = field(&body, "config_last_reload_error").unwrap();
    assert!(error.contains("routes[0].upstream"), "{error}");
    // Positions and paths only: /readyz needs no credentials, and a value may be one.
    assert!(!error.contains("nowhere"), "{error}");

    // Reverting the file to the running version clears the refusal (and the alert's gauge).
    replace(&file, v2.yaml()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = readyz(&proxy).await;
        if field(&body, "config_last_reload_error").is_none() {
            assert_eq!(field(&body, "config_reload_failures"), Some("2"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refusal never cleared:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back to a good file: applied, the failure cleared.
    replace(&file, v2.yaml().replace("/new", "/newer")).unwrap();
    let body = wait_for(&proxy, "config_reloads", "2").await;
    assert_eq!(field(&body, "config_last_reload_error"), None);
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during reloads: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 100, "only {total} requests ran");
    let streamed = stream.await.unwrap();
    let seqs: Vec<u64> = streamed
        .json()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(
        seqs,
        (0..30).collect::<Vec<_>>(),
        "the stream across the reload"
    );

    let metrics = palisade_e2e::client()
        .get(proxy.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("palisade_config_reloads_total{result=\"success\"} 2"));
    assert!(metrics.contains("palisade_config_reloads_total{result=\"failure\"} 2"));
    assert!(metrics.contains("palisade_config_last_reload_successful 1"));
    proxy.stop().await;

    // Every record names the configuration that decided it: both versions are in the trail.
    let trail = std::fs::read_to_string(&audit).unwrap();
    let hashes: std::collections::BTreeSet<String> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| r["config_hash"].as_str().unwrap().to_string())
        .collect();
    assert!(hashes.contains(&first_hash), "{hashes:?}");
    assert!(hashes.contains(&second_hash), "{hashes:?}");
}

/// A comment or a reordering is not a change; SIGHUP-equivalent reloads of the same file are
/// no-ops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_configuration_is_not_reloaded() {
    let echo = upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palisade.yaml");
    let builder = TestProxy::new()
        .server_yaml("reload_interval: 0s")
        .upstream("app", echo.addr)
        .route("api", "/api", "app", "");
    let yaml = builder.yaml();
    let proxy = builder.start_from_file(&file);
    replace(&file, format!("# edited\n{yaml}")).unwrap();
    let outcome = tokio::task::block_in_place(|| proxy.running.config.reload("test"));
    assert_eq!(outcome, palisade_proxy::reload::Outcome::Unchanged);
    let status = proxy.running.config.status();
    assert_eq!((status.reloads, status.failed_reloads), (0, 0));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let issue = || rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let first = issue();
    std::fs::write(&cert_path, first.cert.pem()).unwrap();
    std::fs::write(&key_path, first.key_pair.serialize_pem()).unwrap();
    let echo = upstream::echo().await;
    let proxy = TestProxy::new()
        .listener_yaml(&format!(
            "    tls: {{cert: \"{}\", key: \"{}\"}}\n",
            cert_path.display(),
            key_path.display()
        ))
        .server_yaml("reload_interval: 50ms")
        .upstream("echo", echo.addr)
        .route("echo", "/", "echo", "")
        .start();
    let url = format!("https://localhost:{}/x", proxy.addr().port());
    // A fresh client per call: each handshake sees the certificate served now.
    let trusting = |pem: String| {
        let root = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
        palisade_e2e::client_builder()
            .tls_certs_only([root])
            .resolve("localhost", proxy.addr())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    assert_eq!(
        trusting(first.cert.pem())
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let second = issue();
    std::fs::write(&cert_path, second.cert.pem()).unwrap();
    std::fs::write(&key_path, second.key_pair.serialize_pem()).unwrap();
    let mut served = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if trusting(second.cert.pem()).get(&url).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the renewed certificate is never served");
    assert!(
        trusting(first.cert.pem()).get(&url).send().await.is_err(),
        "the old certificate is still served"
    );
    let reloaded = eventually(Duration::from_secs(5), || {
        let m = proxy.running.metrics.registry.gather();
        m.iter()
            .find(|f| f.name() == "palisade_certificate_reloads_total")
            .map(|f| f.get_metric().len())
    })
    .await;
    assert!(reloaded.is_some_and(|n| n >= 1));

    // A key that doesn't match the certificate is refused: the renewed pair keeps serving and
    // the alerting gauge says the files on disk are not what is served, until they are again.
    let certificate_ok = || {
        proxy
            .running
            .metrics
            .registry
            .gather()
            .iter()
            .find(|f| f.name() == "palisade_certificate_last_reload_successful")
            .and_then(|f| {
                f.get_metric()
                    .iter()
                    .find(|m| {
                        m.get_label()
                            .iter()
                            .any(|l| l.name() == "material" && l.value() == "certificate")
                    })
                    .map(|m| m.get_gauge().get_value())
            })
    };
    assert_eq!(certificate_ok(), Some(1.0));
    let stranger = issue();
    std::fs::write(&key_path, stranger.key_pair.serialize_pem()).unwrap();
    eventually(Duration::from_secs(5), || {
        (certificate_ok() == Some(0.0)).then_some(())
    })
    .await
    .expect("the mismatched pair is refused");
    assert!(trusting(second.cert.pem()).get(&url).send().await.is_ok());
    std::fs::write(&key_path, second.key_pair.serialize_pem()).unwrap();
    eventually(Duration::from_secs(5), || {
        (certificate_ok() == Some(1.0)).then_some(())
    })
    .await
    .expect("the matching pair is applied again");
    proxy.stop().await;
}
