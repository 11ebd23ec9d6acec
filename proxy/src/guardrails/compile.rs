//! From [`RuleSetSpec`] to [`RuleSet`]: built-in rules, overrides, custom rules, matchers.
//! Every problem is reported with its field path (relative to the rule set).

use aho_corasick::{AhoCorasick, MatchKind};

use super::builtin::{Pattern, Verify, BUILTIN};
use super::detect::{self, NormMatcher, RawMatcher, RequestChecks, Rule, RuleSet};
use super::normalize::normalize;
use super::spec::{Action, MatchOn, RuleSetSpec};

/// `(field path, message)` of one problem.
pub type SpecError = (String, String);

enum Source {
    Phrases(Vec<String>),
    Raw(String),
    Norm(String),
}

impl RuleSet {
    /// The built-in `default` rule set with default settings.
    pub fn builtin_default() -> RuleSet {
        RuleSet::compile("default", &RuleSetSpec::default()).expect("built-in rules compile")
    }

    /// Compiles a rule set; errors carry paths relative to the rule set.
    pub fn compile(name: &str, spec: &RuleSetSpec) -> Result<RuleSet, Vec<SpecError>> {
        let mut errors: Vec<SpecError> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();

        for (i, id) in spec.disable.iter().enumerate() {
            if !BUILTIN.iter().any(|b| b.id == id) {
                errors.push((format!("disable[{i}]"), format!("no built-in rule `{id}`")));
            }
        }
        for id in spec.overrides.keys() {
            if !BUILTIN.iter().any(|b| b.id == id) {
                errors.push((
                    format!("overrides.{id}"),
                    format!("no built-in rule `{id}`"),
                ));
            }
        }
        if spec.builtin {
            for b in BUILTIN
                .iter()
                .filter(|b| !spec.disable.iter().any(|d| d == b.id))
            {
                let mut rule = Rule {
                    id: b.id.to_string(),
                    input: b.input,
                    output: b.output,
                    locations: b.locations.to_vec(),
                    ignore_in_urls: b.ignore_in_urls,
                    verify: b.verify,
                    label: b.label.to_string(),
                };
                if let Some(o) = spec.overrides.get(b.id) {
                    let at = format!("overrides.{}", b.id);
                    if let Some(a) = o.input {
                        rule.input = a.action();
                    }
                    if let Some(a) = o.output {
                        rule.output = a.action();
                    }
                    if let Some(l) = &o.locations {
                        rule.locations = l.clone();
                    }
                    if let Some(u) = o.ignore_in_urls {
                        rule.ignore_in_urls = u;
                    }
                    let phrases = matches!(b.pattern, Pattern::Phrases(_));
                    check_actions(&rule, phrases, &at, &mut errors);
                }
                rules.push(rule);
                sources.push(match b.pattern {
                    Pattern::Phrases(list) => Source::Phrases(
                        list.iter()
                            .map(|p| normalize(p).trim().to_string())
                            .collect(),
                    ),
                    Pattern::Raw(re) => Source::Raw(re.to_string()),
                });
            }
        }

        for (i, r) in spec.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let id_ok = !r.id.is_empty()
                && r.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !id_ok {
                errors.push((
                    format!("{at}.id"),
                    "use 1 or more of A-Z a-z 0-9 _ - .".into(),
                ));
            } else if rules.iter().any(|x| x.id == r.id) {
                errors.push((
                    format!("{at}.id"),
                    format!("rule `{}` is defined twice", r.id),
                ));
            }
            let source = match (&r.regex, r.phrases.is_empty()) {
                (Some(_), false) | (None, true) => {
                    errors.push((
                        at.clone(),
                        "set exactly one of `phrases` and `regex`".into(),
                    ));
                    continue;
                }
                (Some(re), true) => {
                    let compiled = match r.on {
                        MatchOn::Raw => detect::raw_regex(std::slice::from_ref(re)).map(|_| ()),
                        MatchOn::Normalized => {
                            detect::norm_regex(std::slice::from_ref(re)).map(|_| ())
                        }
                    };
                    if let Err(e) = compiled {
                        errors.push((format!("{at}.regex"), format!("invalid regex: {e}")));
                        continue;
                    }
                    match r.on {
                        MatchOn::Raw => Source::Raw(re.clone()),
                        MatchOn::Normalized => Source::Norm(re.clone()),
                    }
                }
                (None, false) => {
                    let mut list = Vec::new();
                    for (j, p) in r.phrases.iter().enumerate() {
                        let n = normalize(p).trim().to_string();
                        if n.is_empty() {
                            errors.push((
                                format!("{at}.phrases[{j}]"),
                                "has no letters or digits once normalized".into(),
                            ));
                        }
                        list.push(n);
                    }
                    Source::Phrases(list)
                }
            };
            let rule = Rule {
                id: r.id.clone(),
                input: r.input,
                output: r.output,
                locations: r.locations.clone(),
                ignore_in_urls: r.ignore_in_urls,
                verify: Verify::None,
                label: r
                    .id
                    .rsplit('.')
                    .next()
                    .unwrap_or("MATCH")
                    .to_ascii_uppercase(),
            };
            if rule.input.is_none() && rule.output.is_none() {
                errors.push((at.clone(), "set `input`, `output` or both".into()));
            }
            check_actions(&rule, !matches!(source, Source::Raw(_)), &at, &mut errors);
            rules.push(rule);
            sources.push(source);
        }

