//! The orchestrator's configuration, read from YAML (`palisade-orchestrator -c FILE`).
//!
//! Every field is optional; an empty file is the default configuration. Unknown fields are
//! errors, so a typo never silently falls back to a default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Orchestrator settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// Address the HTTP server listens on. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Delay before each word the built-in offline model streams, in milliseconds. Default `40`.
    pub word_delay_ms: u64,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8081)),
            word_delay_ms: 40,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match [`OrchestratorConfig`] (the message names the
    /// field and position).
    #[error("invalid orchestrator config: {0}")]
    Parse(#[from] serde_yaml::Error),
}

impl OrchestratorConfig {
    /// Parses YAML. An empty document (or one holding only comments) is the default.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let parsed: Option<Self> = serde_yaml::from_str(text)?;
        Ok(parsed.unwrap_or_default())
    }

    /// Reads and parses a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// [`word_delay_ms`](Self::word_delay_ms) as a [`Duration`].
    pub fn word_delay(&self) -> Duration {
        Duration::from_millis(self.word_delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, OrchestratorConfig};

    #[test]
    fn empty_and_comment_only_files_are_the_default() {
        for text in ["", "\n", "# nothing here\n", "{}"] {
            assert_eq!(
                OrchestratorConfig::from_yaml(text).unwrap(),
                OrchestratorConfig::default(),
                "{text:?}"
            );
        }
        let d = OrchestratorConfig::default();
        assert_eq!(d.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(d.word_delay().as_millis(), 40);
    }

    #[test]
    fn fields_are_read() {
        let cfg =
            OrchestratorConfig::from_yaml("listen: 0.0.0.0:9000\nword_delay_ms: 5\n").unwrap();
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(cfg.word_delay_ms, 5);
    }

    #[test]
    fn unknown_and_invalid_fields_are_errors() {
        let err = OrchestratorConfig::from_yaml("word_delay: 5\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
        assert!(err.to_string().contains("word_delay"), "{err}");
        let err = OrchestratorConfig::from_yaml("listen: nowhere\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = OrchestratorConfig::load("/nonexistent/orch.yaml".as_ref()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/orch.yaml"), "{err}");
    }
}
