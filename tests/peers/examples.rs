//! Every example's README commands, run as written: the fenced `bash` blocks under its
//! `## Try it` heading form one script, run from the repository root with `bash -euo pipefail`,
//! the workspace's `palisade` / `palisade-orchestrator`, the peers' `python` and `nginx` on
//! `PATH`, and a timeout; every `<!-- try-it-expects: TEXT -->` in the README must appear in the
//! output. The convention is described in `examples/README.md`.
//!
//! The examples use their documented fixed ports (8080, 9901, …), so these tests run one at a
//! time: a file lock serializes them (and the `fixed-ports` group in `.config/nextest.toml`
//! keeps nextest from starting them together), and each fails at once, saying so, when a port is
//! already taken by something else. Whatever a script started is killed with its process group.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use palisade_e2e::eventually;

use crate::peer::{python, workspace};

/// How long one README's commands may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Ports the examples document; none may be in use when a script starts.
const PORTS: [u16; 7] = [8000, 8001, 8002, 8080, 8081, 8088, 9901];

/// The `## Try it` section of a README: its `bash` blocks and the expected output snippets.
#[derive(Debug)]
struct TryIt {
    script: String,
    expects: Vec<String>,
}

fn try_it(readme: &str) -> Option<TryIt> {
    let section = readme.split("\n## ").find(|s| s.starts_with("Try it"))?;
    let blocks: Vec<&str> = section
        .split("```bash\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .collect();
    if blocks.is_empty() {
        return None;
    }
    let expects = readme
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<!-- try-it-expects:"))
        .filter_map(|l| l.strip_suffix("-->"))
        .map(|l| l.trim().to_string())
        .collect();
    Some(TryIt {
        script: blocks.join("\n"),
        expects,
    })
}

/// The directory with the workspace's binaries (`target/debug`), next to this test's executable.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps")
        .to_path_buf();
    for bin in ["palisade", "palisade-orchestrator"] {
        let path = dir.join(bin);
        let built = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| {
                panic!(
                    "{} is missing: build the binaries first (`cargo build -p palisade-proxy \
                     -p palisade-orchestrator`; `cargo nextest run --workspace` does)",
                    path.display()
                )
            });
        // The README commands must run what the sources say, not an older build: cargo's
        // dep-info file next to the binary lists every source file it was built from.
        let deps = std::fs::read_to_string(dir.join(format!("{bin}.d"))).unwrap_or_default();
        let newer = deps
            .split_once(": ")
            .map(|(_, sources)| sources.split_whitespace().map(PathBuf::from))
            .into_iter()
            .flatten()
            .find(|src| {
                std::fs::metadata(src)
                    .and_then(|m| m.modified())
                    .is_ok_and(|at| at > built)
            });
        assert!(
            newer.is_none(),
            "{} is older than {}: rebuild it (`cargo build -p palisade-proxy -p \
             palisade-orchestrator`; `cargo nextest run --workspace` does)",
            path.display(),
            newer.unwrap_or_default().display()
        );
    }
    dir
}

/// Holds the lock that keeps README scripts from running at the same time.
fn serialize() -> File {
    let path = workspace().join("target/examples-try-it.lock");
    let file = File::create(&path).unwrap();
    file.lock().unwrap();
    file
}

fn port_in_use(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err() || TcpListener::bind(("0.0.0.0", port)).is_err()
}

/// Runs the `## Try it` commands of `examples/<name>/README.md`.
async fn run_readme(name: &str) {
    let readme_path = workspace().join("examples").join(name).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let try_it = try_it(&readme).unwrap_or_else(|| {
        panic!(
            "{} has no `## Try it` section with ```bash blocks (see examples/README.md)",
            readme_path.display()
        )
    });
    let _lock = serialize();
    let busy: Vec<u16> = PORTS.into_iter().filter(|p| port_in_use(*p)).collect();
    assert!(
        busy.is_empty(),
        "ports {busy:?} are in use on this machine; the README commands of examples/{name} use \
         the documented fixed ports"
    );

    let mut path = vec![bin_dir()];
    // `python` (not `python3`, the system's) is the peers' venv with the examples' packages.
    let venv_python = try_it
        .script
        .match_indices("python")
        .any(|(i, m)| !try_it.script[i + m.len()..].starts_with('3'));
    if venv_python {
        path.push(python().parent().unwrap().to_path_buf());
    }
    path.push(PathBuf::from("/usr/sbin"));
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));

    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("try-it.sh");
    std::fs::write(
        &script_path,
        format!("set -euo pipefail\n{}\n", try_it.script),
    )
    .unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = tokio::process::Command::new("bash")
        .arg(&script_path)
        .current_dir(workspace())
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("PALISADE_SERVER__LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs");
    let pgid = child.id().unwrap();
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await;
    // Stop everything the script started in the background, and wait until it is gone (the
    // next example needs the ports).
    kill_group(pgid);
    let gone = eventually(Duration::from_secs(10), || {
        (!group_alive(pgid)).then_some(())
    })
    .await;
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let report = format!(
        "examples/{name}/README.md `Try it`:\n--- script\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        try_it.script
    );
    let status = status.unwrap_or_else(|_| panic!("did not finish within {TIMEOUT:?}\n{report}"));
    assert!(status.unwrap().success(), "failed\n{report}");
    assert!(
        gone.is_some(),
        "processes it started survived SIGKILL\n{report}"
    );
    for expected in &try_it.expects {
        assert!(
            stdout.contains(expected.as_str()),
            "output lacks `{expected}`\n{report}"
        );
    }
}

fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn group_alive(pgid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

macro_rules! readme_tests {
    ($($test:ident => $dir:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run_readme($dir).await;
            }
        )*

        /// Every example directory has its README commands run by one of the tests above.
        #[test]
        fn every_example_is_covered() {
            let covered = [$($dir),*];
            let mut missing = Vec::new();
            for entry in std::fs::read_dir(workspace().join("examples")).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().to_string();
                if entry.path().is_dir() && !covered.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
            assert!(missing.is_empty(), "examples without a README test: {missing:?}");
        }
    };
}

readme_tests! {
    try_it_a2a_agent => "a2a-agent",
    try_it_basic => "basic",
    try_it_keycloak => "keycloak",
    try_it_mcp_server => "mcp-server",
    try_it_nginx_front => "nginx-front",
    try_it_pydantic_ai_agent => "pydantic-ai-agent",
    try_it_supabase => "supabase",
}

#[test]
fn try_it_sections_are_found_with_their_expectations() {
    let readme = "# X\n\n## Setup\n\n```bash\nnot run\n```\n\n## Try it\n\ntext\n\n```bash\necho one\n```\n\
                  <!-- try-it-expects: one -->\n\n```sh\nnot run either\n```\n\n```bash\necho two\n```\n\n\
                  ## Later\n\n```bash\nnot run\n```\n";
    let t = try_it(readme).unwrap();
    assert_eq!(t.script, "echo one\necho two");
    assert_eq!(t.expects, vec!["one".to_string()]);
    assert!(try_it("# X\n\n## Try it\n\n```sh\nx\n```\n").is_none());
}
