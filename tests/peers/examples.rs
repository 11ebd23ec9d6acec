//! Every example's README commands, run as written: the fenced `bash` blocks under its
//! `## Try it` heading form one script, run from the repository root with `bash -euo pipefail`,
//! the workspace's `palisade` / `palisade-orchestrator`, the peers' `python` and `nginx` on
//! `PATH`, and a timeout; every `<!-- try-it-expects: TEXT -->` in the README must appear in the
//! output. The convention is described in `examples/README.md`.
//!
//! The examples use their documented fixed ports (8080, 9901, …) exactly as a newcomer types
//! them, so each script runs in a network namespace of its own (`unshare --net`, loopback only):
//! its ports can't collide with anything on the machine or with another example running at the
//! same time, and nothing it starts can reach outside. Whatever a script started is killed with
//! its process group.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use palisade_e2e::eventually;

use crate::peer::{python, workspace};

/// How long one README's commands may take.
const TIMEOUT: Duration = Duration::from_secs(120);

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
    let label = format!("examples/{name}/README.md `Try it`");
    if let Err(report) = run_script(&label, &try_it, vec![bin_dir()]).await {
        panic!("{report}");
    }
}

/// `unshare` arguments for a new network namespace: as root directly, otherwise inside a user
/// namespace that maps the caller to root (unprivileged user namespaces).
fn unshare_args() -> &'static [&'static str] {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` is owned by the process's effective uid.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        &["--net"]
    } else {
        &["--user", "--map-root-user", "--net"]
    }
}

/// Runs `try_it` as described in the module docs with `path` first on `PATH`, then kills its
/// process group. `Err` carries a report (script, stdout, stderr) saying what went wrong.
async fn run_script(label: &str, try_it: &TryIt, mut path: Vec<PathBuf>) -> Result<(), String> {
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
    // A private loopback: the documented fixed ports are the script's alone.
    let mut child = tokio::process::Command::new("unshare")
        .args(unshare_args())
        .args(["--", "bash", "-c", "ip link set lo up && exec bash \"$0\""])
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
        .expect("unshare (util-linux) runs: the README scripts need a network namespace");
    let pgid = child.id().unwrap();
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await;
    // Stop everything the script started in the background.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let report = |what: String| {
        format!(
            "{label}: {what}\n--- script\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            try_it.script
        )
    };
    match status {
        Err(_) => return Err(report(format!("did not finish within {TIMEOUT:?}"))),
        Ok(status) if !status.as_ref().is_ok_and(|s| s.success()) => {
            return Err(report(format!("failed ({status:?})")))
        }
        Ok(_) => {}
    }
    match try_it.expects.iter().find(|e| !stdout.contains(e.as_str())) {
        Some(missing) => Err(report(format!("output lacks `{missing}`"))),
        None => Ok(()),
    }
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

/// The runner itself: a failing command fails the README, a missing expectation fails it, and
/// what a script leaves running in the background is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_fails_on_errors_and_missing_output_and_kills_leftovers() {
    let script = |script: &str, expects: &[&str]| TryIt {
        script: script.to_string(),
        expects: expects.iter().map(|e| e.to_string()).collect(),
    };
    let err = run_script("t", &script("echo one\nfalse\necho two", &[]), vec![])
        .await
        .unwrap_err();
    assert!(
        err.contains("failed") && err.contains("one") && !err.contains("\ntwo"),
        "{err}"
    );
    let err = run_script(
        "t",
        &script("curl -s http://127.0.0.1:1/ | cat", &[]),
        vec![],
    )
    .await
    .unwrap_err();
    assert!(err.contains("failed"), "pipefail: {err}");
    let err = run_script("t", &script("echo hello", &["goodbye"]), vec![])
        .await
        .unwrap_err();
    assert!(err.contains("output lacks `goodbye`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let leftover = format!(
        "sleep 300 &\necho $! > {}\necho started",
        pid_file.display()
    );
    run_script("t", &script(&leftover, &["started"]), vec![])
        .await
        .unwrap();
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let gone = eventually(Duration::from_secs(5), || {
        // Gone, or a zombie waiting for init to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the background `sleep` ({pid}) survived");
}
