//! Step 2 when typing fails: every structural error at once, by walking the YAML tree against the
//! config's JSON Schema.
//!
//! serde stops at the first error, so a file with an unknown field in two places and a wrong type
//! in a third would take three rounds of `palisade validate`. The schema (`schemars`, the same one
//! committed as `config/schema/palisade.schema.json`) describes the same types, so walking the tree
//! against it finds unknown fields, wrong types, unknown enum values and missing required fields in
//! one pass. serde stays the authority: this walk only runs after serde has refused the tree.
//!
//! Each problem also names the smallest part of the file that, removed, leaves a tree serde may
//! accept (an unknown field; an optional field of the wrong type, whose default then applies), so
//! that the semantic checks can still run and report their own errors in the same round.

use schemars::Schema;
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use super::FieldError;
/// One structural problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Field path (`routes[1].match.methods`).
    pub path: String,
    /// What is wrong, in serde's words (`unknown field `x`, expected one of …`).
    pub message: String,
    /// A path whose removal fixes this problem (the field falls back to its default), if any.
    pub remove: Option<Vec<Segment>>,
    /// What the node was expected to be, when the problem is the node's own type or value.
    expected: Option<Vec<String>>,
}

impl From<&Problem> for FieldError {
    fn from(p: &Problem) -> Self {
        FieldError {
            path: if p.path.is_empty() {
                "(root)".into()
            } else {
                p.path.clone()
            },
            message: p.message.clone(),
        }
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Renders segments the way every error in the crate spells paths: `a.b[2].c`.
pub(crate) fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Every structural problem of `tree` against `schema`, in document order of the walk.
pub(crate) fn check(schema: &Schema, tree: &Value) -> Vec<Problem> {
    let empty = Map::new();
    let walker = Walker {
        definitions: schema
            .get("$defs")
            .and_then(Json::as_object)
            .unwrap_or(&empty),
    };
    let mut out = Vec::new();
    walker.check(schema.as_value(), tree, &mut Vec::new(), None, &mut out);
    out
}

/// Removes every `paths` entry (each ending in a mapping key) from `tree`.
pub(crate) fn remove_all(tree: &mut Value, paths: &[Vec<Segment>]) {
    for path in paths {
        let Some((Segment::Key(last), parent)) = path.split_last() else {
            continue;
        };
        if let Some(Value::Mapping(m)) = node_mut(tree, parent) {
            m.remove(last.as_str());
        }
    }
}

fn node_mut<'v>(node: &'v mut Value, path: &[Segment]) -> Option<&'v mut Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    let child = match (first, node) {
        (Segment::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
        (Segment::Index(i), Value::Sequence(seq)) => seq.get_mut(*i),
        _ => None,
    }?;
    node_mut(child, rest)
}

struct Walker<'s> {
    /// The schema's `$defs`.
    definitions: &'s Map<String, Json>,
}

impl<'s> Walker<'s> {
    /// Follows `$ref`s to the schema object they name (`None` for the `true`/`false` schemas).
    fn resolve<'a>(&'a self, schema: &'a Json) -> Option<&'a Map<String, Json>>
    where
        's: 'a,
    {
        let mut schema = schema;
        for _ in 0..32 {
            let o = schema.as_object()?;
            match o.get("$ref").and_then(Json::as_str) {
                Some(r) => {
                    let name = r.rsplit('/').next().unwrap_or(r);
                    schema = self.definitions.get(name)?;
                }
                None => return Some(o),
            }
        }
        None
    }

