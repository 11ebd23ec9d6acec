//! The SHA-256 hash chain over audit records, and its verification.
//!
//! Each written record carries `seq` (1, 2, … across files), `prev_hash` (the previous record's
//! `hash`; 64 zeros for the very first) and `hash` = SHA-256 over `prev_hash` followed by the
//! canonical JSON of the record without its `hash` (object keys sorted, no whitespace). A
//! rotated file's first record chains to the last record of the file before it.
//!
//! [`verify`] walks files in the given order and names the first line that breaks the chain and
//! how: edited (its own hash is wrong), or deleted / inserted / reordered (its `prev_hash` or
//! `seq` does not follow the line before). A record deleted from the very end of the newest file
//! leaves no trace in the file itself; compare the last `seq` with `palisade_audit_records_total`
//! or a shipped copy (Redis Stream) to catch that.
//!
//! The chain alone does not stop a *full* rewrite (whoever can write the file can recompute
//! every hash): signed checkpoints ([`super::checkpoint`]) do, checked by [`verify_with`].

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where a chain stands: the last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// `seq` of the last record (`0` before the first).
    pub seq: u64,
    /// `hash` of the last record ([`GENESIS`] before the first).
    pub hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

impl ChainHead {
    /// Adds the chain fields to `record` (a JSON object), advances the head, and returns the
    /// line to write (without its newline).
    pub fn seal(&mut self, mut record: Map<String, Value>) -> String {
        let seq = self.seq + 1;
        record.insert("seq".into(), Value::from(seq));
        record.insert("prev_hash".into(), Value::from(self.hash.clone()));
        let hash = hash_of(&self.hash, &record);
        record.insert("hash".into(), Value::from(hash.clone()));
        self.seq = seq;
        self.hash = hash;
        canonical(&Value::Object(record))
    }
}

/// SHA-256 (lower-case hex) over `prev_hash` and the canonical JSON of `record` without `hash`.
pub fn hash_of(prev_hash: &str, record: &Map<String, Value>) -> String {
    let mut body = Vec::with_capacity(1024);
    write_object(record, &mut body, Some("hash"));
    hash_bytes(prev_hash, &body)
}

/// SHA-256 (lower-case hex) over `prev_hash` followed by `canonical_body`.
pub fn hash_text(prev_hash: &str, canonical_body: &str) -> String {
    hash_bytes(prev_hash, canonical_body.as_bytes())
}

fn hash_bytes(prev_hash: &str, canonical_body: &[u8]) -> String {
    hash_hex(prev_hash, canonical_body)
        .into_iter()
        .map(char::from)
        .collect()
}

/// [`hash_text`] as the 64 ASCII bytes of its hex, without an allocation (the writer's path).
pub fn hash_hex(prev_hash: &str, canonical_body: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical_body);
    let mut hex = [0u8; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(hasher.finalize()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// Canonical JSON: object keys sorted by bytes, no insignificant whitespace; strings and numbers
/// as `serde_json` writes them.
pub fn canonical(value: &Value) -> String {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out);
    // Only serde_json's output and ASCII punctuation went in.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out, None),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Writing a scalar into a Vec cannot fail.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>, skip: Option<&str>) {
    let mut keys: Vec<&String> = map.keys().filter(|k| Some(k.as_str()) != skip).collect();
    keys.sort_unstable();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_canonical(&map[key], out);
    }
    out.push(b'}');
}

/// How a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// The line is not a JSON object with `seq`, `prev_hash` and `hash`.
    Malformed(String),
    /// The record's content does not match its own hash: it was edited.
    Edited,
    /// A signed checkpoint that does not hold (see [`super::checkpoint`]), with why.
    Checkpoint(String),
    /// The record does not follow the one before (`prev_hash` or `seq` out of line): a record
    /// was deleted, inserted or moved here.
    OutOfSequence {
        /// The `seq` expected here.
        expected_seq: u64,
        /// The `seq` found.
        found_seq: u64,
    },
}