        if spec.request.max_json_depth == 0 {
            errors.push(("request.max_json_depth".into(), "must be at least 1".into()));
        }
        if spec.request.max_message_bytes == 0 {
            errors.push((
                "request.max_message_bytes".into(),
                "must be at least 1".into(),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut raw_patterns = Vec::new();
        let mut raw_rules = Vec::new();
        let mut raw_shared = Vec::new();
        let mut phrases = Vec::new();
        let mut phrase_rules = Vec::new();
        let mut norm_patterns = Vec::new();
        let mut norm_rules = Vec::new();
        for (idx, source) in sources.into_iter().enumerate() {
            match source {
                Source::Raw(p) => {
                    raw_shared.push(
                        rules[idx].verify != Verify::None
                            || rules[idx].id == "pii.phone"
                            || rules[idx].id == "pii.ip_address",
                    );
                    raw_patterns.push(p);
                    raw_rules.push(idx);
                }
                Source::Norm(p) => {
                    norm_patterns.push(p);
                    norm_rules.push(idx);
                }
                Source::Phrases(list) => {
                    for p in list {
                        phrases.push(p);
                        phrase_rules.push(idx);
                    }
                }
            }
        }
        let fail = |what: &str, e: String| vec![(String::new(), format!("{what}: {e}"))];
        let raw = if raw_patterns.is_empty() {
            None
        } else {
            Some(RawMatcher {
                digit_led: raw_shared
                    .iter()
                    .any(|s| *s)
                    .then(|| raw_shared.iter().filter(|s| !**s).count()),
                regexes: group_raw(&raw_patterns, &raw_shared)
                    .map_err(|e| fail("raw patterns", e))?,
                live: detect::live_dfa(&raw_patterns).map_err(|e| fail("raw patterns", e))?,
                rules: raw_rules,
            })
        };
        let window = phrases
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(if norm_patterns.is_empty() { 0 } else { 256 });
        let norm = NormMatcher {
            phrases: if phrases.is_empty() {
                None
            } else {
                let ac = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&phrases)
                    .map_err(|e| fail("phrases", e.to_string()))?;
                Some((ac, phrase_rules))
            },
            regex: if norm_patterns.is_empty() {
                None
            } else {
                Some((
                    detect::norm_regex(&norm_patterns).map_err(|e| fail("regexes", e))?,
                    norm_rules,
                ))
            },
        };
        Ok(RuleSet {
            name: name.to_string(),
            rules,
            raw,
            norm,
            window,
            checks: RequestChecks {
                max_json_depth: spec.request.max_json_depth,
                max_message_bytes: spec.request.max_message_bytes,
                validate_agui: spec.request.validate_agui,
            },
            stop_message: spec.stop_message.clone(),
        })
    }
}

/// One regex per pattern, except the `shared` ones (digit-led PII), which form one union.
fn group_raw(
    patterns: &[String],
    shared: &[bool],
) -> Result<Vec<(regex_automata::meta::Regex, Vec<usize>)>, String> {
    let mut out = Vec::new();
    let mut union = Vec::new();
    let mut union_ids = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        if shared[i] {
            union.push(p.clone());
            union_ids.push(i);
        } else {
            out.push((detect::raw_regex(std::slice::from_ref(p))?, vec![i]));
        }
    }
    if !union.is_empty() {
        out.push((detect::raw_regex(&union)?, union_ids));
    }
    Ok(out)
}

fn check_actions(rule: &Rule, normalized: bool, at: &str, errors: &mut Vec<SpecError>) {
    if let Some(a) = rule.input {
        if a == Action::Stop {
            errors.push((
                format!("{at}.input"),
                "`stop` is for responses; use `block`".into(),
            ));
        }
        if a == Action::Redact && normalized {
            errors.push((
                format!("{at}.input"),
                "`redact` needs a raw match (`regex` with `on: raw`)".into(),
            ));
        }
    }
    if let Some(a) = rule.output {
        if a == Action::Block {
            errors.push((
                format!("{at}.output"),
                "`block` is for requests; use `stop`".into(),
            ));
        }
        if a == Action::Redact && normalized {
            errors.push((
                format!("{at}.output"),
                "`redact` needs a raw match (`regex` with `on: raw`)".into(),
            ));
        }
    }
}
