//! [`RuleSet`]: compiled rules and the scans over text.
//!
//! Three matchers, each built once per rule set:
//!
//! - raw detectors (PII, secrets, `on: raw` regexes): one multi-pattern `regex-automata` meta
//!   regex over the text as sent, so redaction knows the exact span; matches are then checked
//!   (Luhn, SSN ranges, IBAN mod-97, inside-a-URL);
//! - phrases: one Aho-Corasick automaton over the letters of the normalized text
//!   ([`super::normalize`]); a match counts when the text's gaps fit the phrase's word breaks
//!   (a word break where the phrase has one, none where it has none, soft gaps either way);
//! - normalized regexes: one meta regex over both renderings of the normalized text (split and
//!   joined), a rule counted as often as the reading where it matched most.
//!
//! For streams, [`RuleSet::live_from`] tells how much of a text's tail could still grow into a
//! raw match (an anchored lazy DFA of all raw patterns that has not died by the end), which is
//! what the stream filter holds back so that no prefix of a secret is ever relayed.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::meta::Regex;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use super::builtin::{self, Verify};
use super::normalize::{Normalized, HARD, NONE};
use super::spec::{Action, Location};

/// Which side of the exchange text is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request (before it is forwarded).
    Input,
    /// The response (as it is relayed).
    Output,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Rule id.
    pub id: String,
    /// Action on requests.
    pub input: Option<Action>,
    /// Action on responses.
    pub output: Option<Action>,
    /// Where it looks (empty: everywhere).
    pub locations: Vec<Location>,
    /// Ignore matches inside URLs.
    pub ignore_in_urls: bool,
    /// Extra check of raw matches.
    pub verify: Verify,
    /// Placeholder kind: `[REDACTED:<label>]`.
    pub label: String,
}

impl Rule {
    /// The action on `side` at `location`, `None` when the rule does not apply there.
    pub fn action(&self, side: Side, location: Location) -> Option<Action> {
        if !self.locations.is_empty() && !self.locations.contains(&location) {
            return None;
        }
        match side {
            Side::Input => self.input,
            Side::Output => self.output,
        }
    }

    /// The redaction placeholder.
    pub fn placeholder(&self) -> String {
        format!("[REDACTED:{}]", self.label)
    }
}

/// A raw match: rule index and byte span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// The rule's action here.
    pub action: Action,
}

/// Raw-text matchers.
pub(super) struct RawMatcher {
    /// Regexes and the pattern index of each of their patterns: patterns with a literal (the
    /// secrets' fixed prefixes, the `@` of e-mail addresses) each get their own regex, so the
    /// regex engine can scan for that literal; the digit-led PII patterns share one lazy DFA
    /// pass. Overlaps are resolved after.
    pub(super) regexes: Vec<(Regex, Vec<usize>)>,
    /// Which entry of `regexes` is the digit-led union (searched only around digits).
    pub(super) digit_led: Option<usize>,
    pub(super) live: DFA,
    pub(super) rules: Vec<usize>,
}

/// Phrases over normalized letters: the automaton (leftmost-longest, so it searches with a
/// packed prefilter while the phrases are few), the same phrases with overlapping matches (to
/// list every phrase starting at one place), the longest phrase's length, and per pattern its
/// rule and its gaps (`HARD`: a word break is needed there, `SOFT`: either, none: no hard
/// break).
pub(super) struct PhraseMatcher {
    pub(super) ac: AhoCorasick,
    pub(super) every: AhoCorasick,
    pub(super) longest: usize,
    pub(super) rules: Vec<usize>,
    pub(super) shapes: Vec<Box<[(u32, u8)]>>,
}

/// Normalized-text matchers.
pub(super) struct NormMatcher {
    pub(super) phrases: Option<PhraseMatcher>,
    /// The normalized regexes that apply, per side and location ([`slot`]).
    pub(super) regexes: [Option<Arc<NormRegex>>; 10],
    /// Per side and location ([`slot`]): whether a phrase rule (bit 0) or a regex rule (bit 1)
    /// applies there — asked once per text, so it is computed once per rule set.
    pub(super) applies: [u8; 10],
}

/// Normalized regexes (one pattern each) and the rule of each pattern.
pub(super) struct NormRegex {
    pub(super) regex: Regex,
    pub(super) rules: Vec<usize>,
}

