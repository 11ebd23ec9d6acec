//! The registry keeps a stage's wiring in one place: outside its own folder, a stage's module is
//! named only where this file's header says a stage is wired (`config/spec.rs`,
//! `config/stages.rs`)
//! and by the commands and admin endpoints that are features of their own.

use std::path::{Path, PathBuf};

/// Each stage wired through the registry, and the files outside its folder that are its own
/// features (a CLI command, an admin endpoint), not wiring.
const STAGES: &[(&str, &[&str])] = &[
    ("integrity", &["cli/tools.rs"]),
    ("approvals", &["admin/approvals.rs"]),
];

/// Where a stage may be wired, besides `lib.rs` (`pub mod`) and `pipeline.rs` (its hook
/// calls, which go through the `Stages` field, never the module).
const WIRING: &[&str] = &["config/spec.rs", "config/stages.rs"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn a_stage_is_wired_in_the_registry_spec_and_pipeline_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(
        files.len() > 50,
        "read {} files under {}",
        files.len(),
        root.display()
    );
    for (stage, features) in STAGES {
        let own = [format!("{stage}.rs"), format!("{stage}/")];
        let needle = format!("crate::{stage}");
        let mut naming: Vec<String> = files
            .iter()
            .filter_map(|path| {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if own.iter().any(|o| rel == *o || rel.starts_with(o.as_str())) {
                    return None;
                }
                let text = std::fs::read_to_string(path).unwrap();
                // Code, not comments: a doc line may point a reader at the stage.
                let names = text
                    .lines()
                    .any(|l| !l.trim_start().starts_with("//") && l.contains(&needle));
                names.then_some(rel)
            })
            .collect();
        naming.sort();
        let stray: Vec<&String> = naming
            .iter()
            .filter(|rel| !WIRING.contains(&rel.as_str()) && !features.contains(&rel.as_str()))
            .collect();
        assert!(
            stray.is_empty(),
            "`{needle}` is named outside the registry (config/stages.rs) and the config spec: {stray:?}; \
             wire the stage in config/stages.rs (see its header)"
        );
        assert!(
            naming.iter().any(|rel| rel == "config/stages.rs"),
            "the registry does not wire `{stage}`: {naming:?}"
        );
    }
}
