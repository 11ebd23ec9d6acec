//! What a listed or called tool is, against the route's pins: as pinned, `changed`, `new`,
//! `poisoned` or a name `collision` — and whether that blocks it.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::lock::Pin;
use super::{skeleton, IntegrityMode, RouteIntegrity};
use crate::guardrails::detect::{RuleSet, Side};
use crate::guardrails::normalize::is_invisible;
use crate::guardrails::spec::{Location, RuleSetSpec};

/// Why a tool is not as reviewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Pinned, but listed with another definition.
    Changed,
    /// Not pinned.
    New,
    /// Its text reads as a prompt injection or hides characters (the rule that fired).
    Poisoned(String),
    /// Its name collides with another tool's (that tool, and its route when another).
    Collision {
        /// The other tool.
        with: String,
        /// The other tool's route, when not this one.
        route: Option<String>,
    },
}

impl Kind {
    /// The label in metrics and the audit record.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::New => "new",
            Self::Poisoned(_) => "poisoned",
            Self::Collision { .. } => "collision",
        }
    }

    /// Why the tool is refused, for the error message.
    pub fn reason(&self) -> String {
        match self {
            Self::Changed => "its definition changed since it was pinned".into(),
            Self::New => "it is not pinned in the route's tool lock".into(),
            Self::Poisoned(rule) => {
                format!("its description or schema was flagged by `{rule}`")
            }
            Self::Collision { with, route: None } => {
                format!("its name collides with tool `{with}`")
            }
            Self::Collision {
                with,
                route: Some(r),
            } => format!("its name collides with tool `{with}` of route `{r}`"),
        }
    }

    /// Whether a tool of this kind is refused under `mode` (poisoning and collisions always).
    pub fn blocks(&self, mode: IntegrityMode) -> bool {
        match self {
            Self::Changed | Self::New => mode == IntegrityMode::Block,
            Self::Poisoned(_) | Self::Collision { .. } => true,
        }
    }
}

/// One tool that was not as reviewed, as the audit record lists it.
pub use crate::audit::record::IntegrityFinding as Finding;

/// The finding of `tool` being `kind` under `mode`.
pub fn finding(tool: &str, kind: &Kind, mode: IntegrityMode) -> Finding {
    Finding {
        action: if kind.blocks(mode) {
            "blocked"
        } else {
            "flagged"
        },
        kind: kind.as_str(),
        rule: match kind {
            Kind::Poisoned(rule) => Some(rule.clone()),
            _ => None,
        },
        tool: bounded(tool),
    }
}

/// A tool name as logged, audited and named in refusals: control characters left out, at most
/// 128 characters.
pub fn bounded(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(128).collect()
}

/// Rule id of a definition that hides characters.
pub const HIDDEN_CHARACTERS: &str = "integrity.hidden_characters";

/// The built-in rule set whose prompt-injection rules scan tool text (compiled once).
pub(super) fn detector() -> Option<&'static RuleSet> {
    static DETECTOR: OnceLock<Option<RuleSet>> = OnceLock::new();
    DETECTOR
        .get_or_init(|| RuleSet::compile("tool-integrity", &RuleSetSpec::default()).ok())
        .as_ref()
}

/// The rule a definition's text trips, if any: hidden characters anywhere (names, keys and
/// values), then the built-in `injection.*` rules over each text.
pub fn poisoning(definition: &Value) -> Option<String> {
    let mut texts = Vec::new();
    strings(definition, &mut texts);
    if texts.iter().any(|t| t.chars().any(is_invisible)) {
        return Some(HIDDEN_CHARACTERS.into());
    }
    let rs = detector()?;
    texts.iter().find_map(|t| {
        let scanned = crate::guardrails::scan::scan_text(rs, t, Side::Input, Location::ToolMessage);
        scanned
            .fired
            .iter()
            .map(|f| &rs.rules[f.rule].id)
            .find(|id| id.starts_with("injection."))
            .cloned()
    })
}

/// Every string of `value`, keys included.
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(list) => list.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k);
                strings(v, out);
            }
        }
        _ => {}
    }
}

