//! `palisade policy validate | test | explain | export`: Cedar policies from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::authz::explain::{explain, ExplainRequest};
use crate::authz::{runtests, Mode, PolicySet};

/// Policy tooling.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory strictly against its schema; every error with file and line.
    Validate {
        /// The policy directory (`*.cedarschema`, `*.cedar`, `tools.yaml`).
        #[arg(short, long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Run Cedar `run-tests` files (default: every `*.json` under `<policies>/tests`; for
    /// `builtin`, the seed policies' own tests).
    Test {
        /// The policy directory.
        #[arg(short, long, default_value = "policies")]
        policies: PathBuf,
        /// Test files or directories; default `<policies>/tests`.
        files: Vec<PathBuf>,
    },
    /// Decide one request and explain it: deciding policies, annotations, entities, context.
    Explain {
        /// The policy directory.
        #[arg(short, long, default_value = "policies")]
        policies: PathBuf,
        /// The request (JSON; see `docs/policies.md`).
        #[arg(short, long)]
        request: PathBuf,
        /// Print the decision as JSON instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Write the seed policies compiled into the binary (`builtin`: schema, policies, tool
    /// catalog, tests) to a new or empty directory, as a starting point for your own.
    Export {
        /// The directory (created if missing).
        dir: PathBuf,
        /// Write into a directory that is not empty, overwriting files of the same names.
        /// Careful: the seed policies join whatever policies are there (admins may do
        /// everything).
        #[arg(long)]
        force: bool,
    },
}

/// Runs a policy command.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Validate { policies } => validate(&policies),
        PolicyCommand::Test { policies, files } => test(&policies, &files),
        PolicyCommand::Explain {
            policies,
            request,
            json,
        } => run_explain(&policies, &request, json),
        PolicyCommand::Export { dir, force } => export(&dir, force),
    }
}

fn export(dir: &Path, force: bool) -> ExitCode {
    let files: Vec<_> = crate::authz::builtin_files().collect();
    // Into a policy directory in use, the seed policies would add permissions at its next
    // reload: only a new or empty directory unless forced.
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied && !force {
        eprintln!(
            "{}: not empty; export into a new directory (or --force to write into this one)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    for (rel, text) in files {
        let path = dir.join(&rel);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}

fn load(dir: &Path) -> Option<PolicySet> {
    match PolicySet::load("cli", dir, Mode::Enforce) {
        Ok(set) => Some(set),
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", dir.display(), errors.len());
            None
        }
    }
}

fn validate(dir: &Path) -> ExitCode {
    let Some(set) = load(dir) else {
        return ExitCode::FAILURE;
    };
    println!(
        "{}: valid ({} policies, {} catalogued tools, sha256 {})",
        dir.display(),
        set.len(),
        set.catalog().tools.len(),
        set.hash()
    );
    ExitCode::SUCCESS
}

fn test(dir: &Path, files: &[PathBuf]) -> ExitCode {
    let Some(set) = load(dir) else {
        return ExitCode::FAILURE;
    };
    // The seed set's tests are compiled in with it; a directory's are files under it.
    let mut runs: Vec<(PathBuf, Option<&'static str>)> = Vec::new();
    if dir == Path::new(crate::authz::BUILTIN) && files.is_empty() {
        for (name, text) in crate::authz::BUILTIN_TESTS {
            runs.push((dir.join("tests").join(name), Some(text)));
        }
    } else {
        let roots = if files.is_empty() {
            vec![dir.join("tests")]
        } else {
            files.to_vec()
        };
        for root in roots {
            if root.is_dir() {
                runs.extend(
                    runtests::find_test_files(&root)
                        .into_iter()
                        .map(|p| (p, None)),
                );
            } else {
                runs.push((root, None));
            }
        }
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for (path, text) in &runs {
        let result = match text {
            Some(text) => runtests::run_text(&set, path, text),
            None => runtests::run_file(&set, path),
        };
        match result {
            Ok(outcomes) => {
                for o in outcomes {
                    match o.failure {
                        None => {
                            passed += 1;
                            println!("ok    {}: {}", path.display(), o.name);
                        }
                        Some(why) => {
                            failed += 1;
                            println!("FAIL  {}: {}: {why}", path.display(), o.name);
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {e}");
            }
        }
    }
    println!("policy tests: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        if passed + failed == 0 {
            eprintln!("no test cases found");
        }
        ExitCode::FAILURE
    }
}

fn run_explain(dir: &Path, request: &Path, json: bool) -> ExitCode {
    let Some(set) = load(dir) else {
        return ExitCode::FAILURE;
    };
    let parsed: Result<ExplainRequest, String> = std::fs::read_to_string(request)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
    let outcome = parsed.and_then(|r| explain(&set, &r));
    match outcome {
        Ok(e) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&e.decision).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(e) => {
            print!("{}", e.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", request.display());
            ExitCode::FAILURE
        }
    }
}
