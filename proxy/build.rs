//! Stamps the git commit into the binary (`palisade --version`, `palisade_build_info`).
//!
//! `PALISADE_GIT_SHA` wins when set (a build without `.git`, e.g. the container builder);
//! otherwise `git rev-parse`, else `unknown`.

use std::path::{Path, PathBuf};
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
    // Rebuild when HEAD moves. Watched only where the file exists (cargo reruns a script that
    // watches a missing file on every build): HEAD itself (a checkout), its reflog (every
    // commit, checkout and reset writes a line), and the branch ref, loose or packed, in the
    // common directory (a worktree's own git directory holds only its HEAD).
    let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) else {
        return;
    };
    let (dir, common) = (PathBuf::from(dir), PathBuf::from(common));
    let mut watched = vec![dir.join("HEAD"), dir.join("logs/HEAD")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(&branch));
        watched.push(common.join("packed-refs"));
    }
    for path in watched.iter().filter(|p| Path::exists(p)) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