/// Index of a side and location in [`NormMatcher::applies`].
pub(super) fn slot(side: Side, location: Location) -> usize {
    let at = match location {
        Location::UserMessage => 0,
        Location::ToolMessage => 1,
        Location::ToolArguments => 2,
        Location::AssistantText => 3,
        Location::ToolResult => 4,
    };
    match side {
        Side::Input => at,
        Side::Output => 5 + at,
    }
}

/// Every side and location.
pub(super) const SLOTS: [(Side, Location); 10] = {
    const L: [Location; 5] = [
        Location::UserMessage,
        Location::ToolMessage,
        Location::ToolArguments,
        Location::AssistantText,
        Location::ToolResult,
    ];
    [
        (Side::Input, L[0]),
        (Side::Input, L[1]),
        (Side::Input, L[2]),
        (Side::Input, L[3]),
        (Side::Input, L[4]),
        (Side::Output, L[0]),
        (Side::Output, L[1]),
        (Side::Output, L[2]),
        (Side::Output, L[3]),
        (Side::Output, L[4]),
    ]
};

const PHRASES: u8 = 1;
const REGEXES: u8 = 2;

/// Request checks of a rule set.
#[derive(Debug, Clone)]
pub struct RequestChecks {
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Largest AG-UI message text, in bytes.
    pub max_message_bytes: usize,
    /// Check the AG-UI `RunAgentInput` shape.
    pub validate_agui: bool,
}

/// A compiled rule set.
pub struct RuleSet {
    /// Its name.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
    pub(super) raw: Option<RawMatcher>,
    pub(super) norm: NormMatcher,
    /// Normalized text carried between stream deltas (bytes): the longest phrase, or 256 when
    /// normalized regexes exist.
    pub window: usize,
    /// Request body checks.
    pub checks: RequestChecks,
    /// The assistant message of a `stop`.
    pub stop_message: String,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("name", &self.name)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// The most raw text the stream filter holds back for one message or tool call; an in-progress
/// match longer than this is redacted whole.
pub const MAX_HOLD_BYTES: usize = 16 * 1024;

impl RuleSet {
    /// Whether any rule has an action on `side`.
    pub fn has_side(&self, side: Side) -> bool {
        self.rules.iter().any(|r| match side {
            Side::Input => r.input.is_some(),
            Side::Output => r.output.is_some(),
        })
    }

    /// Whether any rule matching normalized text applies on `side` at `location` (the text
    /// is normalized only then).
    pub fn has_normalized(&self, side: Side, location: Location) -> bool {
        self.norm.applies[slot(side, location)] != 0
    }

    /// A lazy-DFA cache for [`RuleSet::live_from`] (one per stream).
    pub fn live_cache(&self) -> Option<Cache> {
        self.raw.as_ref().map(|r| r.live.create_cache())
    }

    /// Raw matches in `text` that apply on `side` at `location`, in order, verified.
    pub fn raw_hits(&self, text: &str, side: Side, location: Location, out: &mut Vec<Hit>) {
        self.raw_hits_from(text, 0, side, location, out);
    }

    /// Like [`RuleSet::raw_hits`], for matches starting at or after byte `from`; the bytes
    /// before it are context (word boundaries, URLs).
    pub fn raw_hits_from(
        &self,
        text: &str,
        from: usize,
        side: Side,
        location: Location,
        out: &mut Vec<Hit>,
    ) {
        let Some(raw) = &self.raw else {
            return;
        };
        let input = regex_automata::Input::new(text).range(from..);
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (at, (regex, patterns)) in raw.regexes.iter().enumerate() {
            let hit =
                |m: regex_automata::Match| (m.start(), patterns[m.pattern().as_usize()], m.end());
            if raw.digit_led == Some(at) {
                // Digit-led patterns can only match near digits: search those regions only.
                for (s, e) in digit_regions(text.as_bytes(), from) {
                    found.extend(regex.find_iter(input.clone().range(s..e)).map(hit));
                }
            } else {
                found.extend(regex.find_iter(input.clone()).map(hit));
            }
        }
        // Earliest start wins; at the same start, the earlier pattern (priority order).
        found.sort_unstable();
        let mut taken_to = from;
        for (start, pattern, end) in found {
            if start < taken_to {
                continue;
            }
            if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                continue;
            }
            let idx = raw.rules[pattern];
            let rule = &self.rules[idx];
            let Some(action) = rule.action(side, location) else {
                continue;
            };
            let matched = &text[start..end];
            let ok = match rule.verify {
                Verify::None => true,
                Verify::Luhn => builtin::luhn(matched),
                Verify::Ssn => builtin::ssn(matched),
                Verify::Iban => builtin::iban(matched),
            };
            if !ok || (rule.ignore_in_urls && in_url(text, start)) {
                continue;
            }
            taken_to = end;
            out.push(Hit {
                rule: idx,
                start,
                end,
                action,
            });
        }
    }

