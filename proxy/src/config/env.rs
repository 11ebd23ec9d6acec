//! `PALISADE_*` environment overrides, applied to the parsed YAML tree before typing.
//!
//! A variable `PALISADE_<PATH>` sets the field at `<PATH>`, where path segments are separated by
//! a double underscore and sequence entries are addressed by index:
//!
//! ```text
//! PALISADE_ADMIN__ADDRESS=127.0.0.1:9902        admin.address
//! PALISADE_SERVER__DRAIN_TIMEOUT=5s            server.drain_timeout
//! PALISADE_LISTENERS__0__ADDRESS=0.0.0.0:8080  listeners[0].address
//! PALISADE_UPSTREAMS__ORCHESTRATOR__ADDRESS=…  upstreams.orchestrator.address
//! ```
//!
//! Values are read as YAML scalars, so `true`, `42` and `5s` get their natural types. Only
//! variables whose first segment names a top-level config field are applied; others (such as
//! `PALISADE_TOKEN`) are left alone.

use yaml_serde::{Mapping, Value};

use super::FieldError;

/// Top-level fields of [`super::spec::ConfigSpec`] that an override may start with, read from
/// its JSON Schema so a new section is overridable the day it is added.
fn roots() -> &'static [String] {
    static ROOTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let schema = super::schema();
        schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    })
}

/// The overridable sections (for tests).
#[cfg(test)]
pub(crate) fn tests_support_roots() -> &'static [String] {
    roots()
}

/// The field path each applicable override in `vars` sets (`listeners[0].address`), with the
/// variable's name: errors about those fields come from the environment, not the file.
pub fn overridden(vars: &[(String, String)]) -> Vec<(String, String)> {
    vars.iter()
        .filter_map(|(name, _)| {
            let path = name.strip_prefix("PALISADE_")?.to_ascii_lowercase();
            let first = path.split("__").next()?.to_string();
            if !roots().contains(&first) {
                return None;
            }
            let mut field = String::new();
            for segment in path.split("__") {
                if segment.parse::<usize>().is_ok() {
                    field.push_str(&format!("[{segment}]"));
                } else {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(segment);
                }
            }
            Some((field, name.clone()))
        })
        .collect()
}

/// Applies every override in `vars` to `root`; returns one error per variable it could not apply.
pub fn apply(
    root: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let path = k.strip_prefix("PALISADE_")?.to_ascii_lowercase();
            let first = path.split("__").next()?.to_string();
            roots().contains(&first).then_some((k, path, v))
        })
        .collect();
    // Deterministic order, so that `listeners__0` is created before `listeners__0__address`.
    vars.sort();
    for (name, path, raw) in vars {
        let segments: Vec<&str> = path.split("__").collect();
        let value = yaml_serde::from_str::<Value>(&raw).unwrap_or(Value::String(raw));
        if let Err(message) = set(root, &segments, value) {
            errors.push(FieldError {
                path: segments.join("."),
                message: format!("environment override {name}: {message}"),
            });
        }
    }
    errors
}

fn set(node: &mut Value, segments: &[&str], value: Value) -> Result<(), String> {
    let Some((head, rest)) = segments.split_first() else {
        *node = value;
        return Ok(());
    };
    if node.is_null() {
        *node = if head.parse::<usize>().is_ok() {
            Value::Sequence(Vec::new())
        } else {
            Value::Mapping(Mapping::new())
        };
    }
    let child = match node {
        Value::Mapping(map) => {
            let key = Value::String((*head).to_string());
            if !map.contains_key(&key) {
                map.insert(key.clone(), Value::Null);
            }
            map.get_mut(&key).expect("inserted above")
        }
        Value::Sequence(seq) => {
            let index: usize = head
                .parse()
                .map_err(|_| format!("`{head}` is not an index into a list"))?;
            if index > seq.len() {
                return Err(format!(
                    "index {index} skips entries (list has {})",
                    seq.len()
                ));
            }
            if index == seq.len() {
                seq.push(Value::Null);
            }
            &mut seq[index]
        }
        _ => {
            return Err(format!(
                "`{head}` is inside a value that is not a map or list"
            ))
        }
    };
    set(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sets_nested_fields_with_typed_values() {
        let mut root: Value = yaml_serde::from_str("admin: {address: 127.0.0.1:1}").unwrap();
        let errors = apply(
            &mut root,
            vars(&[
                ("PALISADE_ADMIN__ADDRESS", "127.0.0.1:2"),
                ("PALISADE_SERVER__THREADS", "3"),
                ("PALISADE_LISTENERS__0__ADDRESS", "127.0.0.1:3"),
                ("PALISADE_LISTENERS__0__H2C", "false"),
                ("PALISADE_TOKEN", "not a config field"),
                ("HOME", "/root"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(root["admin"]["address"], Value::from("127.0.0.1:2"));
        assert_eq!(root["server"]["threads"], Value::from(3));
        assert_eq!(root["listeners"][0]["address"], Value::from("127.0.0.1:3"));
        assert_eq!(root["listeners"][0]["h2c"], Value::from(false));
        assert!(root.get("token").is_none());
    }

    #[test]
    fn names_the_fields_overrides_set() {
        let set = overridden(&vars(&[
            ("PALISADE_LISTENERS__0__ADDRESS", "127.0.0.1:3"),
            (
                "PALISADE_AUTHENTICATION__API_KEYS__REDIS_URL",
                "redis://x:1",
            ),
            ("PALISADE_TOKEN", "not a config field"),
        ]));
        assert_eq!(
            set,
            [
                (
                    "listeners[0].address".to_string(),
                    "PALISADE_LISTENERS__0__ADDRESS".to_string()
                ),
                (
                    "authentication.api_keys.redis_url".to_string(),
                    "PALISADE_AUTHENTICATION__API_KEYS__REDIS_URL".to_string()
                ),
            ]
        );
    }

    #[test]
    fn reports_overrides_that_cannot_apply() {
        let mut root: Value = yaml_serde::from_str("routes: []\nadmin: 7").unwrap();
        let errors = apply(
            &mut root,
            vars(&[
                ("PALISADE_ROUTES__3__NAME", "x"),
                ("PALISADE_ADMIN__ADDRESS", "y"),
            ]),
        );
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["admin.address", "routes.3.name"]);
    }
}
