//! A tool call's arguments as Cedar sees them: the tags of `Arguments::"call"`.
//!
//! Each top-level argument is one tag — strings as they are, other values as their JSON text —
//! except that **filesystem paths reach Cedar normalized**, so that a policy author's obvious
//! rule (`getTag("path") like "/etc/*"`) holds against `//etc/passwd` or
//! `/tmp/../etc/passwd`. A string argument is a path when
//!
//! - the tool's catalog entry lists it in `path_arguments` (normalized even when relative), or
//! - it starts with `/` (an absolute path, whatever the tool; a URL path such as `/v1/x` is
//!   unchanged by normalization unless it has dot segments or duplicate slashes).
//!
//! Normalization is [`normalize_fs_path`] (the path canonicalizer's dot-segment and duplicate-
//! slash logic, filesystem flavour: no percent-decoding, `..` stops at `/`). When it changes the
//! value, the original stays available as the tag `<name>@raw` — for `policy explain` and for
//! policies that want to refuse non-canonical paths outright (`context.arguments.hasTag
//! ("path@raw")`). The request body forwarded upstream is not changed. Symbolic links are not
//! resolved (they cannot be, lexically): policies refuse `/proc/*/root` and `/proc/*/cwd`
//! themselves (policies/abac.cedar). docs/policies.md, "Path arguments".

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::route::canonical::normalize_fs_path;

/// Suffix of the tag that keeps a normalized argument's original value.
pub const RAW_SUFFIX: &str = "@raw";

/// The tags of `Arguments::"call"` for `arguments` (a JSON object; anything else has none);
/// `path_arguments` are the argument names the tool's catalog entry marks as paths.
pub fn argument_tags(
    arguments: Option<&Value>,
    path_arguments: Option<&BTreeSet<String>>,
) -> HashMap<String, String> {
    let Some(map) = arguments.and_then(Value::as_object) else {
        return HashMap::new();
    };
    let mut tags = HashMap::with_capacity(map.len());
    for (name, value) in map {
        let Value::String(text) = value else {
            tags.insert(name.clone(), value.to_string());
            continue;
        };
        let is_path =
            text.starts_with('/') || path_arguments.is_some_and(|p| p.contains(name.as_str()));
        let normalized = if is_path {
            normalize_fs_path(text)
        } else {
            text.as_str().into()
        };
        if normalized != text.as_str() {
            tags.insert(format!("{name}{RAW_SUFFIX}"), text.clone());
        }
        tags.insert(name.clone(), normalized.into_owned());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(args: Value, paths: &[&str]) -> HashMap<String, String> {
        let paths: BTreeSet<String> = paths.iter().map(|s| s.to_string()).collect();
        argument_tags(Some(&args), Some(&paths))
    }

    #[test]
    fn absolute_paths_are_normalized_and_the_raw_form_kept() {
        let t = tags(
            json!({"path": "/tmp/../etc/passwd", "n": 3, "other": "//etc//shadow"}),
            &[],
        );
        assert_eq!(t["path"], "/etc/passwd");
        assert_eq!(t["path@raw"], "/tmp/../etc/passwd");
        assert_eq!(t["other"], "/etc/shadow");
        assert_eq!(t["n"], "3");
        assert!(!t.contains_key("n@raw"));
    }

    #[test]
    fn catalogued_path_arguments_are_normalized_even_when_relative() {
        let t = tags(
            json!({"path": "./data/../../etc", "text": "a/../b"}),
            &["path"],
        );
        assert_eq!(t["path"], "../etc");
        assert_eq!(t["path@raw"], "./data/../../etc");
        // Not a path argument and not absolute: left alone.
        assert_eq!(t["text"], "a/../b");
        assert!(!t.contains_key("text@raw"));
    }

    #[test]
    fn normal_values_get_no_raw_tag() {
        let t = tags(json!({"path": "/srv/data.txt", "q": "hello"}), &["path"]);
        assert_eq!(t.len(), 2);
        assert_eq!(argument_tags(Some(&json!([1, 2])), None).len(), 0);
        assert_eq!(argument_tags(None, None).len(), 0);
    }
}
