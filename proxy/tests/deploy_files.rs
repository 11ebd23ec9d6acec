//! The ops files under `deploy/` load, and every metric they query is one the proxy registers.
//!
//! Registered names are the `"palisade_…"` string literals of `proxy/src` (every metric is created
//! from one: `Opts::new("palisade_…", …)`), cross-checked against a live registry — not a list kept
//! here.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn literals(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            literals(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("\"palisade_").skip(1) {
                if let Some(end) = piece.find('"') {
                    let rest = &piece[..end];
                    if !rest.is_empty()
                        && rest
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        out.insert(format!("palisade_{rest}"));
                    }
                }
            }
        }
    }
}

/// Every metric family the proxy registers.
fn registered() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    literals(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut names,
    );
    // Cross-check: what a fresh registry gathers (families without series are hidden) is a subset.
    let metrics = palisade_proxy::telemetry::Metrics::new(prometheus::Registry::new()).unwrap();
    let gathered: Vec<String> = metrics
        .registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    assert!(gathered.len() >= 5, "{gathered:?}");
    for name in &gathered {
        // The standard `process_*` families come from the process collector
        // (`telemetry/process.rs`), which names them like every Prometheus client library.
        if name.starts_with("process_") {
            names.insert(name.clone());
            continue;
        }
        assert!(
            names.contains(name),
            "{name} registered but not found in the sources"
        );
    }
    if cfg!(target_os = "linux") {
        assert!(names.contains("process_resident_memory_bytes"), "{names:?}");
    }
    names
}

/// `palisade_*` and `process_*` names used in `text`, with histogram suffixes folded to the
/// family name.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = used_with(text, "palisade_");
    out.extend(used_with(text, "process_"));
    out
}

fn used_with(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find(prefix) {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        if boundary && name.len() > prefix.len() {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_string());
        }
        i = end.max(start + 1);
    }
    out
}

#[test]
fn alerts_are_valid_yaml_over_registered_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).expect("alerts.yml is YAML");
    let rules = doc["groups"][0]["rules"]
        .as_sequence()
        .expect("groups[0].rules");
    let names: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for required in [
        "PalisadeHighErrorRate",
        "PalisadeHighLatencyP99",
        "PalisadeGuardrailSpike",
        "PalisadePolicyReloadFailed",
        "PalisadeRateLimiterRedisFallback",
        "PalisadeAuditDrops",
        "PalisadeDown",
        "PalisadeJwksRefreshFailing",
        "PalisadeAuditRefusing",
    ] {
        assert!(names.contains(&required), "no {required} in {names:?}");
    }
    for rule in rules {
        assert!(
            rule["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "{rule:?}"
        );
    }
    let registered = registered();
    let used = used(&text);
    assert!(used.len() >= 6, "{used:?}");
    for name in &used {
        assert!(
            registered.contains(name),
            "alerts.yml uses unknown metric {name}"
        );
    }
}

/// The GitHub-style anchors of the headings of `markdown` (`### PalisadeDown` → `palisadedown`).
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section_in_operations_md() {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let anchors = anchors(&docs);
    assert!(anchors.contains("runbooks"), "{anchors:?}");
    let rules = doc["groups"][0]["rules"].as_sequence().unwrap();
    assert!(rules.len() >= 9);
    for rule in rules {
        let alert = rule["alert"].as_str().expect("an alerting rule");
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
        let anchor = url
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{alert}: {url} is not a section of docs/operations.md"));
        assert_eq!(
            anchor,
            alert.to_lowercase(),
            "{alert}: one section per alert"
        );
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/operations.md has no section #{anchor}"
        );
    }
}

/// `promtool` (Debian/Ubuntu package `prometheus`; tests/run.sh installs it) checks the rules
/// and runs their unit tests, `deploy/prometheus/alerts.test.yml`.
#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let dir = root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs (apt-get install prometheus; tests/run.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dashboard_is_valid_json_over_registered_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana/palisade.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("palisade.json is JSON");
    let panels = doc["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let registered = registered();
    let used = used(&exprs.join("\n"));
    for name in &used {
        assert!(
            registered.contains(name),
            "the dashboard uses unknown metric {name}"
        );
    }
    // The dashboard covers every family the proxy exports.
    for name in &registered {
        assert!(used.contains(name), "the dashboard shows nothing of {name}");
    }
}

#[test]
fn the_metrics_reference_documents_every_metric() {
    let docs = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    for name in registered() {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/operations.md does not list {name}"
        );
    }
}
