//! Signed checkpoints: what makes a rewritten audit file detectable.
//!
//! The hash chain ([`super::chain`]) proves a file is internally consistent, but anyone who can
//! write the file can also recompute every hash: a full rewrite verifies. So the writer holds an
//! Ed25519 key ([`CheckpointKey`], `audit.checkpoint.key_file`) and, every N records, every T
//! while records flow, before a rotation and at a flush or shutdown, seals a *checkpoint* into
//! the chain: a record of its own, chained like every other, whose signature covers the chain
//! head just before it (`covers_seq`, `covers_hash`), its `timestamp` and `reason`:
//!
//! ```json
//! {"checkpoint":{"covers_hash":"…","covers_seq":41,"key_id":"5b0e…","reason":"count",
//!  "signature":"<base64>"},"hash":"…","kind":"checkpoint","prev_hash":"…","seq":42,
//!  "timestamp":"2026-01-02T03:04:05.678Z"}
//! ```
//!
//! Because `covers_hash` is the hash of record `covers_seq`, which chains to every record
//! before it, one valid checkpoint vouches for the whole chain up to it. [`verify`] (run by
//! `palisade audit verify FILE… --public-key KEY`) walks the chain and checks each checkpoint:
//! its signature under the given public key, and that it sits where it was signed (its
//! `covers_*` equal the line before it). A rewrite either drops the checkpoints (then none is
//! found), keeps them (then they no longer match the chain they sit in) or changes them (then
//! the signature fails). Records after the last checkpoint are not covered yet: reported as an
//! *unsigned tail* (normal while the proxy is writing; after a stop it means a crash or a cut).
//! A cut made exactly after a checkpoint is invisible in the file itself: the last checkpoint's
//! time tells when the trail was last vouched for, and the Redis Stream copy (checkpoints are
//! shipped like every record) keeps the later ones. docs/operations.md, "Reading `audit
//! verify`".
//!
//! The key file is a PKCS#8 PEM Ed25519 private key (`palisade audit keygen FILE`, or
//! `openssl genpkey -algorithm ed25519`); its public key (SPKI PEM) is written beside it as
//! `FILE.pub` and printed by `palisade audit public-key FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::chain::{self, ChainHead, Verified, VerifyError};

const LINE_ENDING: ed25519_dalek::pkcs8::spki::der::pem::LineEnding =
    ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;

/// Why a checkpoint was written (its `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `audit.checkpoint.every_records` records since the last one.
    Count,
    /// `audit.checkpoint.every` elapsed with records not covered yet.
    Interval,
    /// The active file is about to be rotated: a closed file ends with a checkpoint.
    Rotation,
    /// A flush (graceful shutdown waits for one after the drain).
    Flush,
    /// The writer stopped (every sender gone).
    Shutdown,
}

impl Reason {
    /// The `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Interval => "interval",
            Self::Rotation => "rotation",
            Self::Flush => "flush",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The writer's signing key.
pub struct CheckpointKey {
    signing: SigningKey,
    key_id: String,
}

impl CheckpointKey {
    /// Reads the PKCS#8 PEM key at `path`; when it is missing and `generate` is set, creates a
    /// new key there (mode 0600) and its public key at `path.pub`.
    pub fn load_or_generate(path: &Path, generate: bool) -> std::io::Result<Self> {
        match read_key_file(path) {
            Ok(text) => Self::from_pem(&text).map_err(|e| invalid(path, &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
                let key = Self::generate_to(path)?;
                tracing::warn!(
                    key = %path.display(),
                    public_key = %public_key_path(path).display(),
                    key_id = %key.key_id,
                    "audit: generated a new checkpoint signing key (development); keep the \
                     public key to verify this trail"
                );
                Ok(key)
            }
            Err(e) => Err(std::io::Error::new(
                e.kind(),
                format!("audit checkpoint key {}: {e}", path.display()),
            )),
        }
    }

    /// A new random key, written to `path` (created, never overwritten, mode 0600) with its
    /// public key at `path.pub`.
    pub fn generate_to(path: &Path) -> std::io::Result<Self> {
        let key = Self::generate();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let pem = key
            .signing
            .to_pkcs8_pem(LINE_ENDING)
            .map_err(|e| invalid(path, &e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        std::fs::write(public_key_path(path), key.public_pem())?;
        Ok(key)
    }

    /// A new random key, in memory only.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_signing(SigningKey::from_bytes(&seed))
    }

    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        SigningKey::from_pkcs8_pem(text)
            .map(Self::from_signing)
            .map_err(|e| format!("not an Ed25519 PKCS#8 PEM private key ({e})"))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let key_id = key_id(&signing.verifying_key());
        Self { signing, key_id }
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_pem(&self) -> String {
        self.signing
            .verifying_key()
            .to_public_key_pem(LINE_ENDING)
            .unwrap_or_default()
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The key id written in every checkpoint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals a checkpoint covering `head` into the chain (advancing it) and returns its line.
    pub fn seal(&self, head: &mut ChainHead, reason: Reason, timestamp: &str) -> String {
        let message = signed_message(head.seq, &head.hash, timestamp, reason.as_str());
        let signature = self.signing.sign(&message);
        let record = json!({
            "kind": "checkpoint",
            "timestamp": timestamp,
            "checkpoint": {
                "covers_seq": head.seq,
                "covers_hash": head.hash,
                "key_id": self.key_id,
                "reason": reason.as_str(),
                "signature": base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            },
        });
        match record {
            Value::Object(map) => head.seal(map),
            _ => unreachable!("a json! object"),
        }
    }
}

/// Reads a key file: a regular file of at most 16 KiB (never a device or a FIFO, which could
/// block or never end).
pub fn read_key_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() || meta.len() > 16 * 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a key file (a regular file of at most 16 KiB)",
        ));
    }
    std::fs::read_to_string(path)
}

