//! From [`RuleSetSpec`] to [`RuleSet`]: built-in rules, overrides, custom rules, matchers.
//! Every problem is reported with its field path (relative to the rule set).

use aho_corasick::{AhoCorasick, MatchKind};

use super::builtin::{Pattern, Verify, BUILTIN};
use std::sync::Arc;

use super::detect::{
    self, NormMatcher, NormRegex, PhraseMatcher, RawMatcher, RequestChecks, Rule, RuleSet,
};
use super::normalize::Normalized;
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
        // The homoglyph table is built here, at config load, rather than by the first request.
        super::normalize::warm();
        let mut errors: Vec<SpecError> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        // What each rule matches, by rule index (a built-in rule may have several patterns).
        let mut sources: Vec<(usize, Source)> = Vec::new();

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
                let source = match b.pattern {
                    Pattern::Phrases(list) => {
                        Source::Phrases(list.iter().map(|p| p.to_string()).collect())
                    }
                    Pattern::Grammar(products) => Source::Norm(grammar_regex(products)),
                    Pattern::Normalized(re) => Source::Norm(re.to_string()),
                    Pattern::Raw(re) => Source::Raw(re.to_string()),
                };
                if rules.last().is_some_and(|r| r.id == b.id) {
                    // Another pattern of the rule just compiled.
                    sources.push((rules.len() - 1, source));
                    continue;
                }
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
                    let normalized = !matches!(b.pattern, Pattern::Raw(_));
                    check_actions(&rule, normalized, &at, &mut errors);
                }
                rules.push(rule);
                sources.push((rules.len() - 1, source));
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
                        if Normalized::of(p).is_empty() {
                            errors.push((
                                format!("{at}.phrases[{j}]"),
                                "has no letters or digits once normalized".into(),
                            ));
                        }
                        list.push(p.clone());
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
            sources.push((rules.len() - 1, source));
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
        for (idx, source) in sources {
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
                        phrases.push(Normalized::of(&p));
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
            .map(Normalized::len)
            .max()
            .unwrap_or(0)
            .max(if norm_patterns.is_empty() { 0 } else { 256 });
        let mut applies = [0u8; 10];
        for (at, (side, location)) in detect::SLOTS.into_iter().enumerate() {
            let on = |idx: &usize| rules[*idx].action(side, location).is_some();
            applies[at] =
                u8::from(phrase_rules.iter().any(on)) | (u8::from(norm_rules.iter().any(on)) << 1);
        }
        let norm = NormMatcher {
            phrases: if phrases.is_empty() {
                None
            } else {
                let letters = || phrases.iter().map(Normalized::letters);
                let ac = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(letters())
                    .map_err(|e| fail("phrases", e.to_string()))?;
                let every =
                    AhoCorasick::new(letters()).map_err(|e| fail("phrases", e.to_string()))?;
                Some(PhraseMatcher {
                    ac,
                    every,
                    longest: letters().map(str::len).max().unwrap_or(0),
                    rules: phrase_rules,
                    shapes: phrases.iter().map(|p| p.breaks().into()).collect(),
                })
            },
            regexes: slot_regexes(&rules, &norm_patterns, &norm_rules)
                .map_err(|e| fail("regexes", e))?,
            applies,
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

/// Per side and location, one regex of the normalized patterns whose rules apply there (so a
/// scan never runs a pattern that cannot count: the destructive-command spellings, with their
/// short `rm` / `dd` literals, run on tool arguments only). Slots with the same patterns share
/// one regex.
fn slot_regexes(
    rules: &[Rule],
    patterns: &[String],
    pattern_rules: &[usize],
) -> Result<[Option<Arc<NormRegex>>; 10], String> {
    let mut out: [Option<Arc<NormRegex>>; 10] = Default::default();
    let mut built: Vec<(Vec<usize>, Arc<NormRegex>)> = Vec::new();
    for (at, (side, location)) in detect::SLOTS.into_iter().enumerate() {
        let here: Vec<usize> = (0..patterns.len())
            .filter(|&i| rules[pattern_rules[i]].action(side, location).is_some())
            .collect();
        if here.is_empty() {
            continue;
        }
        if let Some((_, re)) = built.iter().find(|(set, _)| *set == here) {
            out[at] = Some(re.clone());
            continue;
        }
        let source: Vec<String> = here.iter().map(|&i| patterns[i].clone()).collect();
        let re = Arc::new(NormRegex {
            regex: detect::norm_regex(&source)?,
            rules: here.iter().map(|&i| pattern_rules[i]).collect(),
        });
        out[at] = Some(re.clone());
        built.push((here, re));
    }
    Ok(out)
}

/// The regex over normalized readings that matches every phrase of a grammar (see
/// [`Pattern::Grammar`]): each slot an alternation of its words — in both readings, so `don't`
/// is `don t` and `dont` — the slots separated by one space, on ASCII word boundaries (which
/// the lazy DFA supports on any text, and which keep the verbs' literals as a prefilter).
fn grammar_regex(products: &[&[&[&str]]]) -> String {
    let words = |slot: &[&str]| {
        let mut alts: Vec<String> = Vec::new();
        for w in slot.iter().filter(|w| !w.is_empty()) {
            let n = Normalized::of(w);
            for reading in [n.split().to_string(), n.joined()] {
                if !alts.contains(&reading) {
                    alts.push(reading);
                }
            }
        }
        // Normalized words are letters, digits and single spaces: nothing to escape.
        (alts.join("|"), slot.contains(&""))
    };
    let mut out = Vec::new();
    for slots in products {
        let mut product = String::new();
        for (i, slot) in slots.iter().enumerate() {
            let (alts, optional) = words(slot);
            product.push_str(&match (i, optional) {
                (0, _) => format!("(?:{alts})"),
                (_, true) => format!("(?: (?:{alts}))?"),
                (_, false) => format!(" (?:{alts})"),
            });
        }
        out.push(product);
    }
    format!("(?-u:\\b)(?:{})(?-u:\\b)", out.join("|"))
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
