//! Loading a policy directory into a [`PolicySet`]: schema, policies, catalog, strict
//! validation, hash. Every problem comes back as a [`PolicyError`] with its file and line, and
//! nothing is half-loaded: either the whole set is good or [`PolicySet::load`] fails.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{PolicyId, Schema, SchemaFragment, ValidationMode, Validator};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use super::catalog::ToolCatalog;
use super::entities::EntityModel;
use super::slice::Slices;
use super::{Mode, PolicySet};

/// The catalog file name inside a policy directory.
pub const CATALOG_FILE: &str = "tools.yaml";

/// A policy set `path` naming the seed policies compiled into the binary (the files of
/// `policies/` at build time), for `palisade dev` run from anywhere.
pub const BUILTIN: &str = "builtin";

const BUILTIN_FILES: [(&str, &str); 4] = [
    (
        "palisade.cedarschema",
        include_str!("../../../policies/palisade.cedarschema"),
    ),
    ("abac.cedar", include_str!("../../../policies/abac.cedar")),
    ("roles.cedar", include_str!("../../../policies/roles.cedar")),
    ("tools.yaml", include_str!("../../../policies/tools.yaml")),
];

/// The seed policies' `run-tests` files (`policies/tests/`), for `palisade policy test -p
/// builtin` and `palisade policy export`.
pub const BUILTIN_TESTS: [(&str, &str); 2] = [
    (
        "abac.json",
        include_str!("../../../policies/tests/abac.json"),
    ),
    (
        "roles.json",
        include_str!("../../../policies/tests/roles.json"),
    ),
];

/// Every file of the seed policy set as `(path relative to the set, text)`: the schema, the
/// policies, the catalog and `tests/`.
pub fn builtin_files() -> impl Iterator<Item = (PathBuf, &'static str)> {
    let set = BUILTIN_FILES.iter().map(|(n, t)| (PathBuf::from(n), *t));
    let tests = BUILTIN_TESTS
        .iter()
        .map(|(n, t)| (Path::new("tests").join(n), *t));
    set.chain(tests)
}

/// One problem in a policy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or directory) concerned.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of that line, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Where a policy was written, for errors and `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// File name (as found in the directory listing).
    pub file: String,
    /// 1-based line of the policy's first line.
    pub line: usize,
    /// 1-based line of the policy's last line.
    pub end_line: usize,
}

/// The files of a policy directory, read but not parsed.
#[derive(Debug, Clone, Default)]
pub struct PolicyFiles {
    /// `*.cedarschema` files: (path, text), sorted by name.
    pub schemas: Vec<(PathBuf, String)>,
    /// `*.cedar` files: (path, text), sorted by name.
    pub policies: Vec<(PathBuf, String)>,
    /// `tools.yaml`, when present.
    pub catalog: Option<(PathBuf, String)>,
}

impl PolicyFiles {
    /// The seed policies compiled into the binary.
    pub fn builtin() -> Self {
        let mut files = Self::default();
        for (name, text) in BUILTIN_FILES {
            let entry = (PathBuf::from(BUILTIN).join(name), text.to_string());
            if name.ends_with(".cedarschema") {
                files.schemas.push(entry);
            } else if name.ends_with(".cedar") {
                files.policies.push(entry);
            } else {
                files.catalog = Some(entry);
            }
        }
        files
    }

