//! The configuration's identity: a hash of the effective tree (after overrides), and which
//! top-level sections a new file changes.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The effective configuration's identity: a hash of the whole tree (after overrides) and a
/// canonical form of each top-level section, to tell which sections a new file changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// 16 hex digits of SHA-256 over the canonical JSON of the effective tree.
    pub hash: String,
    sections: BTreeMap<String, String>,
}

impl Fingerprint {
    /// Fingerprints `text` with the overrides in `env` applied. Comments, key order and
    /// formatting do not change it; any value does.
    pub fn of(text: &str, env: &[(String, String)]) -> Result<Self, String> {
        crate::config::check_budget(text)?;
        let mut tree: yaml_serde::Value =
            yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        if tree.is_null() {
            tree = yaml_serde::Value::Mapping(Default::default());
        }
        let errors = crate::config::env::apply(&mut tree, env.iter().cloned());
        if let Some(e) = errors.first() {
            return Err(e.to_string());
        }
        let tree = serde_json::to_value(&tree).map_err(|e| e.to_string())?;
        let mut sections: BTreeMap<String, String> = match &tree {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect(),
            _ => BTreeMap::new(),
        };
        // The routes' tool lock files are part of the configuration: a re-pinned lock is a new
        // version (reloaded on SIGHUP, named by the audit records' `config_hash`).
        let locks = lock_digests(&tree);
        if let Some(routes) = sections.get_mut("routes") {
            routes.push_str(&locks);
        }
        let digest = Sha256::digest((canonical(&tree) + &locks).as_bytes());
        Ok(Self {
            hash: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
            sections,
        })
    }

    /// The sections whose value differs between `self` and `other` (absent counts as a value).
    pub fn changed(&self, other: &Fingerprint) -> Vec<String> {
        let mut names: Vec<&String> = self.sections.keys().chain(other.sections.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|n| self.sections.get(*n) != other.sections.get(*n))
            .cloned()
            .collect()
    }
}

/// The SHA-256 of each file a route names whose content is configuration
/// ([`crate::config::stages::ROUTE_FILES`], e.g. `tool_integrity.lock`); `""` when no route
/// names one; a file that cannot be read counts as its error, which validation reports.
fn lock_digests(tree: &Value) -> String {
    let mut out = String::new();
    let routes = tree.get("routes").and_then(Value::as_array);
    let files = routes.into_iter().flatten().flat_map(|r| {
        crate::config::stages::ROUTE_FILES
            .iter()
            .filter_map(|pointer| r.pointer(pointer).and_then(Value::as_str))
    });
    for path in files {
        let content = std::fs::read(path).unwrap_or_else(|e| e.to_string().into_bytes());
        let digest = Sha256::digest(&content);
        out.push_str(&format!(
            "\nlock {path}: {}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
    }
    out
}

/// JSON with every object's keys sorted (the tree keeps file order).
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_layout_and_names_changed_sections() {
        let a = Fingerprint::of("routes: []\nserver: {threads: 2}\n", &[]).unwrap();
        let same =
            Fingerprint::of("# a comment\nserver:\n  threads: 2\nroutes: []\n", &[]).unwrap();
        assert_eq!(a, same);
        assert_eq!(a.hash.len(), 16);
        let b = Fingerprint::of("routes: [{name: x}]\nserver: {threads: 2}\n", &[]).unwrap();
        assert_ne!(a.hash, b.hash);
        assert_eq!(a.changed(&b), vec!["routes".to_string()]);
        let c = Fingerprint::of("routes: []\n", &[]).unwrap();
        assert_eq!(a.changed(&c), vec!["server".to_string()]);
    }

    #[test]
    fn overrides_count_in_the_fingerprint() {
        let env = vec![("PALISADE_SERVER__THREADS".to_string(), "4".to_string())];
        let plain = Fingerprint::of("server: {threads: 2}\n", &[]).unwrap();
        let over = Fingerprint::of("server: {threads: 2}\n", &env).unwrap();
        assert_ne!(plain.hash, over.hash);
        assert_eq!(plain.changed(&over), vec!["server".to_string()]);
    }

    #[test]
    fn broken_yaml_is_an_error_not_a_panic() {
        assert!(Fingerprint::of("routes: [", &[]).is_err());
        assert!(Fingerprint::of("", &[]).is_ok());
    }
}
