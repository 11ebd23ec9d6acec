//! `palisade audit verify FILE… [--public-key KEY]`, `palisade audit tail`, `palisade audit
//! keygen FILE` and `palisade audit public-key FILE`: check a hash chain and its signed
//! checkpoints, follow decisions, make and show checkpoint keys. How to read `verify`'s output:
//! docs/operations.md, "Reading `audit verify`".

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::audit::checkpoint::{self, CheckpointKey};
use crate::audit::{chain, file};

/// The dev config's audit file (`{tmp}/palisade-dev/audit.jsonl`).
const DEV_AUDIT_FILE: &str = "{tmp}/palisade-dev/audit.jsonl";

/// `palisade audit …`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of audit files (oldest first; a directory means its active file and
    /// rotated files in order), and with `--public-key` its signed checkpoints. Exit 0 when
    /// intact (and, with a key, signed to the last record); 1 when broken, forged or unsigned,
    /// naming the first bad line; 2 when intact but records after the last checkpoint are not
    /// signed yet.
    Verify {
        /// Audit files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The checkpoint public key (SPKI PEM: `<key_file>.pub`, or `palisade audit public-key
        /// KEY_FILE`). Without it only the hash chain is checked, and a rewritten file passes.
        #[arg(long, value_name = "KEY")]
        public_key: Option<PathBuf>,
    },
    /// Create a checkpoint signing key (Ed25519, PKCS#8 PEM, mode 0600) at FILE and its public
    /// key at FILE.pub; refuses to overwrite.
    Keygen {
        /// The private key file to create (`audit.checkpoint.key_file`).
        file: PathBuf,
    },
    /// Print the public key (SPKI PEM) of a checkpoint signing key.
    PublicKey {
        /// The private key file (`audit.checkpoint.key_file`).
        key_file: PathBuf,
    },
    /// Print audit records as they are written (like `tail -f`), one line per request.
    Tail {
        /// The active audit file. Default: the dev stack's (`$TMPDIR/palisade-dev/audit.jsonl`).
        file: Option<PathBuf>,
        /// Only requests that were refused or failed (status >= 400 or an error code).
        #[arg(long)]
        denied: bool,
        /// Print the whole JSON record instead of a summary line.
        #[arg(long)]
        json: bool,
        /// How many existing records to show first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Print the existing records and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
}

