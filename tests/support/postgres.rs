//! A real PostgreSQL for tests: `initdb` into a temp dir, `pg_ctl start` on a free loopback port
//! (unix socket in the temp dir too), `pg_ctl stop -m immediate` on drop. The binaries come from
//! the Debian package `postgresql` (`/usr/lib/postgresql/<version>/bin`, not on PATH) or PATH. A
//! missing PostgreSQL fails the test with instructions — never skipped silently.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
//! `postgres` (else `nobody`) user via `runuser`, with the temp dir handed to that user.
//!
//! [`PostgresServer::start_tls`] turns `ssl` on with a certificate the test made and accepts
//! TCP connections over TLS only (`hostnossl … reject`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::redis::free_port;

/// The directory holding `initdb` and `pg_ctl`; panics with install instructions when missing.
pub fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("pg_ctl").is_file() && p.join("initdb").is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL not found (no /usr/lib/postgresql/<version>/bin/pg_ctl, no pg_ctl on PATH): \
             the session-store tests need a real PostgreSQL. Install it with \
             `apt-get install -y postgresql` (tests/run.sh does this)."
        )
    })
}

/// One PostgreSQL server (database `postgres`, superuser `palisade`, trust auth on loopback);
/// stopped on drop.
pub struct PostgresServer {
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    run_as: Option<&'static str>,
    running: bool,
    extra_options: String,
    dir: tempfile::TempDir,
}

/// The server certificate of a TLS server.
pub struct ServerTls {
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// `pg_hba.conf` lines placed before the TLS-only defaults (e.g. a password-only role).
    pub hba_first: Vec<String>,
}

impl PostgresServer {
    /// Creates a cluster and starts it on a free port; waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), with `ssl = on` using `tls`'s certificate, and TCP
    /// connections accepted over TLS only.
    pub fn start_tls(tls: &ServerTls) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&ServerTls>) -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = if is_root() {
            Some(unprivileged_user())
        } else {
            None
        };
        if let Some(user) = run_as {
            let out = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .output()
                .expect("chown runs");
            assert!(out.status.success(), "chown {user}: {}", text(&out));
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let mut server = Self {
            port: free_port(),
            bin,
            data,
            log,
            run_as,
            running: false,
            extra_options: String::new(),
            dir,
        };
        let out = server.run(
            "initdb",
            &[
                "-D".as_ref(),
                server.data.as_os_str(),
                "-U".as_ref(),
                "palisade".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        if let Some(tls) = tls {
            server.install_tls(tls);
        }
        server.resume();
        server
    }

    /// Writes the certificate and key into the data dir (key mode 0600, owned by the server's
    /// user) and a `pg_hba.conf` that refuses TCP without TLS.
    fn install_tls(&mut self, tls: &ServerTls) {
        use std::os::unix::fs::PermissionsExt;
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::write(&cert, &tls.cert_pem).expect("write server.crt");
        std::fs::write(&key, &tls.key_pem).expect("write server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        let mut hba = vec!["local all all trust".to_owned()];
        hba.extend(tls.hba_first.iter().cloned());
        hba.push("hostssl all all 127.0.0.1/32 trust".into());
        hba.push("hostnossl all all 127.0.0.1/32 reject".into());
        std::fs::write(self.data.join("pg_hba.conf"), hba.join("\n") + "\n").expect("pg_hba");
        if let Some(user) = self.run_as {
            let out = Command::new("chown")
                .args(["-R", user])
                .arg(&self.data)
                .output()
                .expect("chown runs");
            assert!(out.status.success(), "chown {user}: {}", text(&out));
        }
        self.extra_options =
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
    }

    /// A `tokio-postgres` connection string for the `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=palisade dbname=postgres connect_timeout=2",
            self.port
        )
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash would.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let out = self.stop_immediately();
        self.running = false;
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// Starts the stopped server again on the same port and data.
    pub fn resume(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off{}",
            self.port,
            self.dir.path().display(),
            self.extra_options
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-l".as_ref(),
                self.log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            text(&out),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`.
    fn stop_immediately(&self) -> Output {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    /// Runs one of the server's binaries (as the unprivileged user when we are root).
    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    /// The temp dir holding the data, the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_immediately();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `postgres` when that user exists (the Debian package creates it), else `nobody`.
fn unprivileged_user() -> &'static str {
    let exists = Command::new("id")
        .arg("postgres")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        "postgres"
    } else {
        "nobody"
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
