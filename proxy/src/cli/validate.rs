//! `palisade validate -c FILE`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

/// Validates `path`, printing every error as `FILE: field.path: message`.
pub fn run(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: valid ({} listener(s), {} route(s))",
                path.display(),
                config.listeners.len(),
                config.routes.routes().len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            let errors = err.field_errors();
            for e in &errors {
                eprintln!("{}: {}: {}", path.display(), e.path, e.message);
            }
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}
