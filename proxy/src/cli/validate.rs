//! `palisade validate [--no-env] FILE`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{check, Secrets};

/// Validates `path`, printing every error as `FILE:LINE:COLUMN: field.path: message` (without
/// the position when the field is not in the file), notes after them.
///
/// `no_env`: the file as written (no `PALISADE_*` overrides, no `OTEL_*` variables), with absent
/// secrets (unset `*_env` variables, missing key files) as notes instead of errors.
pub fn run(path: &Path, no_env: bool) -> ExitCode {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = if no_env {
        check(&text, None::<Vec<(String, String)>>, Secrets::optional())
    } else {
        check(&text, Some(std::env::vars()), Secrets::required())
    };
    for e in &report.errors {
        eprintln!("{}", e.render(&file));
    }
    for n in &report.notes {
        eprintln!("{} (note)", n.render(&file));
    }
    match &report.config {
        Some(config) => {
            println!(
                "{file}: valid ({} listener(s), {} route(s){})",
                config.listeners.len(),
                config.routes.routes().len(),
                if report.notes.is_empty() {
                    String::new()
                } else {
                    format!("; {} note(s)", report.notes.len())
                }
            );
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("{file}: {} error(s)", report.errors.len());
            ExitCode::FAILURE
        }
    }
}