    fn check(
        &self,
        schema: &Json,
        value: &Value,
        path: &mut Vec<Segment>,
        removable: Option<&[Segment]>,
        out: &mut Vec<Problem>,
    ) {
        let Some(o) = self.resolve(schema) else {
            if *schema == Json::Bool(false) {
                out.push(self.problem(path, removable, "no value is allowed here".into(), None));
            }
            return;
        };
        // A `!tag` selects an enum variant in YAML; serde judges those itself.
        let value = match value {
            Value::Tagged(_) => return,
            v => v,
        };
        for s in subschemas(o, "allOf") {
            self.check(s, value, path, removable, out);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alternatives) = o.get(key).and_then(Json::as_array) {
                self.alternatives(alternatives, value, path, removable, out);
            }
        }
        let types = types(o);
        if !types.is_empty() && !types.iter().any(|t| is_type(value, t)) {
            // `null` is how an optional field is left out; naming it helps nobody.
            let shown: Vec<&str> = match types.len() {
                1 => types.clone(),
                _ => types.iter().copied().filter(|t| *t != "null").collect(),
            };
            let expected: Vec<String> = shown.iter().map(|t| type_name(t).into()).collect();
            let message = format!(
                "invalid type: {}, expected {}",
                describe(value),
                expected.join(" or ")
            );
            out.push(self.problem(path, removable, message, Some(expected)));
            return;
        }
        if let Some(allowed) = allowed_values(o) {
            let json = serde_json::to_value(value).unwrap_or_default();
            if !allowed.contains(&&json) {
                let expected: Vec<String> =
                    allowed.iter().map(|a| format!("`{}`", plain(a))).collect();
                let message = format!(
                    "unknown variant `{}`, expected {}",
                    plain(&json),
                    one_of(&expected)
                );
                out.push(self.problem(path, removable, message, Some(expected)));
                return;
            }
        }
        self.number(o, value, path, removable, out);
        match value {
            Value::Mapping(map) => self.object(o, map, path, removable, out),
            Value::Sequence(items) => {
                // `items` covers every entry; `prefixItems` (tuples) the first ones.
                let prefix = o.get("prefixItems").and_then(Json::as_array);
                for (i, item) in items.iter().enumerate() {
                    let item_schema = match prefix.and_then(|p| p.get(i)) {
                        Some(s) => Some(s),
                        None => o.get("items"),
                    };
                    if let Some(s) = item_schema {
                        path.push(Segment::Index(i));
                        // A broken list entry cannot be dropped without renumbering the rest.
                        self.check(s, item, path, None, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }

    fn object(
        &self,
        o: &Map<String, Json>,
        map: &yaml_serde::Mapping,
        path: &mut Vec<Segment>,
        removable: Option<&[Segment]>,
        out: &mut Vec<Problem>,
    ) {
        let empty = Map::new();
        let properties = o
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = o
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                out.push(self.problem(
                    path,
                    removable,
                    format!("invalid key {}, expected a string", describe(key)),
                    None,
                ));
                continue;
            };
            path.push(Segment::Key(key.to_string()));
            if let Some(s) = properties.get(key) {
                let own = path.clone();
                let removable = if required.contains(&key) {
                    removable.map(<[Segment]>::to_vec)
                } else {
                    Some(own)
                };
                self.check(s, value, path, removable.as_deref(), out);
            } else {
                match o.get("additionalProperties") {
                    Some(Json::Bool(false)) => {
                        let known: Vec<String> =
                            properties.keys().map(|k| format!("`{k}`")).collect();
                        let message = if known.is_empty() {
                            format!("unknown field `{key}`, there are no fields")
                        } else {
                            format!("unknown field `{key}`, expected {}", one_of(&known))
                        };
                        out.push(Problem {
                            path: render(path),
                            message,
                            remove: Some(path.clone()),
                            expected: None,
                        });
                    }
                    // A named entry (`upstreams.<name>`): other fields may refer to it by name.
                    Some(s) => self.check(s, value, path, None, out),
                    None => {}
                }
            }
            path.pop();
        }
        for field in required {
            if !map.contains_key(field) {
                path.push(Segment::Key(field.to_string()));
                out.push(Problem {
                    path: render(path),
                    message: format!("missing field `{field}`"),
                    remove: None,
                    expected: None,
                });
                path.pop();
            }
        }
    }

    fn number(
        &self,
        o: &Map<String, Json>,
        value: &Value,
        path: &[Segment],
        removable: Option<&[Segment]>,
        out: &mut Vec<Problem>,
    ) {
        let Value::Number(n) = value else { return };
        let Some(x) = n.as_f64() else { return };
        let max = match o.get("format").and_then(Json::as_str) {
            Some("uint8") => Some(f64::from(u8::MAX)),
            Some("uint16") => Some(f64::from(u16::MAX)),
            Some("uint32") => Some(f64::from(u32::MAX)),
            _ => None,
        };
        let min = o.get("minimum").and_then(Json::as_f64);
        let max = o.get("maximum").and_then(Json::as_f64).or(max);
        let message = match (min, max) {
            (Some(min), _) if x < min => format!("invalid value: {n}, expected at least {min}"),
            (_, Some(max)) if x > max => format!("invalid value: {n}, expected at most {max}"),
            _ => return,
        };
        out.push(self.problem(path, removable, message, None));
    }

    /// `anyOf` / `oneOf`: fine when one alternative fits; otherwise the problems of the closest
    /// alternative, or one message listing what would have fit.
    fn alternatives(
        &self,
        alternatives: &[Json],
        value: &Value,
        path: &mut Vec<Segment>,
        removable: Option<&[Segment]>,
        out: &mut Vec<Problem>,
    ) {
        let here = render(path);
        let mut tried = Vec::new();
        for s in alternatives {
            let mut problems = Vec::new();
            self.check(s, value, path, removable, &mut problems);
            if problems.is_empty() {
                return;
            }
            tried.push(problems);
        }
        // Alternatives that accept this kind of node (their problems lie deeper) come first.
        let shallow = |p: &Vec<Problem>| p.iter().any(|p| p.path == here && p.expected.is_some());
        if let Some(best) = tried.iter().filter(|p| !shallow(p)).min_by_key(|p| p.len()) {
            out.extend(best.iter().cloned());
            return;
        }
        let mut expected: Vec<String> = Vec::new();
        for p in tried.iter().flatten().filter(|p| p.path == here) {
            for e in p.expected.iter().flatten() {
                if !expected.contains(e) {
                    expected.push(e.clone());
                }
            }
        }
        let message = if let (Value::String(s), true) =
            (value, expected.iter().any(|e| e.starts_with('`')))
        {
            format!("unknown variant `{s}`, expected {}", one_of(&expected))
        } else {
            format!(
                "invalid type: {}, expected {}",
                describe(value),
                one_of(&expected)
            )
        };
        out.push(self.problem(path, removable, message, Some(expected)));
    }

    fn problem(
        &self,
        path: &[Segment],
        removable: Option<&[Segment]>,
        message: String,
        expected: Option<Vec<String>>,
    ) -> Problem {
        Problem {
            path: render(path),
            message,
            remove: removable.map(<[Segment]>::to_vec),
            expected,
        }
    }
}

fn one_of(items: &[String]) -> String {
    match items {
        [] => "something else".into(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    }
}

fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The schemas under `key` (`allOf`, …) of a schema object.
fn subschemas<'a>(o: &'a Map<String, Json>, key: &str) -> impl Iterator<Item = &'a Json> {
    o.get(key).and_then(Json::as_array).into_iter().flatten()
}

/// The JSON types a schema object allows (`type: x` or `type: [x, y]`); empty when it names none.
fn types(o: &Map<String, Json>) -> Vec<&str> {
    match o.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The values an `enum` or a `const` allows.
fn allowed_values(o: &Map<String, Json>) -> Option<Vec<&Json>> {
    if let Some(values) = o.get("enum").and_then(Json::as_array) {
        return Some(values.iter().collect());
    }
    o.get("const").map(|c| vec![c])
}

fn is_type(value: &Value, t: &str) -> bool {
    match (t, value) {
        ("null", Value::Null) => true,
        ("boolean", Value::Bool(_)) => true,
        ("string", Value::String(_)) => true,
        ("array", Value::Sequence(_)) => true,
        ("object", Value::Mapping(_)) => true,
        ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn type_name(t: &str) -> &str {
    match t {
        "null" => "nothing (null)",
        "boolean" => "a boolean",
        "object" => "a mapping",
        "array" => "a list",
        "number" => "a number",
        "string" => "a string",
        "integer" => "an integer",
        other => other,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            let more = if short.len() < s.len() { "…" } else { "" };
            format!("string \"{short}{more}\"")
        }
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("tagged value !{}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        let schema = crate::config::schema();
        let tree: Value = yaml_serde::from_str(yaml).unwrap();
        check(&schema, &tree)
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    #[test]
    fn valid_config_has_no_problems() {
        let tree: Value = yaml_serde::from_str(crate::config::EMBEDDED_DEV_CONFIG).unwrap();
        let schema = crate::config::schema();
        assert_eq!(check(&schema, &tree), []);
    }

    #[test]
    fn finds_every_problem_in_one_pass() {
        let found = problems(
            "server: {threads: many, colour: red}\n\
             routes:\n  - {name: a, match: {path_prefix: /}, upstream: u, protocol: soap, bogus: 1}\n  \
             - {match: {path_prefix: /}, upstream: u}\n",
        );
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.threads",
                "server.colour",
                "routes[0].protocol",
                "routes[0].bogus",
                "routes[1].name"
            ],
            "{found:#?}"
        );
        assert!(found[0]
            .1
            .starts_with("invalid type: string \"many\", expected an integer"));
        assert!(found[1]
            .1
            .starts_with("unknown field `colour`, expected one of"));
        assert!(found[2]
            .1
            .starts_with("unknown variant `soap`, expected one of `http`"));
        assert_eq!(found[4].1, "missing field `name`");
    }

    #[test]
    fn removal_targets_only_optional_fields() {
        let schema = crate::config::schema();
        let yaml = "server: {threads: many, colour: red}\nroutes:\n  - {match: {path_prefix: 7}}\n";
        let mut tree: Value = yaml_serde::from_str(yaml).unwrap();
        let found = check(&schema, &tree);
        let removals: Vec<_> = found
            .iter()
            .map(|p| (p.path.as_str(), p.remove.as_deref().map(render)))
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            removals,
            [
                ("server.threads", some("server.threads")),
                ("server.colour", some("server.colour")),
                // Optional (default `/`): removing it fixes the route.
                (
                    "routes[0].match.path_prefix",
                    some("routes[0].match.path_prefix")
                ),
                // Required: nothing to remove.
                ("routes[0].name", None),
                ("routes[0].upstream", None),
            ],
            "{found:#?}"
        );
        let fixable: Vec<_> = found.iter().filter_map(|p| p.remove.clone()).collect();
        remove_all(&mut tree, &fixable);
        assert_eq!(render_yaml(&tree["server"]), "{}\n");
    }

    fn render_yaml(v: &Value) -> String {
        yaml_serde::to_string(v).unwrap()
    }
}