/// Runs an audit command.
pub fn run(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Verify { files, public_key } => verify(&files, public_key.as_deref()),
        AuditCommand::Keygen { file } => match CheckpointKey::generate_to(&file) {
            Ok(key) => {
                println!(
                    "wrote {} (private, keep it with the proxy) and {} (public, for `audit \
                     verify --public-key`); key id {}",
                    file.display(),
                    checkpoint::public_key_path(&file).display(),
                    key.key_id()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("palisade audit keygen: {}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        AuditCommand::PublicKey { key_file } => {
            match checkpoint::read_key_file(&key_file)
                .map_err(|e| e.to_string())
                .and_then(|t| CheckpointKey::from_pem(&t))
            {
                Ok(key) => {
                    print!("{}", key.public_pem());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("palisade audit public-key: {}: {e}", key_file.display());
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Tail {
            file,
            denied,
            json,
            lines,
            no_follow,
        } => {
            let file = file.unwrap_or_else(|| crate::audit::resolve_path(DEV_AUDIT_FILE));
            match tail(&file, denied, json, lines, !no_follow) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("palisade audit tail: {}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn verify(args: &[PathBuf], public_key: Option<&Path>) -> ExitCode {
    let mut files = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let active = std::fs::read_dir(arg)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_active_file(p))
                .collect::<Vec<_>>();
            for a in active {
                match file::chain_files(&a) {
                    Ok(f) => files.extend(f),
                    Err(e) => {
                        eprintln!("palisade audit verify: {}: {e}", a.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
        } else {
            files.push(arg.clone());
        }
    }
    if files.is_empty() {
        eprintln!("palisade audit verify: no audit files found");
        return ExitCode::FAILURE;
    }
    let Some(key_path) = public_key else {
        let mut checkpoints = 0u64;
        return match chain::verify_with(&files, |line| {
            checkpoints += u64::from(checkpoint::is_checkpoint(line.record));
            Ok(())
        }) {
            Ok(v) => {
                println!("{}", chain_line(&v, files.len()));
                if checkpoints > 0 {
                    println!(
                        "note: {checkpoints} signed checkpoint(s) not checked: pass --public-key \
                         KEY (without it a rewritten file is not detected)"
                    );
                } else {
                    println!(
                        "note: no signed checkpoints: a full rewrite of these files would pass \
                         (set audit.checkpoint)"
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("BROKEN: {e}");
                ExitCode::FAILURE
            }
        };
    };
    let key = match checkpoint::read_key_file(key_path)
        .map_err(|e| e.to_string())
        .and_then(|t| checkpoint::parse_public_key(&t))
    {
        Ok(k) => k,
        Err(e) => {
            eprintln!("palisade audit verify: {}: {e}", key_path.display());
            return ExitCode::FAILURE;
        }
    };
    match checkpoint::verify(&files, &key) {
        Ok(report) => {
            print!("{}", report.render(files.len()));
            if report.fully_signed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("BROKEN: {e}");
            ExitCode::FAILURE
        }
    }
}

fn chain_line(v: &chain::Verified, files: usize) -> String {
    checkpoint::chain_line(v, files)
}

/// `*.jsonl` that is not a rotated file (`<stem>.<12 digits>.jsonl`).
fn is_active_file(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(stem) = name.strip_suffix(".jsonl") else {
        return false;
    };
    let rotated = stem
        .rsplit_once('.')
        .is_some_and(|(_, seq)| seq.len() == 12 && seq.bytes().all(|b| b.is_ascii_digit()));
    !rotated
}

fn tail(path: &Path, denied: bool, json: bool, last: usize, follow: bool) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let text = {
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        s
    };
    let shown: Vec<&str> = text
        .lines()
        .filter(|l| keep(l, denied))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(last)
        .collect();
    for line in shown.into_iter().rev() {
        print_line(line, json);
    }
    if !follow {
        return Ok(());
    }
    let mut pos = text.len() as u64;
    let mut partial = String::new();
    let mut inode = f.metadata()?.ino();
    loop {
        // A rotation renames the file away: once a new active file exists, finish the old one
        // (still open) and continue with the new one from its start.
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.ino() != inode {
                let mut rest = String::new();
                f.seek(SeekFrom::Start(pos))?;
                f.read_to_string(&mut rest)?;
                partial.push_str(&rest);
                for line in partial.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                    if keep(line.trim_end(), denied) {
                        print_line(line.trim_end(), json);
                    }
                }
                partial.clear();
                f = std::fs::File::open(path)?;
                inode = f.metadata()?.ino();
                pos = 0;
            }
        }
        f.seek(SeekFrom::Start(pos))?;
        let mut reader = std::io::BufReader::new(&f);
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = reader.read_line(&mut buf)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            partial.push_str(&buf);
            if partial.ends_with('\n') {
                let line = std::mem::take(&mut partial);
                if keep(line.trim_end(), denied) {
                    print_line(line.trim_end(), json);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn keep(line: &str, denied: bool) -> bool {
    if !denied {
        return !line.trim().is_empty();
    }
    serde_json::from_str::<Value>(line).is_ok_and(|v| {
        v["status"].as_u64().is_some_and(|s| s >= 400) || v["error_code"].is_string()
    })
}

fn print_line(line: &str, json: bool) {
    if json {
        println!("{line}");
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        println!("{line}");
        return;
    };
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    if v["kind"] == "checkpoint" {
        let c = &v["checkpoint"];
        println!(
            "{} checkpoint seq={} covers={} reason={} key={}",
            s("timestamp"),
            v["seq"],
            c["covers_seq"],
            c["reason"].as_str().unwrap_or("-"),
            c["key_id"].as_str().unwrap_or("-"),
        );
        return;
    }
    let decision = match &v["decision"] {
        Value::Object(d) => format!(
            "{} {}{}",
            if d["allowed"].as_bool() == Some(true) {
                "allow"
            } else {
                "deny"
            },
            d["mode"].as_str().unwrap_or(""),
            d["policies"]
                .as_array()
                .filter(|p| !p.is_empty())
                .map(|p| format!(
                    " [{}]",
                    p.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                ))
                .unwrap_or_default()
        ),
        _ => "-".into(),
    };
    println!(
        "{} {} {} {} {} route={} principal={} decision={} limit={} code={} req={} trace={}",
        s("timestamp"),
        v["status"],
        s("method"),
        s("path"),
        s("reason"),
        s("route"),
        v["principal"]["id"].as_str().unwrap_or("-"),
        decision,
        s("rate_limit"),
        v["error_code"].as_str().unwrap_or("-"),
        s("request_id"),
        s("trace_id"),
    );
}
