//! A route's `tool_integrity:` in `palisade.yaml`, as written.

use schemars::JsonSchema;
use serde::Deserialize;

/// A route's `tool_integrity:` (MCP routes only): the lock file of what was reviewed, and what
/// happens to a tool that is not as pinned.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolIntegritySpec {
    /// The lock file (JSON) written by `palisade tools pin`: each tool's pinned definition and
    /// its SHA-256. Read at start and with each applied config reload (its content is part of
    /// the config hash). Required.
    pub lock: String,
    /// What happens to a tool that is new or whose definition changed: `block` removes it from
    /// `tools/list` answers and refuses its calls with `TOOL_NOT_APPROVED`; `flag` lets it
    /// through, audited and counted. Poisoned tools and name collisions are refused in both
    /// modes. Default: `block`.
    #[serde(default)]
    pub mode: IntegrityMode,
    /// Scan the text of new and changed tools (description, input schema, annotations) with the
    /// built-in prompt-injection rules and for hidden characters; a finding refuses the tool.
    /// Default: `true`.
    #[serde(default = "default_true")]
    pub scan: bool,
}

/// What a route does with a tool that is not as pinned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrityMode {
    /// Remove it from lists, refuse its calls.
    #[default]
    Block,
    /// Let it through, audited and counted.
    Flag,
}

fn default_true() -> bool {
    true
}