impl RouteIntegrity {
    /// The collision of `name`, if any: with another pinned name of this route that looks the
    /// same, with a pinned name of another route, or with `listed` (skeleton → the names of one
    /// list).
    fn collision(&self, name: &str, listed: Option<&HashMap<String, Vec<&str>>>) -> Option<Kind> {
        let sk = skeleton(name);
        if let Some(other) = self.own.get(&sk).filter(|o| *o != name) {
            return Some(Kind::Collision {
                with: bounded(other),
                route: None,
            });
        }
        if let Some((route, other)) = self.foreign.get(&sk) {
            return Some(Kind::Collision {
                with: bounded(other),
                route: Some(route.clone()),
            });
        }
        // Two entries of one list that look alike — or are the same name twice: a client may
        // keep either definition.
        let group = listed?.get(&sk)?;
        if group.len() < 2 {
            return None;
        }
        let twin = group.iter().find(|n| **n != name).unwrap_or(&name);
        Some(Kind::Collision {
            with: bounded(twin),
            route: None,
        })
    }

    /// What each tool of a `tools/list` answer is (`None`: as pinned), in order. Pinned tools
    /// are remembered as listed, so their calls follow the list's verdict.
    pub fn check_list(&self, tools: &[Value]) -> Vec<(String, Option<Kind>)> {
        let mut listed: HashMap<String, Vec<&str>> = HashMap::new();
        for t in tools {
            if let Some(name) = t.get("name").and_then(Value::as_str) {
                listed.entry(skeleton(name)).or_default().push(name);
            }
        }
        tools
            .iter()
            .map(|t| {
                let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                let kind = self.check_listed(name, t, &listed);
                if self.lock.tools.contains_key(name) {
                    match &kind {
                        None => {
                            self.observed.remove(name);
                        }
                        Some(k) => {
                            self.observed.insert(name.to_string(), k.clone());
                        }
                    }
                } else if let Some(k @ Kind::Poisoned(_)) = &kind {
                    if self.poisoned_seen.len() >= super::MAX_POISONED_SEEN {
                        self.poisoned_seen.clear();
                    }
                    self.poisoned_seen.insert(name.to_string(), k.clone());
                }
                (name.to_string(), kind)
            })
            .collect()
    }

    fn check_listed(
        &self,
        name: &str,
        tool: &Value,
        listed: &HashMap<String, Vec<&str>>,
    ) -> Option<Kind> {
        if let Some(collision) = self.collision(name, Some(listed)) {
            return Some(collision);
        }
        let pinned = self.lock.tools.get(name);
        let live = Pin::of(tool);
        let same = match (pinned, &live) {
            (Some(p), Some((_, l))) => p.sha256 == l.sha256,
            _ => false,
        };
        if same {
            return None;
        }
        if self.scan {
            let definition = live.as_ref().map(|(_, l)| &l.definition);
            if let Some(rule) = definition.and_then(poisoning) {
                return Some(Kind::Poisoned(rule));
            }
        }
        Some(if pinned.is_some() {
            Kind::Changed
        } else {
            Kind::New
        })
    }

    /// Takes over `old`'s observations of tools pinned alike in both locks (and of poisoned
    /// tools still not pinned).
    pub(super) fn carry_over(&self, old: &RouteIntegrity) {
        for entry in old.observed.iter() {
            let (name, kind) = (entry.key(), entry.value());
            let same = match (self.lock.tools.get(name), old.lock.tools.get(name)) {
                (Some(new), Some(was)) => new.sha256 == was.sha256,
                _ => false,
            };
            if same {
                self.observed.insert(name.clone(), kind.clone());
            }
        }
        for entry in old.poisoned_seen.iter() {
            if !self.lock.tools.contains_key(entry.key())
                && self.poisoned_seen.len() < super::MAX_POISONED_SEEN
            {
                self.poisoned_seen
                    .insert(entry.key().clone(), entry.value().clone());
            }
        }
    }

    /// What a `tools/call` of `name` is (`None`: pinned, and not listed otherwise since).
    pub fn check_call(&self, name: &str) -> Option<Kind> {
        if let Some(collision) = self.collision(name, None) {
            return Some(collision);
        }
        if !self.lock.tools.contains_key(name) {
            let poisoned = self.poisoned_seen.get(name).map(|k| k.value().clone());
            return Some(poisoned.unwrap_or(Kind::New));
        }
        self.observed.get(name).map(|k| k.value().clone())
    }
}
