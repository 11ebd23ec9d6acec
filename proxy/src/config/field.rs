//! [`FieldError`]: one configuration problem at its field path. A leaf type, so every concern
//! can report its own config errors without importing the config loader.

use std::fmt;

/// One problem in a configuration, located by its field path (`routes[1].upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, with list indexes in brackets.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