    /// Normalized matches in `norm` that end after byte `new_from` of its letters (earlier ones
    /// were counted with the previous delta): `(rule index, action)` per match. Phrases, the
    /// split reading and the joined reading each find a rule's matches their own way; the rule
    /// counts as often as the one that found it most (one occurrence is one match, however
    /// many ways it was found).
    pub fn norm_hits(
        &self,
        norm: &Normalized,
        new_from: usize,
        side: Side,
        location: Location,
        out: &mut Vec<(usize, Action)>,
    ) {
        let applies = self.norm.applies[slot(side, location)];
        // Per rule: its action and its count by phrases, split reading, joined reading.
        let mut counts: Vec<(usize, Action, [u32; 3])> = Vec::new();
        let mut count = |idx: usize, way: usize| {
            let Some(action) = self.rules[idx].action(side, location) else {
                return;
            };
            match counts.iter_mut().find(|c| c.0 == idx) {
                Some(c) => c.2[way] += 1,
                None => {
                    let mut by = [0; 3];
                    by[way] = 1;
                    counts.push((idx, action, by));
                }
            }
        };
        if applies & PHRASES != 0 {
            if let Some(p) = &self.norm.phrases {
                phrase_hits(p, norm, new_from, |idx| count(idx, 0));
            }
        }
        if applies & REGEXES != 0 {
            if let Some(NormRegex { regex: re, rules }) =
                self.norm.regexes[slot(side, location)].as_deref()
            {
                // The joined reading only differs from the split one where a gap is soft.
                let joined = norm.has_soft();
                for way in [1, 2].into_iter().filter(|&w| w == 1 || joined) {
                    let rendered;
                    let (text, from) = if way == 2 {
                        rendered = norm.render(new_from, |g| g == HARD);
                        (rendered.0.as_str(), rendered.1)
                    } else {
                        (norm.split(), norm.split_offset(new_from))
                    };
                    for m in re.find_iter(text) {
                        if m.end() > from {
                            count(rules[m.pattern().as_usize()], way);
                        }
                    }
                }
            }
        }
        for (idx, action, by) in counts {
            let n = by.into_iter().max().unwrap_or(0) as usize;
            out.extend(std::iter::repeat_n((idx, action), n));
        }
    }

    /// The first byte of `text` at or after `from` from which a raw match could still be in progress at its end
    /// (`text.len()` when none): everything before it can be relayed as final.
    pub fn live_from(&self, cache: &mut Cache, text: &str, from: usize) -> usize {
        let Some(raw) = &self.raw else {
            return text.len();
        };
        let bytes = text.as_bytes();
        // Work bound: each start position runs the DFA until it dies, so a hostile text where
        // every position stays alive to the end (`a.a.a.…` under the e-mail pattern) would cost
        // O(n²). Ordinary text dies within a word or two; past the budget we hold from here
        // (conservative: an overgrown hold is redacted, never relayed).
        let mut budget = 32 * bytes.len().saturating_sub(from) + 4 * MAX_HOLD_BYTES;
        for p in from..bytes.len() {
            if !text.is_char_boundary(p) {
                continue;
            }
            let look = p.checked_sub(1).map(|i| bytes[i]);
            let cfg = start::Config::new()
                .anchored(Anchored::Yes)
                .look_behind(look);
            let Ok(mut sid) = raw.live.start_state(cache, &cfg) else {
                return p; // gave up: hold conservatively
            };
            let mut alive = true;
            for &b in &bytes[p..] {
                if budget == 0 {
                    return p;
                }
                budget -= 1;
                match raw.live.next_state(cache, sid, b) {
                    Ok(next) if next.is_dead() => {
                        alive = false;
                        break;
                    }
                    Ok(next) if next.is_quit() => break,
                    Ok(next) => sid = next,
                    Err(_) => break,
                }
            }
            if alive {
                return p;
            }
        }
        text.len()
    }
}

