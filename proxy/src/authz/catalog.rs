//! The tool catalog (`tools.yaml` in a policy directory): attributes of `Tool::"<name>"`.
//!
//! A tool missing from the catalog still gets an entity — risk `high`, no tags, no tenant, no
//! required credentials, `catalogued = false` — so policies can refuse unknown tools.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// The catalog file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCatalog {
    /// Tool name → attributes.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSpec>,
}

/// Attributes of one tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// `low`, `medium` or `high`.
    pub risk: Risk,
    /// Free-form labels.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Tenant that owns the tool; absent for shared tools.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Scopes a principal must hold to use it.
    #[serde(default)]
    pub required_credentials: BTreeSet<String>,
    /// Arguments that hold filesystem paths: they reach Cedar normalized (dot segments and
    /// duplicate slashes resolved) even when relative; absolute paths are normalized in any
    /// argument ([`super::arguments`]).
    #[serde(default)]
    pub path_arguments: BTreeSet<String>,
}

/// Risk level of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Read-only, harmless.
    Low,
    /// Side effects, bounded.
    Medium,
    /// Irreversible or powerful.
    High,
}

impl Risk {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl ToolCatalog {
    /// Parses `tools.yaml`.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        yaml_serde::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("line {}: {e}", l.line()),
            None => e.to_string(),
        })
    }
}