    /// Reads the policy files of `dir` (not recursive; `tests/` and other files are ignored).
    /// The path `builtin` names the compiled-in seed policies.
    pub fn read(dir: &Path) -> Result<Self, Vec<PolicyError>> {
        if dir == Path::new(BUILTIN) {
            return Ok(Self::builtin());
        }
        let err = |file: &Path, message: String| {
            vec![PolicyError {
                file: file.display().to_string(),
                line: None,
                column: None,
                message,
            }]
        };
        let entries = std::fs::read_dir(dir).map_err(|e| err(dir, format!("cannot read: {e}")))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        let mut files = Self::default();
        for path in paths {
            let read = || std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()));
            match path.extension().and_then(|e| e.to_str()) {
                Some("cedarschema") => files.schemas.push((path.clone(), read()?)),
                Some("cedar") => files.policies.push((path.clone(), read()?)),
                _ if path.file_name().is_some_and(|n| n == CATALOG_FILE) => {
                    files.catalog = Some((path.clone(), read()?));
                }
                _ => {}
            }
        }
        if files.schemas.is_empty() {
            return Err(err(dir, "no *.cedarschema file".into()));
        }
        Ok(files)
    }

    /// SHA-256 over every file's name and contents, hex: the policy set's identity.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        let all = self
            .schemas
            .iter()
            .chain(&self.policies)
            .chain(self.catalog.iter());
        for (path, text) in all {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl PolicySet {
    /// Loads and strictly validates the policy directory `dir`.
    pub fn load(name: &str, dir: &Path, mode: Mode) -> Result<Self, Vec<PolicyError>> {
        let files = PolicyFiles::read(dir)?;
        Self::from_files(name, &files, mode)
    }

    /// Builds a policy set from files already read.
    pub fn from_files(
        name: &str,
        files: &PolicyFiles,
        mode: Mode,
    ) -> Result<Self, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let schema = parse_schema(&files.schemas, &mut errors);
        let (policies, sources) = parse_policies(&files.policies, &mut errors);
        let (approval_ids, misplaced) = super::approval::approval_policies(&policies);
        errors.extend(misplaced.into_iter().map(|(id, message)| {
            let source = sources.get(&id);
            PolicyError {
                file: source.map(|s| s.file.clone()).unwrap_or_default(),
                line: source.map(|s| s.line),
                column: None,
                message,
            }
        }));
        let catalog = match &files.catalog {
            Some((path, text)) => ToolCatalog::from_yaml(text).unwrap_or_else(|message| {
                errors.push(PolicyError {
                    file: display(path),
                    line: None,
                    column: None,
                    message,
                });
                ToolCatalog::default()
            }),
            None => ToolCatalog::default(),
        };
        let Some(schema) = schema else {
            return Err(errors);
        };
        let validator = Validator::new(schema.clone());
        let result = validator.validate(&policies, ValidationMode::Strict);
        for e in result.validation_errors() {
            let source = sources.get(e.policy_id());
            let (file, text) = source
                .and_then(|s| files.policies.iter().find(|(p, _)| display(p) == s.file))
                .map(|(p, t)| (display(p), t.as_str()))
                .unwrap_or_default();
            let at = first_label_at(e, text);
            let line = at.map(|(l, _)| l).or(source.map(|s| s.line));
            errors.push(PolicyError {
                file,
                line,
                column: at.map(|(_, c)| c),
                message: format!("policy `{}`: {e}{}", e.policy_id(), help(e)),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let model = EntityModel::new(&schema, &catalog, &policies).map_err(|message| {
            vec![PolicyError {
                file: "(schema)".into(),
                line: None,
                column: None,
                message,
            }]
        })?;
        let slices = Slices::build(&policies, model.action_ancestry());
        let mut set = Self {
            name: name.into(),
            mode,
            hash: Arc::from(files.hash()),
            schema,
            policies,
            sources,
            catalog,
            model,
            slices,
            files: files.clone(),
            scope_names: Vec::new(),
            approval_ids,
        };
        set.scope_names = super::analysis::facts_of(&[&set])
            .literals("scopes")
            .map(str::to_string)
            .collect();
        Ok(set)
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn help(e: &impl Diagnostic) -> String {
    e.help().map(|h| format!(" ({h})")).unwrap_or_default()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Line and column (1-based, the column in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    (
        line_of(text, offset),
        text[line_start..offset].chars().count() + 1,
    )
}

/// Where the first label of `e` points in `text`: (line, column).
fn first_label_at(e: &impl Diagnostic, text: &str) -> Option<(usize, usize)> {
    let label = e.labels()?.next()?;
    (!text.is_empty()).then(|| line_col(text, label.offset()))
}

fn parse_schema(files: &[(PathBuf, String)], errors: &mut Vec<PolicyError>) -> Option<Schema> {
    let mut fragments = Vec::new();
    for (path, text) in files {
        match SchemaFragment::from_cedarschema_str(text) {
            Ok((fragment, _warnings)) => fragments.push(fragment),
            Err(e) => errors.push(PolicyError {
                file: display(path),
                line: first_label_at(&e, text).map(|(l, _)| l),
                column: first_label_at(&e, text).map(|(_, c)| c),
                message: format!("{e}{}", help(&e)),
            }),
        }
    }
    if fragments.len() != files.len() {
        return None;
    }
    match Schema::from_schema_fragments(fragments) {
        Ok(schema) => Some(schema),
        Err(e) => {
            errors.push(PolicyError {
                file: files
                    .iter()
                    .map(|(p, _)| display(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                line: None,
                column: None,
                message: format!("{e}{}", help(&e)),
            });
            None
        }
    }
}

/// How deep brackets may nest in a policy file. Cedar's parser recurses once per level with no
/// limit of its own, so a file of a few hundred thousand `(` would overflow the stack and abort
/// the process; real policies stay in single digits.
const MAX_NESTING: usize = 128;

/// `Ok` when `(`, `[` and `{` outside string literals and comments nest at most `max` deep,
/// else the 1-based line and column of the first one too deep.
fn nesting_within(text: &str, max: usize) -> Result<(), (usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column, in_comment) = (line + 1, 0, false);
            continue;
        }
        if in_comment {
            continue;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => in_comment = true,
            '(' | '[' | '{' => {
                depth += 1;
                if depth > max {
                    return Err((line, column));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses every `.cedar` file; a policy's id is its `@id("…")` annotation, else
/// `<file name>:<line>`. Ids must be unique across the set.
fn parse_policies(
    files: &[(PathBuf, String)],
    errors: &mut Vec<PolicyError>,
) -> (cedar_policy::PolicySet, BTreeMap<PolicyId, PolicySource>) {
    let mut set = cedar_policy::PolicySet::new();
    let mut sources = BTreeMap::new();
    let mut seen = HashSet::new();
    for (path, text) in files {
        let file = display(path);
        if let Err((line, column)) = nesting_within(text, MAX_NESTING) {
            errors.push(PolicyError {
                file: file.clone(),
                line: Some(line),
                column: Some(column),
                message: format!(
                    "expressions nested more than {MAX_NESTING} deep are not accepted (the \
                     parser recurses once per level)"
                ),
            });
            continue;
        }
        let parsed = match cedar_policy::PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(PolicyError {
                    file: file.clone(),
                    line: first_label_at(&e, text).map(|(l, _)| l),
                    column: first_label_at(&e, text).map(|(_, c)| c),
                    message: format!("{e}{}", help(&e)),
                });
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            errors.push(PolicyError {
                file: file.clone(),
                line: None,
                column: None,
                message: "policy templates (?principal / ?resource) are not supported".into(),
            });
        }
        // `policies()` keeps the order of the source; find each one's text to get its line.
        let mut cursor = 0;
        for policy in parsed.policies() {
            let (line, end_line) = policy
                .to_cedar()
                .and_then(|src| text[cursor..].find(&src).map(|at| (at, src.len())))
                .map(|(at, len)| {
                    let start = cursor + at;
                    cursor = start + len;
                    (
                        line_of(text, start),
                        line_of(text, (start + len).saturating_sub(1)),
                    )
                })
                .unwrap_or((1, 1));
            let short = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = policy
                .annotation("id")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{short}:{line}"));
            if !seen.insert(id.clone()) {
                errors.push(PolicyError {
                    file: file.clone(),
                    line: Some(line),
                    column: None,
                    message: format!("policy id `{id}` is used twice"),
                });
                continue;
            }
            let id = PolicyId::new(id);
            if let Err(e) = set.add(policy.new_id(id.clone())) {
                errors.push(PolicyError {
                    file: file.clone(),
                    line: Some(line),
                    column: None,
                    message: e.to_string(),
                });
                continue;
            }
            sources.insert(
                id,
                PolicySource {
                    file: file.clone(),
                    line,
                    end_line,
                },
            );
        }
    }
    (set, sources)
}