/// Phrase matches ending after `new_from` whose word breaks fit the text's gaps, leftmost
/// first, not overlapping. A match that does not fit hides nothing: every phrase starting at
/// the same place is tried, then the search goes on from the next byte.
fn phrase_hits(p: &PhraseMatcher, norm: &Normalized, new_from: usize, mut hit: impl FnMut(usize)) {
    let text = norm.letters();
    let mut at = 0;
    while at < text.len() {
        let Some(m) =
            p.ac.find(aho_corasick::Input::new(text).span(at..text.len()))
        else {
            break;
        };
        let pattern = m.pattern().as_usize();
        let fitting = if fits(norm, m.start(), m.end(), &p.shapes[pattern]) {
            Some((pattern, m.end()))
        } else {
            let reach = (m.start() + p.longest).min(text.len());
            let here = aho_corasick::Input::new(text).span(m.start()..reach);
            p.every
                .find_overlapping_iter(here)
                .filter(|o| o.start() == m.start())
                .map(|o| (o.pattern().as_usize(), o.end()))
                .filter(|&(q, end)| fits(norm, m.start(), end, &p.shapes[q]))
                .max_by_key(|&(_, end)| end)
        };
        let Some((pattern, end)) = fitting else {
            at = m.start() + 1;
            continue;
        };
        at = end;
        if end > new_from {
            hit(p.rules[pattern]);
        }
    }
}

/// Whether `norm`'s letters `start..end`, matched by a phrase with gaps `shape`, are that
/// phrase: word breaks at both ends, a break (soft or hard) wherever the phrase breaks, no hard
/// break where it does not.
fn fits(norm: &Normalized, start: usize, end: usize, shape: &[(u32, u8)]) -> bool {
    if !norm.starts_word(start) || !norm.ends_word(end) {
        return false;
    }
    let breaks = norm.breaks();
    let first = breaks.partition_point(|b| (b.0 as usize) <= start);
    let phrase_breaks = |at: usize| shape.binary_search_by_key(&(at as u32), |b| b.0).is_ok();
    let hard_inside_a_word = breaks[first..]
        .iter()
        .take_while(|b| (b.0 as usize) < end)
        .any(|&(at, gap)| gap == HARD && !phrase_breaks(at as usize - start));
    !hard_inside_a_word
        && shape
            .iter()
            .filter(|b| b.1 == HARD)
            .all(|&(at, _)| norm.gap(start + at as usize) != NONE)
}

/// Byte ranges of `bytes[from..]` that hold digits, merged when closer than `GAP` and padded
/// by `PAD` on both sides: every match of the digit-led PII patterns (cards, SSNs, phones, IPs,
/// IBANs) lies inside one, since each starts and ends within a few bytes of a digit and never
/// spans more than `GAP` bytes without one.
fn digit_regions(bytes: &[u8], from: usize) -> Vec<(usize, usize)> {
    const GAP: usize = 12;
    const PAD: usize = 12;
    let mut regions: Vec<(usize, usize)> = Vec::new();
    let mut i = from;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i.saturating_sub(PAD).max(from);
        let mut last = i;
        let mut j = i + 1;
        while j < bytes.len() && j - last <= GAP {
            if bytes[j].is_ascii_digit() {
                last = j;
            }
            j += 1;
        }
        let end = (last + 1 + PAD).min(bytes.len());
        match regions.last_mut() {
            Some(prev) if start <= prev.1 => prev.1 = end,
            _ => regions.push((start, end)),
        }
        i = j;
    }
    regions
}

/// Whether byte `at` of `text` is inside a URL (`scheme://` starting the whitespace-delimited
/// token that contains it).
fn in_url(text: &str, at: usize) -> bool {
    let token_start = text[..at]
        .rfind(|c: char| c.is_whitespace() || c == '"' || c == '(' || c == '<')
        .map_or(0, |i| i + 1);
    let token = &text[token_start..at];
    token.contains("://")
}

/// The lazy DFA that answers "could a raw match still be in progress" (all patterns, any
/// match, anchored).
pub(super) fn live_dfa(patterns: &[String]) -> Result<DFA, String> {
    DFA::builder()
        .configure(DFA::config().match_kind(MatchKind::All))
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .thompson(regex_automata::nfa::thompson::Config::new().utf8(false))
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// The meta regex over raw text (ASCII classes).
pub(super) fn raw_regex(patterns: &[String]) -> Result<Regex, String> {
    Regex::builder()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// The meta regex over normalized text.
pub(super) fn norm_regex(patterns: &[String]) -> Result<Regex, String> {
    Regex::builder()
        .build_many(patterns)
        .map_err(|e| e.to_string())
}
