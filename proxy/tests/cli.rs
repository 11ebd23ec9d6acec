//! The `palisade` binary: `validate` over every shipped config, error reporting, `dev` end to
//! end (the README's first command), and the container helpers (`healthcheck`, `assertion-key`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `palisade validate -c FILE` (with the secret the Supabase examples read from the environment).
fn validate(file: &std::path::Path) -> std::process::Output {
    palisade()
        .arg("validate")
        .arg("-c")
        .arg(file)
        .env("SUPABASE_JWT_SECRET", "x".repeat(40))
        // The browser-session examples: a client secret and a 32-byte cookie key (base64).
        .env("PALISADE_OIDC_CLIENT_SECRET", "x".repeat(20))
        .env("PALISADE_SESSION_KEY", "A".repeat(43) + "=")
        .output()
        .unwrap()
}

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every YAML file under `dir`, recursively.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_config_validates() {
    let mut files = Vec::new();
    yaml_files(&repo_root().join("config"), &mut files);
    yaml_files(&repo_root().join("examples"), &mut files);
    let palisade_configs: Vec<_> = files
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("routes:"))
        .collect();
    assert!(palisade_configs.len() >= 2, "found {palisade_configs:?}");
    for file in palisade_configs {
        let out = validate(&file);
        assert!(
            out.status.success(),
            "{} does not validate:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

#[test]
fn validate_prints_every_error_with_its_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "admin: {address: 10.1.2.3:9901}\nupstreams:\n  a: {address: \"127.0.0.1:1\"}\nroutes:\n  \
         - {name: x, match: {path_prefix: nope}, upstream: b}\n  - {name: x, match: {methods: [get]}, upstream: a}\n",
    )
    .unwrap();
    let out = palisade()
        .arg("validate")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "admin.address",
        "routes[0].match.path_prefix",
        "routes[0].upstream",
        "routes[1].name",
        "routes[1].match.methods[0]",
    ] {
        assert!(
            stderr.contains(&format!(": {path}: ")),
            "{path} missing in:\n{stderr}"
        );
    }
    assert!(stderr.contains("5 error(s)"), "{stderr}");

    std::fs::write(
        &file,
        "listeners:\n  - address: 127.0.0.1:1\n    tls_cert: x\n",
    )
    .unwrap();
    let out = palisade()
        .arg("validate")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listeners[0].tls_cert"), "{stderr}");

    let out = palisade()
        .arg("validate")
        .arg("-c")
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Every ```yaml block in docs/authentication.md is a complete, valid config.
#[test]
fn authentication_doc_examples_validate() {
    let doc = std::fs::read_to_string(repo_root().join("docs/authentication.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|block| block.contains("routes:"))
        .collect();
    assert!(blocks.len() >= 3, "Keycloak, Supabase and Auth0 examples");
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let file = dir.path().join(format!("auth-{i}.yaml"));
        std::fs::write(&file, block).unwrap();
        let out = validate(&file);
        assert!(
            out.status.success(),
            "example {i} does not validate:\n{block}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `palisade keys create | list | revoke` on a keys file: the secret is printed once, only its
/// hash is stored, and revocation shows in the listing.
#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let out = palisade()
        .args(["keys", "create", "-f"])
        .arg(&file)
        .args([
            "--owner",
            "ci-bot",
            "--role",
            "agent_operator",
            "--expires-in",
            "30d",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("pk_"), "{token}");
    let stored = std::fs::read_to_string(&file).unwrap();
    let secret = &token[token.len() - 20..];
    assert!(!stored.contains(secret), "the secret is not stored");
    assert!(stored.contains("sha256:"));
    let id = token
        .trim_start_matches("pk_")
        .split('_')
        .next()
        .unwrap()
        .to_string();

    let list = palisade()
        .args(["keys", "list", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.contains(&id) && listing.contains("active") && listing.contains("agent_operator"),
        "{listing}"
    );

    let out = palisade()
        .args(["keys", "revoke", "-f"])
        .arg(&file)
        .arg(&id)
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = palisade()
        .args(["keys", "list", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("revoked"));

    let out = palisade()
        .args(["keys", "revoke", "-f"])
        .arg(&file)
        .arg("nope")
        .output()
        .unwrap();
    assert!(!out.status.success(), "revoking an unknown id fails");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The image's config (deploy/docker/palisade.yaml) with what a pod mounts: the policies and
/// the secrets, at paths the test makes (env overrides, as in a pod spec).
#[test]
fn the_container_config_validates_with_its_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("assertion-key.pem");
    let out = palisade()
        .args(["assertion-key", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let kid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(kid.len(), 16, "prints the kid: {kid}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the private key is not world-readable");
    // Never overwrites a key (a rotation keeps the old one as a previous key).
    let again = palisade()
        .args(["assertion-key", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    // The JWKS it prints names the key by the same kid, with no private part.
    let out = palisade()
        .args(["assertion-key", "jwks"])
        .arg(&key)
        .output()
        .unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    assert!(jwks["keys"][0].get("d").is_none());

    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, "keys: []\n").unwrap();
    let checkpoint = dir.path().join("audit-checkpoint.key");
    let out = palisade()
        .args(["audit", "keygen"])
        .arg(&checkpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(dir.path().join("admin-token"), "t".repeat(40)).unwrap();
    let file = repo_root().join("deploy/docker/palisade.yaml");
    let out = palisade()
        .arg("validate")
        .arg("-c")
        .arg(&file)
        .env(
            "PALISADE_AUTHORIZATION__POLICY_SETS__0__PATH",
            repo_root().join("policies"),
        )
        .env("PALISADE_AUTHENTICATION__API_KEYS__FILE", &keys)
        .env("PALISADE_AUTHENTICATION__ASSERTION__SIGNING_KEY_FILE", &key)
        .env(
            "PALISADE_AUTHENTICATION__REVOCATION__ADMIN_TOKEN_FILE",
            dir.path().join("admin-token"),
        )
        .env("PALISADE_AUDIT__CHECKPOINT__KEY_FILE", &checkpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The commit the binary says it was built from: `git rev-parse` of this checkout, or `unknown`
/// where there is no git (the build script's own fallback).
fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[test]
fn version_names_the_commit() {
    let out = palisade().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("palisade {} ({})", env!("CARGO_PKG_VERSION"), commit())
    );
}

/// The README's first command: `palisade dev` starts proxy + orchestrator, prints a curl line
/// that streams through the proxy, and exits cleanly on SIGTERM.
#[test]
fn dev_serves_the_stream_it_prints_and_drains_on_sigterm() {
    let (listen, admin, orch) = (free_port(), free_port(), free_port());
    let mut child = palisade()
        .args(["dev", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--orchestrator", &format!("127.0.0.1:{orch}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let mut lines = stdout.lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    assert!(banner.contains("curl -N"), "no curl line in:\n{banner}");
    // Run the printed command (joined, as a shell would) and check it streams an AG-UI run.
    let curl_start = banner.find("curl -N").unwrap();
    let curl_end = banner[curl_start..]
        .find("\n\n")
        .map_or(banner.len(), |i| curl_start + i);
    let curl = banner[curl_start..curl_end].replace("\\\n", " ");
    let export = banner
        .lines()
        .find(|l| l.starts_with("export PALISADE_TOKEN="))
        .expect("dev prints a token to use");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{export}; {curl} --max-time 20 -sS"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        body.starts_with("data: {\"type\":\"RUN_STARTED\""),
        "{body}"
    );
    assert!(
        body.contains("TEXT_MESSAGE_CONTENT") && body.trim_end().ends_with("}"),
        "{body}"
    );
    assert!(body.contains("\"RUN_FINISHED\""), "{body}");

    // The viewer's token, printed beside it, shows a policy deciding: viewers may not run agents.
    let viewer = banner
        .lines()
        .find(|l| l.starts_with("export PALISADE_TOKEN_VIEWER="))
        .expect("dev prints a token per seed role")
        .replace("PALISADE_TOKEN_VIEWER=", "PALISADE_TOKEN=");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{viewer}; {curl} --max-time 20 -sS -w ' %{{http_code}}'"
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.ends_with(" 403") && body.contains("\"FORBIDDEN\""),
        "{body}"
    );

    // Without the token the same request is refused with the documented body.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{curl} --max-time 20 -sS -o /dev/null -w '%{{http_code}}'"
        ))
        .env_remove("PALISADE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    // Transparent huge pages are off for the process (idle streams would otherwise hold memory
    // 2 MiB at a time; docs/performance.md). Kernels before 6.x don't show the flag.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }

    // The probe the image's HEALTHCHECK and the pod's exec probes run.
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    let probe = |url: &str| {
        palisade()
            .args(["healthcheck", "--url", url])
            .output()
            .unwrap()
    };
    let out = probe(&readyz);
    assert!(out.status.success(), "{out:?}");

    // What is running, on /metrics: the version and the commit `--version` names.
    let metrics = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{admin}/metrics"))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let info = format!(
        "palisade_build_info{{git_sha=\"{}\",version=\"{}\"}} 1",
        commit(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&info), "no `{info}` in /metrics");

    // SIGTERM: drains (nothing live) and exits 0.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "palisade did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Gone: the probe fails, and says why.
    let out = probe(&readyz);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&readyz),
        "{out:?}"
    );
}

/// `policy export` writes exactly the seed set of `policies/` (so a file added there but not
/// compiled in is caught), refuses to overwrite, and `policy test -p builtin` runs its tests.
#[test]
fn the_builtin_policies_export_and_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = palisade()
        .args(["policy", "export"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut exported = Vec::new();
    let mut shipped = Vec::new();
    for (root, list) in [
        (dir.path().to_path_buf(), &mut exported),
        (repo_root().join("policies"), &mut shipped),
    ] {
        for sub in ["", "tests"] {
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let name = Path::new(sub).join(path.file_name().unwrap());
                    list.push((name, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        list.sort();
    }
    assert_eq!(exported, shipped, "export = policies/");
    let again = palisade()
        .args(["policy", "export"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success(), "no overwrite without --force");
    let out = palisade()
        .args(["policy", "test", "-p", "builtin"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(" 0 failed") && !stdout.contains(" 0 passed"),
        "{stdout}"
    );
}

/// Completions for each shell name every subcommand (and the bash one parses); man pages are
/// written for the command and each subcommand.
#[test]
fn completions_and_man_pages_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = palisade().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in ["healthcheck", "assertion-key", "policy", "export"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        if shell == "bash" {
            let file = dir.path().join("palisade.bash");
            std::fs::write(&file, script.as_bytes()).unwrap();
            let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(syntax.status.success(), "{syntax:?}");
        }
    }
    let man = dir.path().join("man1");
    let out = palisade().arg("man").arg(&man).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(man.join("palisade.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH palisade 1"),
        "{page}"
    );
    for sub in [
        "palisade-dev.1",
        "palisade-policy-export.1",
        "palisade-healthcheck.1",
    ] {
        let text = std::fs::read_to_string(man.join(sub)).unwrap();
        assert!(text.contains(".SH SYNOPSIS"), "{sub}");
    }
}

/// `palisade run` of a config without any credential source: the printed curl gets 401, and the
/// banner says so and how to add credentials.
#[test]
fn the_banner_says_why_its_curl_needs_credentials() {
    let (listen, admin) = (free_port(), free_port());
    let mut child = palisade()
        .args(["run", "-c"])
        .arg(repo_root().join("examples/basic/palisade.yaml"))
        .env(
            "PALISADE_LISTENERS__0__ADDRESS",
            format!("127.0.0.1:{listen}"),
        )
        .env("PALISADE_ADMIN__ADDRESS", format!("127.0.0.1:{admin}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    let start = banner.find("curl -N").expect("a curl line");
    let end = banner[start..]
        .find("\n  (")
        .map_or(banner.len(), |i| start + i);
    let curl = banner[start..end].replace("\\\n", " ");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{curl} --max-time 10 -s -o /dev/null -w '%{{http_code}}'"
        ))
        .output()
        .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    assert!(
        banner.contains("requires authentication") && banner.contains("palisade keys create"),
        "{banner}"
    );
}

/// `palisade run` reloads its config file on SIGHUP (the file watch is off here:
/// `reload_interval: 0s`), and `/readyz` names the configuration now running.
#[test]
fn sighup_reloads_the_config_file() {
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palisade.yaml");
    let v1 = format!(
        "listeners: [{{address: \"127.0.0.1:{listen}\"}}]\nadmin: {{address: \"127.0.0.1:{admin}\"}}\n\
         server: {{reload_interval: 0s, log_level: warn}}\n\
         upstreams: {{app: {{address: \"127.0.0.1:9\"}}}}\n\
         routes:\n  - {{name: api, match: {{path_prefix: /api}}, upstream: app, auth: optional}}\n"
    );
    std::fs::write(&file, &v1).unwrap();
    let mut child = palisade()
        .args(["run", "-c"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let readyz = |want: &str| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let out = Command::new("curl")
                .args(["-s", "--max-time", "2"])
                .arg(format!("http://127.0.0.1:{admin}/readyz"))
                .output()
                .unwrap();
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            if body.lines().any(|l| l == want) {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "no `{want}`:\n{body}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let before = readyz("config_reloads: 0");
    let v2 = v1.replace("path_prefix: /api", "path_prefix: /v2");
    std::fs::write(&file, v2).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let after = readyz("config_reloads: 1");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let hash = |b: &str| {
        b.lines()
            .find(|l| l.starts_with("config_hash: "))
            .map(str::to_string)
    };
    assert!(hash(&before).is_some());
    assert_ne!(hash(&before), hash(&after));
}