/// `FILE.pub` for the key file `FILE`.
pub fn public_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The first 16 hex digits of SHA-256 over the raw public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a public key: SPKI PEM, or a PKCS#8 private key (its public half is used).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    if let Ok(key) = VerifyingKey::from_public_key_pem(text) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(text)
        .map(|k| k.verifying_key())
        .map_err(|_| "not an Ed25519 public key (SPKI PEM, `-----BEGIN PUBLIC KEY-----`)".into())
}

/// The bytes a checkpoint's signature is over.
fn signed_message(covers_seq: u64, covers_hash: &str, timestamp: &str, reason: &str) -> Vec<u8> {
    format!("palisade-audit-checkpoint-v1\n{covers_seq}\n{covers_hash}\n{timestamp}\n{reason}\n")
        .into_bytes()
}

fn invalid(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("audit checkpoint key {}: {why}", path.display()),
    )
}

/// Whether a chained record is a checkpoint.
pub fn is_checkpoint(record: &Map<String, Value>) -> bool {
    record.get("kind").and_then(Value::as_str) == Some("checkpoint")
}

/// The last valid checkpoint [`verify`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheckpoint {
    /// Its own `seq`.
    pub seq: u64,
    /// Its `timestamp`.
    pub timestamp: String,
    /// Its `reason`.
    pub reason: String,
}

/// What [`verify`] found in a chain that is intact and whose checkpoints are all valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReport {
    /// The chain walk (records include the checkpoints).
    pub chain: Verified,
    /// Valid checkpoints.
    pub checkpoints: u64,
    /// The key id they were checked against.
    pub key_id: String,
    /// The last checkpoint, when there is one.
    pub last: Option<LastCheckpoint>,
    /// Records after the last checkpoint (or all of them when there is none): not covered by a
    /// signature.
    pub unsigned_tail: u64,
    /// Where the unsigned tail starts (`file:line`), when there is one.
    pub tail_starts_at: Option<String>,
}

impl SignedReport {
    /// Whether every record is covered by a checkpoint.
    pub fn fully_signed(&self) -> bool {
        self.unsigned_tail == 0
    }
}

/// `ok: N records in F file(s), chain intact; last seq S, head H` — the first line `audit verify`
/// prints for an intact chain, with or without a key.
pub fn chain_line(v: &Verified, files: usize) -> String {
    format!(
        "ok: {} records in {} file(s), chain intact; last seq {}, head {}",
        v.records, files, v.head.seq, v.head.hash
    )
}

