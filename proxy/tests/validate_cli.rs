//! `palisade validate`: every error at once with its line and column, and `--no-env` for CI
//! without secrets.

use std::path::Path;
use std::process::{Command, Output};

fn palisade() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    // The test process may carry overrides of its own; each test sets what it needs.
    for (name, _) in std::env::vars() {
        if name.starts_with("PALISADE_") || name.starts_with("OTEL_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn validate(args: &[&str], file: &Path) -> Output {
    palisade()
        .arg("validate")
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SEVERAL_ERRORS: &str = "\
server:
  threads: many
  colour: red
upstreams:
  app: {address: \"127.0.0.1:1\"}
routes:
  - name: a
    match: {path_prefix: /, methodz: [GET]}
    upstream: app
  - name: b
    match: {path_prefix: /b}
    upstream: nowhere
";

#[test]
fn validate_reports_every_error_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, SEVERAL_ERRORS).unwrap();
    let f = file.display().to_string();
    let out = validate(&[], &file);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let expected = [
        format!("{f}:2:3: server.threads: invalid type: string \"many\", expected an integer"),
        // The fields in the order the config types declare them, as serde itself lists them.
        format!(
            "{f}:3:3: server.colour: unknown field `colour`, expected one of `threads`, \
             `drain_timeout`, `log_format`, `log_level`, `header_timeout`, `max_connections_per_ip`, \
             `reload_interval`"
        ),
        format!(
            "{f}:8:29: routes[0].match.methodz: unknown field `methodz`, expected one of \
             `host`, `path_prefix`, `methods`"
        ),
        format!("{f}:12:5: routes[1].upstream: no upstream named `nowhere` in `upstreams`"),
        format!("{f}: 4 error(s)"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "{stderr}");

    // `-c FILE` is the same command.
    let out = palisade()
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(text(&out.stderr), stderr);
}

#[test]
fn structural_errors_that_cannot_be_set_aside_skip_the_semantic_checks_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    // A route without its required `name`, and a listener entry that is not a mapping.
    std::fs::write(
        &file,
        "listeners:\n  - 8080\nroutes:\n  - upstream: x\n    match: {path_prefix: 7}\n",
    )
    .unwrap();
    let f = file.display().to_string();
    let out = validate(&[], &file);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{f}:2:5: listeners[0]: invalid type: number 8080, expected a mapping"),
            format!("{f}:4:5: routes[0].name: missing field `name`"),
            format!(
                "{f}:5:13: routes[0].match.path_prefix: invalid type: number 7, expected a string"
            ),
            format!(
                "{f}: (root): the semantic checks did not run: fix the errors above first (note)"
            ),
            format!("{f}: 3 error(s)"),
        ],
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_yaml_gets_the_parser_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "routes:\n  - name: a\n   bad: [\n").unwrap();
    let out = validate(&[], &file);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().unwrap();
    let prefix = format!("{}:3:", file.display());
    assert!(first.starts_with(&prefix), "{stderr}");
    assert!(first.contains(": (document): not valid YAML: "), "{stderr}");
    assert!(stderr.ends_with(": 1 error(s)\n"), "{stderr}");
}

const UNSET_SECRET: &str = "\
upstreams:
  agent: {address: \"127.0.0.1:8000\"}
routes:
  - name: agent
    match: {path_prefix: /agent}
    upstream: agent
authentication:
  issuers:
    - issuer: https://abcdefgh.supabase.co/auth/v1
      audiences: [authenticated]
      algorithms: [HS256]
      keys: {secret_env: PALISADE_TEST_UNSET_JWT_SECRET}
";

#[test]
fn no_env_turns_absent_secrets_into_notes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ci.yaml");
    std::fs::write(&file, UNSET_SECRET).unwrap();
    let f = file.display().to_string();

    let out = validate(&[], &file);
    assert!(!out.status.success(), "an unset secret fails by default");
    assert_eq!(
        text(&out.stderr).lines().next().unwrap(),
        format!(
            "{f}:12:14: authentication.issuers[0].keys.secret_env: environment variable \
             PALISADE_TEST_UNSET_JWT_SECRET is not set"
        )
    );

    let out = validate(&["--no-env"], &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{f}:12:14: authentication.issuers[0].keys.secret_env: environment variable \
             PALISADE_TEST_UNSET_JWT_SECRET is not set: not checked (note)\n"
        )
    );
    assert!(text(&out.stdout).contains("valid (1 listener(s), 1 route(s); 1 note(s))"));

    // Everything else is still checked: a bad route is an error under --no-env too.
    let broken = UNSET_SECRET.replace("path_prefix: /agent", "path_prefix: agent");
    std::fs::write(&file, broken).unwrap();
    let out = validate(&["--no-env"], &file);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{f}:5:13: routes[0].match.path_prefix: must start with `/`"
        )),
        "{stderr}"
    );
}