/// The first break found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number in that file.
    pub line: usize,
    /// What is wrong.
    pub kind: BreakKind,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("{}:{}", self.file.display(), self.line);
        match &self.kind {
            BreakKind::Malformed(why) => write!(f, "{at}: not an audit record ({why})"),
            BreakKind::Edited => write!(f, "{at}: record edited (its hash does not match)"),
            BreakKind::Checkpoint(why) => write!(f, "{at}: {why}"),
            BreakKind::OutOfSequence {
                expected_seq,
                found_seq,
            } => {
                let what = match found_seq.cmp(expected_seq) {
                    std::cmp::Ordering::Greater => {
                        "record(s) missing before this line (deleted, or lines reordered)"
                    }
                    std::cmp::Ordering::Less => "record out of order (inserted or reordered)",
                    std::cmp::Ordering::Equal => "record does not link (inserted or replaced)",
                };
                write!(
                    f,
                    "{at}: {what} (expected seq {expected_seq}, found {found_seq}; prev_hash \
                     does not link to the line before)"
                )
            }
        }
    }
}

/// What [`verify`] saw in an intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The head after the last record.
    pub head: ChainHead,
}

/// Why verification could not finish.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The chain is broken.
    #[error("{0}")]
    Broken(ChainBreak),
    /// Checked with a public key, but no record is covered by a checkpoint.
    #[error(
        "no signed checkpoint in {records} record(s): nothing here is vouched for by key \
         {key_id} (a file rewritten from scratch looks like this; so does a trail written \
         without `audit.checkpoint`)"
    )]
    Unsigned {
        /// Records walked.
        records: u64,
        /// The id of the key checked against.
        key_id: String,
    },
}

/// One intact chained line, as [`verify_with`] hands it to its visitor.
pub struct Line<'a> {
    /// The file.
    pub file: &'a Path,
    /// 1-based line number in that file.
    pub line: usize,
    /// `seq`.
    pub seq: u64,
    /// `prev_hash` (links to the line before).
    pub prev_hash: &'a str,
    /// The whole record.
    pub record: &'a Map<String, Value>,
}

/// Verifies `files` as one chain, in order (oldest first). The first record may continue an
/// earlier chain (a file whose predecessor was archived): its `prev_hash` is taken as given.
pub fn verify(files: &[impl AsRef<Path>]) -> Result<Verified, VerifyError> {
    verify_with(files, |_| Ok(()))
}

/// [`verify`], handing each line that links to `visit` as well; an error from `visit` is a
/// [`BreakKind::Checkpoint`] break at that line.
pub fn verify_with(
    files: &[impl AsRef<Path>],
    mut visit: impl FnMut(&Line<'_>) -> Result<(), String>,
) -> Result<Verified, VerifyError> {
    let mut head: Option<ChainHead> = None;
    let mut records = 0;
    for file in files {
        let file = file.as_ref();
        let reader = std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| VerifyError::Io(file.to_path_buf(), e))?;
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| VerifyError::Io(file.to_path_buf(), e))?;
            let broken = |kind| {
                VerifyError::Broken(ChainBreak {
                    file: file.to_path_buf(),
                    line: i + 1,
                    kind,
                })
            };
            let (seq, prev, hash, map) =
                parse_chained(&line).map_err(|why| broken(BreakKind::Malformed(why)))?;
            if hash_of(&prev, &map) != hash {
                return Err(broken(BreakKind::Edited));
            }
            if let Some(h) = &head {
                if prev != h.hash || seq != h.seq + 1 {
                    return Err(broken(BreakKind::OutOfSequence {
                        expected_seq: h.seq + 1,
                        found_seq: seq,
                    }));
                }
            }
            visit(&Line {
                file,
                line: i + 1,
                seq,
                prev_hash: &prev,
                record: &map,
            })
            .map_err(|why| broken(BreakKind::Checkpoint(why)))?;
            head = Some(ChainHead { seq, hash });
            records += 1;
        }
    }
    Ok(Verified {
        records,
        head: head.unwrap_or_default(),
    })
}

/// Splits one written line into `seq`, `prev_hash`, `hash` and the whole object.
pub fn parse_chained(line: &str) -> Result<(u64, String, String, Map<String, Value>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    let seq = map.get("seq").and_then(Value::as_u64).ok_or("no `seq`")?;
    let prev = map
        .get("prev_hash")
        .and_then(Value::as_str)
        .ok_or("no `prev_hash`")?
        .to_string();
    let hash = map
        .get("hash")
        .and_then(Value::as_str)
        .ok_or("no `hash`")?
        .to_string();
    Ok((seq, prev, hash, map))
}
