//! The `guardrails` section of `palisade.yaml` (and a route's `guardrails`), as written.
//!
//! Plain `serde` + `schemars` types with no logic; [`super::RuleSet::compile`] validates them
//! into the runtime rule sets, every error with its field path.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Top-level `guardrails:`: named rule sets and the one routes use unless they choose.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsSpec {
    /// Rule set applied to every route that does not name one in its own `guardrails`. The
    /// name `default` refers to the built-in default set unless `rule_sets` redefines it.
    /// Default: absent (routes without `guardrails` are not inspected; the dev config sets
    /// `default`).
    #[serde(default)]
    pub default_rule_set: Option<String>,
    /// Named rule sets. Default: none (only the built-in `default` exists).
    #[serde(default)]
    pub rule_sets: BTreeMap<String, RuleSetSpec>,
}

/// A route's `guardrails:`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteGuardrailsSpec {
    /// Inspect this route's requests and responses. Default: `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Name of the rule set (`default` or a key of `guardrails.rule_sets`). Default:
    /// `guardrails.default_rule_set`.
    #[serde(default)]
    pub rule_set: Option<String>,
}

/// One named rule set.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSetSpec {
    /// Start from the built-in rules (prompt injection, PII, secrets, destructive tool
    /// arguments; `docs/guardrails.md` lists them). Default: `true`.
    #[serde(default = "default_true")]
    pub builtin: bool,
    /// Ids of built-in rules to leave out, e.g. `pii.ip_address`. Default: none.
    #[serde(default)]
    pub disable: Vec<String>,
    /// New actions (and other settings) for built-in rules, by rule id. Default: none.
    #[serde(default)]
    pub overrides: BTreeMap<String, RuleOverrideSpec>,
    /// Further rules of this set. Default: none.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Shape and size checks of request bodies. Default: see each field.
    #[serde(default)]
    pub request: RequestChecksSpec,
    /// The assistant message a `stop` sends before its `RUN_ERROR`. Default: `I can't
    /// continue with this response because it violated a content policy.`
    #[serde(default = "default_stop_message")]
    pub stop_message: String,
}

impl Default for RuleSetSpec {
    fn default() -> Self {
        Self {
            builtin: true,
            disable: Vec::new(),
            overrides: BTreeMap::new(),
            rules: Vec::new(),
            request: RequestChecksSpec::default(),
            stop_message: default_stop_message(),
        }
    }
}

/// A rule: what it matches, where, and what happens on each side.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Rule id, reported in findings, metrics and the audit record, e.g. `custom.wire_transfer`.
    /// Use A-Z a-z 0-9 _ - . Required.
    pub id: String,
    /// Literal phrases, matched (Aho-Corasick) on normalized text: NFKC, case-folded, zero-width
    /// and control characters removed, homoglyphs and leetspeak folded, every run of
    /// non-alphanumerics one space. Exactly one of `phrases` and `regex` is required.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// A regular expression (Rust `regex` syntax, no look-around). Exactly one of `phrases`
    /// and `regex` is required. Default: absent.
    #[serde(default)]
    pub regex: Option<String>,
    /// What `regex` runs on: `normalized` text (like phrases) or the `raw` text (needed for
    /// `redact`, which replaces the raw span). Default: `normalized`.
    #[serde(default)]
    pub on: MatchOn,
    /// Action on request text: `block`, `redact` or `flag`. Default: absent (not checked on
    /// requests).
    #[serde(default)]
    pub input: Option<Action>,
    /// Action on response text: `stop`, `redact` or `flag`. Default: absent (not checked on
    /// responses).
    #[serde(default)]
    pub output: Option<Action>,
    /// Where the rule looks. Default: every location.
    #[serde(default)]
    pub locations: Vec<Location>,
    /// Matches inside a URL (`scheme://…` up to whitespace) are ignored. Default: `false`.
    #[serde(default)]
    pub ignore_in_urls: bool,
}

/// Changes to a built-in rule; absent fields keep the built-in value.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleOverrideSpec {
    /// Action on request text. Default: the built-in action.
    #[serde(default)]
    pub input: Option<ActionOrOff>,
    /// Action on response text. Default: the built-in action.
    #[serde(default)]
    pub output: Option<ActionOrOff>,
    /// Where the rule looks. Default: the built-in locations.
    #[serde(default)]
    pub locations: Option<Vec<Location>>,
    /// Ignore matches inside URLs. Default: the built-in value.
    #[serde(default)]
    pub ignore_in_urls: Option<bool>,
}

/// What regex rules run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchOn {
    /// The normalized text (evasion-resistant; no `redact`).
    #[default]
    Normalized,
    /// The text as sent.
    Raw,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Requests only: refuse with 400 `GUARDRAIL_VIOLATION`.
    Block,
    /// Record a finding only.
    Flag,
    /// Replace the match with `[REDACTED:<KIND>]` before forwarding or relaying.
    Redact,
    /// Responses only: end the stream (`CUSTOM` `GUARDRAIL_VIOLATION`, a short assistant
    /// message, `RUN_ERROR` `GUARDRAIL_VIOLATION`) and close the upstream.
    Stop,
}

/// An action, or `off` to not check a side at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionOrOff {
    /// See [`Action::Block`].
    Block,
    /// See [`Action::Flag`].
    Flag,
    /// See [`Action::Redact`].
    Redact,
    /// See [`Action::Stop`].
    Stop,
    /// Not checked on this side.
    Off,
}

impl ActionOrOff {
    /// The action, `None` for `off`.
    pub fn action(self) -> Option<Action> {
        match self {
            Self::Block => Some(Action::Block),
            Self::Flag => Some(Action::Flag),
            Self::Redact => Some(Action::Redact),
            Self::Stop => Some(Action::Stop),
            Self::Off => None,
        }
    }
}

/// Where text is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// Request: AG-UI `user` (and `developer`/`system`) messages, A2A message parts.
    UserMessage,
    /// Request: AG-UI `tool` messages (results the client sends back).
    ToolMessage,
    /// MCP `tools/call` arguments (request) and AG-UI `TOOL_CALL_ARGS` (response).
    ToolArguments,
    /// Response: assistant text and reasoning (`TEXT_MESSAGE_*`, `REASONING_*`), A2A answers.
    AssistantText,
    /// Response: `TOOL_CALL_RESULT` and MCP results.
    ToolResult,
}

/// Request body checks.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestChecksSpec {
    /// Deepest nesting of arrays and objects accepted in any JSON request body; deeper bodies
    /// get 400 `INVALID_REQUEST`. Default: `64`.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Largest text content of one AG-UI message, in bytes. Default: `65536`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Check the AG-UI `RunAgentInput` shape on `agui` routes: `threadId`/`runId` of 1 to 128
    /// characters of `[A-Za-z0-9_-]`, known message roles, message size. Default: `true`.
    #[serde(default = "default_true")]
    pub validate_agui: bool,
}

impl Default for RequestChecksSpec {
    fn default() -> Self {
        Self {
            max_json_depth: default_max_json_depth(),
            max_message_bytes: default_max_message_bytes(),
            validate_agui: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_max_json_depth() -> usize {
    64
}

fn default_max_message_bytes() -> usize {
    65536
}

/// The default `stop_message`.
pub fn default_stop_message() -> String {
    "I can't continue with this response because it violated a content policy.".into()
}