#[test]
fn no_env_ignores_overrides_and_notes_missing_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tls.yaml");
    std::fs::write(
        &file,
        "listeners:\n  - address: 127.0.0.1:8443\n    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}\n",
    )
    .unwrap();
    let out = validate(&[], &file);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("listeners[0].tls.cert: file `/nonexistent/cert.pem`"));

    let out = palisade()
        .args(["validate", "--no-env"])
        .arg(&file)
        .env("PALISADE_ADMIN__ADDRESS", "not an address")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let notes = text(&out.stderr);
    assert_eq!(notes.lines().count(), 2, "{notes}");
    assert!(notes.contains(
        "listeners[0].tls.cert: file `/nonexistent/cert.pem` does not exist: not checked (note)"
    ));

    // Without --no-env the override applies (and is wrong): the error names the variable, not
    // the line of the value it replaced.
    std::fs::write(&file, "admin:\n  address: 127.0.0.1:9901\n").unwrap();
    let out = palisade()
        .args(["validate"])
        .arg(&file)
        .env("PALISADE_ADMIN__ADDRESS", "not an address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).lines().next().unwrap(),
        format!(
            "{}: admin.address: `not an address` is not an IP address with a port (set by \
             PALISADE_ADMIN__ADDRESS)",
            file.display()
        )
    );
}

#[test]
fn ca_files_that_do_not_hold_certificates_are_reported_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let file = dir.path().join("palisade.yaml");
    std::fs::write(
        &file,
        format!(
            "authentication:\n  ca_file: \"{}\"\n  issuers:\n    - issuer: https://idp.test\n      \
             keys: {{jwks_url: \"https://idp.test/jwks\"}}\n\
             tracing:\n  enabled: true\n  protocol: grpc\n  endpoint: https://collector.test:4317\n  \
             ca_file: \"{}\"\n\
             upstreams:\n  app: {{address: \"127.0.0.1:1\"}}\n\
             routes:\n  - {{name: a, match: {{path_prefix: /}}, upstream: app}}\n",
            not_pem.display(),
            missing.display()
        ),
    )
    .unwrap();
    let out = validate(&[], &file);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("authentication.ca_file: ") && stderr.contains("holds no PEM certificate"),
        "{stderr}"
    );
    // A gRPC collector takes a CA file as well as an HTTP one: only the missing file is refused.
    assert!(
        stderr.contains("tracing.ca_file: cannot read ") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    // A CA file for a collector reached over plain http would never be used: said, not ignored.
    let ca = dir.path().join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["collector.test".into()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    std::fs::write(
        &file,
        format!(
            "tracing:\n  enabled: true\n  endpoint: http://collector.test:4318\n  ca_file: \"{}\"\n\
             upstreams:\n  app: {{address: \"127.0.0.1:1\"}}\n\
             routes:\n  - {{name: a, match: {{path_prefix: /}}, upstream: app}}\n",
            ca.display()
        ),
    )
    .unwrap();
    let stderr = text(&validate(&[], &file).stderr);
    assert!(
        stderr.contains(
            "tracing.ca_file: the collector `http://collector.test:4318/v1/traces` is not https"
        ),
        "{stderr}"
    );
}
