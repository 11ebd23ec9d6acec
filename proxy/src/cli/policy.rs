//! `palisade policy validate | test | explain | who-can | diff | export`: Cedar policies from the
//! command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;

use crate::authz::explain::{explain, from_audit, AuditSource, ExplainRequest};
use crate::authz::{analysis, runtests, Mode, PolicySet, Resource, ResourceKind};

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
        #[arg(
            short,
            long,
            required_unless_present = "from_audit",
            conflicts_with = "from_audit"
        )]
        request: Option<PathBuf>,
        /// Take the request from an audit record: `FILE:LINE` (line from 1) of an audit JSONL
        /// file. Fields the record does not carry (MFA, scopes, groups, arguments…) are listed.
        #[arg(long, value_name = "FILE:LINE")]
        from_audit: Option<String>,
        /// With `--from-audit`: explain the record's tool call number N (from 0) instead of
        /// its request-level decision.
        #[arg(long, value_name = "N", requires = "from_audit")]
        tool_call: Option<usize>,
        /// Print the explanation as JSON (decision, policies, context, entities) instead of the
        /// report.
        #[arg(long)]
        json: bool,
    },
    /// Which principal shapes (type × role × tenant × MFA × scopes × network × method × time)
    /// may do ACTION on RESOURCE, with the deciding permits; exhaustive over the policies'
    /// finite model (docs/policy-studio.md).
    WhoCan {
        /// The policy directory.
        #[arg(short, long, default_value = "policies")]
        policies: PathBuf,
        /// Action id, e.g. `call_tool`.
        #[arg(short, long)]
        action: String,
        /// Resource as Cedar text (`Tool::"run_shell"`), or a bare id when the action applies
        /// to one resource type.
        #[arg(short, long)]
        resource: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every request (principal shape × action × resource) whose decision differs between
    /// two policy directories, grouped more / less permissive. Exit 0 when nothing became
    /// more permissive, 1 when something did, 2 when a directory does not load.
    Diff {
        /// The policy directory before the change (or `builtin`).
        old: PathBuf,
        /// The policy directory after the change.
        new: PathBuf,
        /// Print the difference as JSON.
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
            from_audit,
            tool_call,
            json,
        } => run_explain(
            &policies,
            request.as_deref(),
            from_audit.as_deref(),
            tool_call,
            json,
        ),
        PolicyCommand::WhoCan {
            policies,
            action,
            resource,
            json,
        } => who_can(&policies, &action, &resource, json),
        PolicyCommand::Diff { old, new, json } => diff(&old, &new, json),
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

fn run_explain(
    dir: &Path,
    request: Option<&Path>,
    from_audit: Option<&str>,
    tool_call: Option<usize>,
    json: bool,
) -> ExitCode {
    let Some(set) = load(dir) else {
        return ExitCode::FAILURE;
    };
    let (what, parsed) = match (request, from_audit) {
        (_, Some(at)) => (at.to_string(), from_audit_record(at, tool_call)),
        (Some(file), None) => (
            file.display().to_string(),
            std::fs::read_to_string(file)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                .map(|r| (r, None)),
        ),
        (None, None) => ("explain".into(), Err("--request or --from-audit".into())),
    };
    let outcome = parsed.and_then(|(r, audit)| {
        explain(&set, &r).map(|mut e| {
            e.set_audit(audit);
            e
        })
    });
    match outcome {
        Ok(e) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&e.json()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(e) => {
            print!("{}", e.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads line `LINE` of `FILE` (`FILE:LINE`) and makes it an explain request.
fn from_audit_record(
    at: &str,
    tool_call: Option<usize>,
) -> Result<(ExplainRequest, Option<AuditSource>), String> {
    let (file, line) = at
        .rsplit_once(':')
        .and_then(|(f, l)| Some((f, l.parse::<usize>().ok().filter(|l| *l > 0)?)))
        .ok_or("expected FILE:LINE (line numbers from 1)")?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let record = text
        .lines()
        .nth(line - 1)
        .ok_or_else(|| format!("{file} has fewer than {line} lines"))?;
    let (request, audit) = from_audit(record, tool_call)?;
    Ok((request, Some(audit)))
}

fn who_can(dir: &Path, action: &str, resource: &str, json: bool) -> ExitCode {
    let Some(set) = load(dir) else {
        return ExitCode::FAILURE;
    };
    let resource = match parse_resource(&set, action, resource) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    match analysis::who_can(&set, action, &resource) {
        Ok(answer) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            print!("{}", answer.text());
            println!(
                "({} decisions in {} ms)",
                answer.evaluated,
                started.elapsed().as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `Tool::"x"`, or a bare `x` when `action` applies to exactly one resource type.
fn parse_resource(set: &PolicySet, action: &str, text: &str) -> Result<Resource, String> {
    if text.contains("::") {
        return Resource::parse(text);
    }
    let kinds = [
        ResourceKind::Route,
        ResourceKind::Agent,
        ResourceKind::Tool,
        ResourceKind::Thread,
    ];
    let fitting: Vec<Resource> = kinds
        .iter()
        .map(|k| Resource::new(*k, text))
        .filter(|r| set.check_target(action, r).is_ok())
        .collect();
    match fitting.as_slice() {
        [one] => Ok(one.clone()),
        [] => set
            .check_target(action, &Resource::new(ResourceKind::Route, text))
            .map(|()| Resource::new(ResourceKind::Route, text)),
        _ => Err(format!(
            "`{text}`: action `{action}` applies to several resource types; write it as Cedar, e.g. {}",
            fitting[0].uid_text()
        )),
    }
}

fn diff(old: &Path, new: &Path, json: bool) -> ExitCode {
    let (Some(old_set), Some(new_set)) = (load(old), load(new)) else {
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let d = match analysis::diff(&old_set, &new_set) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
    } else {
        print!("{}", d.text());
        println!("({} ms)", started.elapsed().as_millis());
    }
    if d.more_permissive() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