impl SignedReport {
    /// What `audit verify --public-key` prints for a chain without a break (exit 0, or 2 with
    /// an unsigned tail): the chain line, the signature line, and the coverage line.
    pub fn render(&self, files: usize) -> String {
        let mut out = chain_line(&self.chain, files);
        out.push('\n');
        match &self.last {
            Some(last) => out.push_str(&format!(
                "signed: {} checkpoint(s) valid under key {}; the last is seq {} ({}, {})\n",
                self.checkpoints, self.key_id, last.seq, last.timestamp, last.reason
            )),
            None => out.push_str(&format!(
                "signed: no records, nothing to sign (key {})\n",
                self.key_id
            )),
        }
        if self.fully_signed() {
            out.push_str("ok: every record is covered by a signed checkpoint\n");
        } else {
            let last_seq = self.chain.head.seq;
            let first = last_seq + 1 - self.unsigned_tail;
            out.push_str(&format!(
                "UNSIGNED TAIL: {} record(s) after the last checkpoint (seq {first}-{last_seq}, \
                 from {}) are not covered by a signature: the proxy is still writing, stopped \
                 without a final checkpoint (crash, kill -9), or the file was cut and appended \
                 to\n",
                self.unsigned_tail,
                self.tail_starts_at.as_deref().unwrap_or("?"),
            ));
        }
        out
    }
}

/// Verifies `files` as one chain (like [`chain::verify`]) and every checkpoint in it against
/// `key`. A break, a checkpoint that does not verify or does not sit where it was signed, and
/// records with no checkpoint at all are errors; records after the last checkpoint are reported
/// in [`SignedReport::unsigned_tail`].
pub fn verify(files: &[impl AsRef<Path>], key: &VerifyingKey) -> Result<SignedReport, VerifyError> {
    let expected_id = key_id(key);
    let mut checkpoints = 0;
    let mut last = None;
    let mut unsigned_tail = 0;
    let mut tail_starts_at = None;
    let chain = chain::verify_with(files, |line| {
        if !is_checkpoint(line.record) {
            if unsigned_tail == 0 {
                tail_starts_at = Some(format!("{}:{}", line.file.display(), line.line));
            }
            unsigned_tail += 1;
            return Ok(());
        }
        check_one(line, key, &expected_id)?;
        checkpoints += 1;
        unsigned_tail = 0;
        tail_starts_at = None;
        last = Some(LastCheckpoint {
            seq: line.seq,
            timestamp: str_field(line.record, "timestamp").to_string(),
            reason: str_field(&checkpoint_fields(line.record), "reason").to_string(),
        });
        Ok(())
    })?;
    if checkpoints == 0 && chain.records > 0 {
        return Err(VerifyError::Unsigned {
            records: chain.records,
            key_id: expected_id,
        });
    }
    Ok(SignedReport {
        chain,
        checkpoints,
        key_id: expected_id,
        last,
        unsigned_tail,
        tail_starts_at,
    })
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn checkpoint_fields(record: &Map<String, Value>) -> Map<String, Value> {
    record
        .get("checkpoint")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Checks one checkpoint line; the error says what is wrong, in words for the operator.
fn check_one(line: &chain::Line<'_>, key: &VerifyingKey, expected_id: &str) -> Result<(), String> {
    let cp = checkpoint_fields(line.record);
    let covers_seq = cp.get("covers_seq").and_then(Value::as_u64);
    let covers_hash = cp.get("covers_hash").and_then(Value::as_str);
    let (Some(covers_seq), Some(covers_hash)) = (covers_seq, covers_hash) else {
        return Err(
            "checkpoint without `covers_seq`/`covers_hash`: not written by Palisade".into(),
        );
    };
    let key_id = str_field(&cp, "key_id");
    if key_id != expected_id {
        return Err(format!(
            "checkpoint signed by key {key_id:?}, not by the given public key ({expected_id}): \
             wrong key file, or a checkpoint forged with another key"
        ));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(str_field(&cp, "signature"))
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok());
    let message = signed_message(
        covers_seq,
        covers_hash,
        str_field(line.record, "timestamp"),
        str_field(&cp, "reason"),
    );
    if signature.is_none_or(|s| key.verify_strict(&message, &s).is_err()) {
        return Err(
            "checkpoint signature does not verify: the checkpoint was forged or \
                    altered"
                .into(),
        );
    }
    if covers_seq + 1 != line.seq || covers_hash != line.prev_hash {
        return Err(format!(
            "checkpoint signed for seq {covers_seq} with head {covers_hash}, but sits after seq \
             {} with head {}: the records it vouched for were rewritten (or it was moved here)",
            line.seq.saturating_sub(1),
            line.prev_hash
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
