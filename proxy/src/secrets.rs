//! What validation reads from outside the file: secret environment variables (`secret_env`,
//! `*_env`), key and certificate files, `OTEL_*` variables.
//!
//! At start ([`Secrets::required`]) a missing secret is an error. `palisade validate --no-env`
//! ([`Secrets::optional`]) checks a config where the secrets are not present — CI on a config pull
//! request — so an unset variable or a key file that does not exist becomes a note; a secret that
//! *is* present is still checked (length, PEM), and everything else is checked as usual.

use std::io::ErrorKind;

use crate::error::FieldError;

/// The source of secrets for one validation run.
#[derive(Debug)]
pub struct Secrets {
    required: bool,
    notes: Vec<FieldError>,
}

impl Secrets {
    /// Secrets must be present (starting the proxy, plain `palisade validate`).
    pub fn required() -> Self {
        Self {
            required: true,
            notes: Vec::new(),
        }
    }

    /// Secrets may be absent; each absent one is noted ([`Secrets::notes`]).
    pub fn optional() -> Self {
        Self {
            required: false,
            notes: Vec::new(),
        }
    }

    /// Whether the process environment is consulted at all (not under `--no-env`).
    pub fn use_process_env(&self) -> bool {
        self.required
    }

    /// What was not checked because a secret was absent.
    pub fn notes(&self) -> &[FieldError] {
        &self.notes
    }

    /// The variable `name` that field `path` names: `Ok(Some(value))` when set, `Ok(None)` when
    /// unset and optional (noted), `Err` when unset and required.
    pub fn var(&mut self, path: &str, name: &str) -> Result<Option<String>, String> {
        match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(_) if !self.required => {
                self.note(
                    path,
                    format!("environment variable {name} is not set: not checked"),
                );
                Ok(None)
            }
            Err(_) => Err(format!("environment variable {name} is not set")),
        }
    }

    /// The text of the file `file` that field `path` names: `Ok(None)` when it does not exist and
    /// secrets are optional (noted); `Err` for any other failure.
    pub fn read(&mut self, path: &str, file: &str) -> Result<Option<String>, std::io::Error> {
        match std::fs::read_to_string(file) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound && !self.required => {
                self.note(path, format!("file `{file}` does not exist: not checked"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `file` (named by field `path`) is a file; when it does not exist and secrets are
    /// optional, notes it and answers true.
    pub fn is_file(&mut self, path: &str, file: &str) -> bool {
        let p = std::path::Path::new(file);
        if p.is_file() {
            return true;
        }
        if !self.required && !p.exists() {
            self.note(path, format!("file `{file}` does not exist: not checked"));
            return true;
        }
        false
    }

    /// For a file that does not exist: true (after noting it) when secrets are optional.
    pub fn tolerate_missing(&mut self, path: &str, file: &str) -> bool {
        if self.required {
            return false;
        }
        self.note(path, format!("file `{file}` does not exist: not checked"));
        true
    }

    /// Records that something at `path` was not checked.
    pub fn note(&mut self, path: &str, message: String) {
        self.notes.push(FieldError {
            path: path.to_string(),
            message,
        });
    }
}
