//! The tool lock file: what was reviewed for one upstream MCP server, one entry per tool.
//!
//! A tool's *definition* is the part of a `tools/list` entry that tells a model what the tool
//! does: `name`, `description`, `inputSchema` and `annotations` ([`definition`]). Its hash is
//! SHA-256 over the definition's canonical JSON (object keys sorted at every level, no
//! whitespace, [`canonical`]), so a server that reorders keys or reformats its answer does not
//! change it; any changed value does.
//!
//! The file is JSON, written sorted and pretty so that a review reads as a diff:
//!
//! ```json
//! {
//!   "version": 1,
//!   "tools": {
//!     "search_docs": {
//!       "sha256": "…64 hex digits…",
//!       "definition": {"name": "search_docs", "description": "…", "inputSchema": {…}}
//!     }
//!   }
//! }
//! ```
//!
//! Loading checks that every `sha256` is the hash of its `definition` and that the definition
//! names its key: a hand edit that forgets to re-hash is refused, not silently trusted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::protocol::mcp::ToolAnnotations;

/// The lock file format version this build reads and writes.
pub const VERSION: u32 = 1;

/// Largest lock file read, in bytes.
pub const MAX_LOCK_BYTES: u64 = 8 * 1024 * 1024;

/// A lock file: the pinned definitions of one upstream's tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Format version (`1`).
    pub version: u32,
    /// Tool name → its pinned definition.
    #[serde(default)]
    pub tools: BTreeMap<String, Pin>,
}

/// One pinned tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Hex SHA-256 of the definition's canonical JSON.
    pub sha256: String,
    /// The definition as reviewed (`name`, `description`, `inputSchema`, `annotations`).
    pub definition: Value,
}

impl Pin {
    /// Pins `tool` (a `tools/list` entry).
    pub fn of(tool: &Value) -> Option<(String, Self)> {
        let definition = definition(tool)?;
        let name = definition.get("name")?.as_str()?.to_string();
        Some((
            name,
            Self {
                sha256: hash(&definition),
                definition,
            },
        ))
    }

    /// The pinned annotations (what Cedar sees as the tool's hints).
    pub fn annotations(&self) -> ToolAnnotations {
        ToolAnnotations::of(&self.definition)
    }
}

impl Lock {
    /// Reads and checks a lock file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
        if meta.len() > MAX_LOCK_BYTES {
            return Err(format!("larger than {MAX_LOCK_BYTES} bytes"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::parse(&text)
    }

    /// Parses and checks lock text: the version, and each pin's name and hash.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        // Strict JSON (duplicate keys refused, depth bounded), as everything the proxy reads.
        let value = crate::protocol::json::parse(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let lock: Lock = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if lock.version != VERSION {
            return Err(format!(
                "version {} is not supported (this build reads version {VERSION})",
                lock.version
            ));
        }
        for (name, pin) in &lock.tools {
            let Some(definition) = definition(&pin.definition) else {
                return Err(format!("tools.{name}: the definition has no string `name`"));
            };
            if definition.get("name").and_then(Value::as_str) != Some(name) {
                return Err(format!("tools.{name}: the definition names another tool"));
            }
            if hash(&definition) != pin.sha256 {
                return Err(format!(
                    "tools.{name}: sha256 is not the hash of the definition (edited by hand? \
                     re-pin it with `palisade tools approve {name}`)"
                ));
            }
        }
        Ok(lock)
    }

    /// The file's text: pretty JSON, keys sorted, ending in a newline.
    pub fn to_text(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut text = serde_json::to_string_pretty(&sorted(&value)).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the file (through a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("lock-tmp");
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(&tmp, path)
    }

    /// A lock pinning every tool of `tools` (a `tools/list` result's `tools`); entries without
    /// a string name are skipped.
    pub fn of_tools(tools: &[Value]) -> Self {
        Self {
            version: VERSION,
            tools: tools.iter().filter_map(Pin::of).collect(),
        }
    }
}

/// The definition of a `tools/list` entry: its `name`, `title`, `description`, `inputSchema`,
/// `outputSchema` and `annotations` (absent or `null` fields left out) — everything of it a
/// model reads as text. `None` without a string `name`.
pub fn definition(tool: &Value) -> Option<Value> {
    let name = tool.get("name")?.as_str()?;
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.to_string()));
    for key in [
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
    ] {
        match tool.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                out.insert(key.into(), v.clone());
            }
        }
    }
    Some(Value::Object(out))
}

/// Hex SHA-256 of `value`'s canonical JSON.
pub fn hash(value: &Value) -> String {
    let digest = Sha256::digest(canonical(value).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` as compact JSON with every object's keys sorted (by their UTF-8 bytes).
pub fn canonical(value: &Value) -> String {
    serde_json::to_string(&sorted(value)).unwrap_or_default()
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(list) => Value::Array(list.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// How a live tool list differs from a lock.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    /// Tools served but not pinned.
    pub new: Vec<String>,
    /// Pinned tools served with another definition, with the fields that differ.
    pub changed: Vec<(String, Vec<&'static str>)>,
    /// Pinned tools no longer served.
    pub removed: Vec<String>,
}

impl Diff {
    /// Compares `tools` (a `tools/list` result's `tools`) with `lock`.
    pub fn of(lock: &Lock, tools: &[Value]) -> Self {
        let live: BTreeMap<String, Pin> = tools.iter().filter_map(Pin::of).collect();
        let mut diff = Self::default();
        for (name, pin) in &live {
            match lock.tools.get(name) {
                None => diff.new.push(name.clone()),
                Some(pinned) if pinned.sha256 != pin.sha256 => {
                    let fields = [
                        "title",
                        "description",
                        "inputSchema",
                        "outputSchema",
                        "annotations",
                    ]
                    .into_iter()
                    .filter(|f| {
                        pinned.definition.get(*f).map(canonical)
                            != pin.definition.get(*f).map(canonical)
                    })
                    .collect();
                    diff.changed.push((name.clone(), fields));
                }
                Some(_) => {}
            }
        }
        diff.removed = lock
            .tools
            .keys()
            .filter(|n| !live.contains_key(*n))
            .cloned()
            .collect();
        diff
    }

    /// Whether the list matches the lock.
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}
