//! Stamps the git commit into the binary (`palisade --version`, `palisade_build_info`).
//!
//! `PALISADE_GIT_SHA` wins when set (a build without `.git`, e.g. the container builder);
//! otherwise `git rev-parse`, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PALISADE_GIT_SHA");
    let sha = std::env::var("PALISADE_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PALISADE_GIT_SHA={sha}");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = std::path::Path::new(&dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let file = dir.join(&branch);
            // A packed ref has no file of its own; `packed-refs` changes instead.
            let watched = if file.exists() {
                file
            } else {
                dir.join("packed-refs")
            };
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
}
